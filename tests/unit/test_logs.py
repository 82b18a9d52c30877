"""The log set-up (openai_dit.logs): JSON lines, probe lines left out, and a writer that never makes a logging
thread wait on the reader."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import threading
import types

import pytest
from fakes import wait_until

from openai_dit import logs
from openai_dit.config import ServerConfig
from openai_dit.logs import QueueStreamHandler, configure_logging, progress_bars_enabled
from openai_dit.server.middleware import request_id_var

ACCESS = '%s - "%s %s HTTP/%s" %d'  # uvicorn's access line


@pytest.fixture
def restore_logging(monkeypatch):
    """configure_logging changes process-wide state: the root logger, uvicorn.access's filters, warnings. Put it
    back; the libraries' hand-over is tested on its own."""
    handed_over: list[bool] = []
    monkeypatch.setattr(logs, "_hand_over_libraries", handed_over.append)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    root = logging.getLogger()
    access = logging.getLogger("uvicorn.access")
    monkeypatch.setattr(access, "propagate", True)
    monkeypatch.setattr(access, "disabled", False)
    handlers, level, filters = root.handlers[:], root.level, access.filters[:]
    warnings_captured = logging._warnings_showwarning is not None  # type: ignore[attr-defined]
    yield handed_over
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    access.filters[:] = filters
    if not warnings_captured:
        logging.captureWarnings(False)


def configured(stream: io.StringIO, **config) -> QueueStreamHandler:
    return configure_logging(ServerConfig(model_path="fake", **config), stream)


def lines_of(handler: QueueStreamHandler, stream: io.StringIO) -> list[str]:
    handler.flush()
    return stream.getvalue().splitlines()


def access_line(path: str, status: int = 200) -> None:
    """What uvicorn's access logger hands on for one request (its filters apply, as for a real line)."""
    access = logging.getLogger("uvicorn.access")
    access.handle(access.makeRecord(access.name, logging.INFO, __file__, 1, ACCESS,
                                    ("127.0.0.1:5000", "GET", path, "1.1", status), None))


def test_json_lines_carry_the_fields(restore_logging):
    stream = io.StringIO()
    handler = configured(stream, log_format="json")
    log = logging.getLogger("openai_dit.test")
    log.info("outside a request")
    token = request_id_var.set("0123abcd")
    try:
        log.warning("inside %s", "a request")
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError:
            log.exception("it failed\non two lines")
    finally:
        request_id_var.reset(token)
    access_line("/v1/models")
    outside, inside, failed, access = (json.loads(line) for line in lines_of(handler, stream))

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", outside["time"])
    assert outside == {"time": outside["time"], "level": "INFO", "logger": "openai_dit.test",
                       "message": "outside a request", "request_id": None, "rank": 0}
    assert (inside["level"], inside["message"], inside["request_id"]) == ("WARNING", "inside a request", "0123abcd")
    assert "exception" not in inside
    assert failed["message"] == "it failed\non two lines" and failed["request_id"] == "0123abcd"
    assert failed["exception"].startswith("Traceback") and "ZeroDivisionError: boom" in failed["exception"]
    assert access["logger"] == "uvicorn.access" and '"GET /v1/models HTTP/1.1" 200' in access["message"]
    assert restore_logging == [False]  # a StringIO is no terminal: no progress bars


def test_the_rank_under_torchrun(restore_logging, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    stream = io.StringIO()
    handler = configured(stream, log_format="json")
    logging.getLogger("openai_dit.test").info("hello")
    assert json.loads(lines_of(handler, stream)[0])["rank"] == 1

    text = io.StringIO()
    handler = configured(text)
    token = request_id_var.set("feed")
    try:
        logging.getLogger("openai_dit.test").info("hello")
    finally:
        request_id_var.reset(token)
    assert re.fullmatch(r"\S+ \S+ rank1 INFO openai_dit.test \[feed\]: hello", lines_of(handler, text)[0])


@pytest.mark.parametrize("log_probes", [False, True])
def test_probe_routes_are_access_logged_only_with_log_probes(restore_logging, log_probes):
    stream = io.StringIO()
    handler = configured(stream, log_probes=log_probes)
    probes = ["/health", "/ready", "/readyz", "/health/live", "/live", "/metrics", "/metrics?name=x"]
    others = ["/v1/models", "/healthz", "/v1/images/generations", "/nope?api_key=sk-secret"]
    for path in probes:
        access_line(path)
    access_line("/ready", 503)
    for path in others:
        access_line(path, 404)
    logged = [re.search(r'"GET (\S+) HTTP', line).group(1) for line in lines_of(handler, stream)]
    expected = [*probes, "/ready"] if log_probes else []
    assert logged == [*expected, "/v1/models", "/healthz", "/v1/images/generations", "/nope?api_key=***"]


class BlockedStream:
    """A stream whose write blocks until `release` is set; `entered` says a write is waiting."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.data = b""
        self.silenced = 0

    def write(self, data) -> int:
        self.entered.set()
        assert self.release.wait(60), "never released"
        self.data += bytes(data)
        return len(data)

    def silence(self) -> None:
        self.silenced += 1

    def lines(self) -> list[str]:
        return self.data.decode().splitlines()


def plain_handler(stream, **kwargs) -> QueueStreamHandler:
    handler = QueueStreamHandler(stream, **kwargs)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def emit(handler: logging.Handler, message: str) -> None:
    handler.handle(logging.makeLogRecord({"msg": message, "levelno": logging.INFO, "levelname": "INFO"}))


def test_logging_never_waits_on_a_blocked_stream_and_counts_what_it_drops():
    stream = BlockedStream()
    handler = plain_handler(stream, capacity=5)
    try:
        emit(handler, "line 0")
        wait_until(stream.entered.is_set)  # the writer holds line 0, blocked in write

        burst = threading.Thread(target=lambda: [emit(handler, f"line {n}") for n in range(1, 1001)])
        burst.start()
        burst.join(60)
        assert not burst.is_alive() and not stream.release.is_set()  # all logged while the stream was blocked
        assert handler.dropped == 1000 - 4  # 5 waiting: line 0 (being written) and 4 more

        stream.release.set()
        wait_until(lambda: len(stream.lines()) == 6)
        assert stream.lines() == ["line 0", "996 log lines dropped: the log reader was not keeping up",
                                  "line 1", "line 2", "line 3", "line 4"]
        emit(handler, "after")
        handler.flush()
        assert stream.lines()[-1] == "after"
    finally:
        stream.release.set()
        handler.close()


def test_flush_and_close_are_bounded_when_the_stream_never_takes_a_line():
    stream = BlockedStream()
    handler = plain_handler(stream, exit_seconds=0.2)
    emit(handler, "stuck")
    wait_until(stream.entered.is_set)
    emit(handler, "waiting")
    closer = threading.Thread(target=lambda: (handler.flush(), handler.close()))
    closer.start()
    closer.join(30)
    try:
        assert not closer.is_alive()
        assert stream.silenced == 1  # stdout/stderr to /dev/null, so the interpreter's exit cannot block either
        emit(handler, "after close")  # ignored, without error
    finally:
        stream.release.set()


def test_a_broken_pipe_ends_the_output_quietly(capfd):
    read, write = os.pipe()
    os.close(read)  # the reader went away
    handler = plain_handler(logs._FdWriter(write))
    try:
        emit(handler, "nobody reads this")
        wait_until(lambda: handler.broken)
        emit(handler, "nor this")
        handler.flush()
        handler.close()
        assert capfd.readouterr().err == ""  # no "--- Logging error ---" with a traceback
    finally:
        os.close(write)


def test_a_record_that_cannot_be_formatted_is_reported_in_the_stream():
    stream = io.StringIO()
    handler = plain_handler(logs._TextWriter(stream))
    try:
        handler.handle(logging.makeLogRecord({"name": "x", "msg": "%d items", "args": ("many",)}))
        handler.flush()
        assert "a log record of x could not be formatted" in stream.getvalue()
    finally:
        handler.close()


def test_progress_bars_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: True))
    assert progress_bars_enabled()
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: False))
    assert not progress_bars_enabled()
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    assert not progress_bars_enabled()


def test_library_loggers_are_handed_over(monkeypatch):
    calls: list[str] = []

    def library(name: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(**{call: (lambda call=call: calls.append(f"{name}.{call}")) for call in
                                        ("disable_default_handler", "enable_propagation", "disable_progress_bar",
                                         "disable_progress_bars")})

    torch_logger = logging.getLogger("openai_dit_test.torchlike")
    torch_handler = logging.StreamHandler()
    monkeypatch.setattr(torch_logger, "propagate", False)
    monkeypatch.setattr(torch_logger, "handlers", [torch_handler])
    registry = types.SimpleNamespace(get_log_qnames=lambda: [torch_logger.name])
    torch_internal = types.SimpleNamespace(log_registry=registry, _is_torch_handler=lambda h: h is torch_handler)
    for name in ("huggingface_hub.utils", "diffusers.utils.logging", "transformers.utils.logging"):
        monkeypatch.setitem(sys.modules, name, library(name.split(".")[0]))
    monkeypatch.setitem(sys.modules, "torch._logging._internal", torch_internal)

    logs._hand_over_libraries(progress_bars=True)
    assert calls == ["diffusers.disable_default_handler", "diffusers.enable_propagation",
                     "transformers.disable_default_handler", "transformers.enable_propagation"]
    assert torch_logger.propagate and torch_logger.handlers == []
    calls.clear()
    logs._hand_over_libraries(progress_bars=False)
    assert "huggingface_hub.disable_progress_bars" in calls and "diffusers.disable_progress_bar" in calls
    assert "transformers.disable_progress_bar" in calls
