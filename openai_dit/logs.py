"""The server's logging: one handler for our loggers, uvicorn's and the libraries', in text or JSON lines.

No thread ever waits on the log reader. A record is formatted in the thread that logs it (so it carries that
request's id) and handed to a bounded queue; a daemon thread writes the lines to a copy of stderr's descriptor. A
reader that stops reading (a full pipe) fills the queue, and then lines are dropped and counted: one line says how
many once writing resumes. A reader that went away (a broken pipe) ends the output quietly, with stdout and stderr
sent to /dev/null so that nothing else fails on them. At exit what can still be written is, within a short bound.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import queue
import select
import sys
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from .config import ServerConfig

__all__ = ["PROBE_PATHS", "JsonFormatter", "ProbeAccessFilter", "QueueStreamHandler", "configure_logging",
           "progress_bars_enabled"]

# The routes of orchestrators' probes and scrapers: not access-logged unless --log-probes.
PROBE_PATHS = frozenset({"/health", "/ready", "/readyz", "/health/ready", "/live", "/livez", "/health/live",
                         "/metrics"})
_CAPACITY = 10_000  # lines waiting for the reader; more are dropped
_BATCH = 256  # lines per write
_EXIT_SECONDS = 2.0  # at exit, the most time spent writing what is still queued
_STOP = None
_BROKEN = (errno.EPIPE, errno.EBADF, errno.EINVAL)


def _rank() -> int:
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def progress_bars_enabled() -> bool:
    """Whether progress bars may be drawn: only on a terminal (in a pipe or a file they are noise, and a bar
    writing to a closed pipe fails the call it belongs to)."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, request_id (null outside a request),
    rank, and `exception` (the traceback) when the record has one."""

    def __init__(self, rank: int = 0) -> None:
        super().__init__()
        self.rank = rank

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", "-")
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "request_id": None if request_id in (None, "-") else request_id, "rank": self.rank}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class ProbeAccessFilter(logging.Filter):
    """Drops uvicorn's access lines of the probe routes (`PROBE_PATHS`, any status, any query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2].partition("?")[0].rstrip("/") or "/"
            return path not in PROBE_PATHS
        return True


class _Writer(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...  # the number of bytes written


class _FdWriter:
    """Writes bytes to a descriptor of its own (a copy of stderr's), with no Python lock that a write blocked on a
    full pipe could hold when the interpreter exits."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes | memoryview, /) -> int:
        try:
            return os.write(self.fd, data)
        except BlockingIOError:  # someone made the pipe non-blocking: wait here, in the writer thread
            select.select([], [self.fd], [], 0.1)
            return 0

    def silence(self) -> None:
        """Point stdout and stderr at /dev/null where they are this descriptor's pipe or file: what else writes
        there (the interpreter's flush at exit, C++ warnings, print) neither fails nor waits."""
        try:
            mine = os.fstat(self.fd)
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        for std in (1, 2):
            try:
                theirs = os.fstat(std)
                if (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino):
                    os.dup2(devnull, std)
            except OSError:
                pass
        os.close(devnull)


class _TextWriter:
    """A text stream without a descriptor (a test's capture, a StringIO)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, data: bytes | memoryview, /) -> int:
        self.stream.write(bytes(data).decode("utf-8", "replace"))
        self.stream.flush()
        return len(data)


def _writer_for(stream: TextIO) -> _Writer:
    try:
        fd = stream.fileno()
        stream.flush()
        return _FdWriter(os.dup(fd))
    except (AttributeError, OSError, ValueError):
        return _TextWriter(stream)


class QueueStreamHandler(logging.Handler):
    """Formats in the caller's thread; a daemon thread writes the lines to `writer` (see the module's text). The
    queue is a `SimpleQueue` (safe to use from a signal handler that interrupted a log call) with a bound kept
    here: `capacity` lines at most wait, more are counted in `dropped`."""

    def __init__(self, writer: _Writer, capacity: int = _CAPACITY, exit_seconds: float = _EXIT_SECONDS) -> None:
        super().__init__()
        self.writer = writer
        self.capacity = capacity
        self.exit_seconds = exit_seconds
        self.dropped = 0  # incremented by loggers only
        self.broken = False  # the reader went away: nothing more is written
        self._queued = 0  # incremented by loggers only
        self._written = 0  # incremented by the writer thread only (lines written or discarded)
        self._reported = 0  # dropped lines already reported
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._progress = threading.Condition(threading.Lock())
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="openai-dit-log-writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        if self.broken or self._closed:
            return
        try:
            line = self.format(record)
        except Exception as exc:  # never the default handleError: it prints to stderr, and may block there
            line = self._notice(logging.ERROR, f"a log record of {record.name} could not be formatted: {exc!r} "
                                f"({record.msg!r})")
        if self._queued - self._written >= self.capacity:
            self.dropped += 1
            return
        self._queued += 1
        self._lines.put(line)

    def flush(self) -> None:
        """Wait until what was queued so far is written, at most `exit_seconds` (called at exit by logging)."""
        target = self._queued
        deadline = time.monotonic() + self.exit_seconds
        with self._progress:
            while self._written < target and not self.broken and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._progress.wait(left)

    def close(self) -> None:
        """Stop the writer after what is queued, waiting at most `exit_seconds`; a writer still blocked then is
        left behind (a daemon), and stdout/stderr go to /dev/null so that the interpreter's exit cannot block."""
        if not self._closed:
            self._closed = True
            self._lines.put(_STOP)
            self._thread.join(self.exit_seconds if self._written >= self._queued else 0.2)
            if self._thread.is_alive():
                self._silence()
        super().close()

    def _notice(self, level: int, message: str) -> str:
        record = logging.makeLogRecord({"name": __name__, "levelno": level, "levelname": logging.getLevelName(level),
                                        "msg": message, "request_id": "-"})
        return self.format(record)

    def _silence(self) -> None:
        silence = getattr(self.writer, "silence", None)
        if silence is not None:
            silence()

    def _run(self) -> None:
        stop = False
        while not stop:
            lines = [self._lines.get()]
            while len(lines) < _BATCH:
                try:
                    lines.append(self._lines.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in lines
            self._write([line for line in lines if line is not _STOP])
            dropped = self.dropped - self._reported
            if dropped:
                self._reported += dropped
                self._write([self._notice(logging.WARNING, f"{dropped} log lines dropped: the log reader was not "
                                          "keeping up")], counted=False)

    def _write(self, lines: list[str], counted: bool = True) -> None:
        if lines and not self.broken:
            data = memoryview("".join(f"{line}\n" for line in lines).encode("utf-8", "backslashreplace"))
            try:
                while data:
                    data = data[self.writer.write(data):]
            except OSError as exc:
                if isinstance(exc, BrokenPipeError) or exc.errno in _BROKEN:
                    self.broken = True
                    self._silence()
                # any other failure (a full disk): these lines are lost, later ones are tried
            except Exception:  # noqa: BLE001 - the writer thread outlives any stream's failure
                pass
        if counted:
            with self._progress:
                self._written += len(lines)
                self._progress.notify_all()


def _hand_over_libraries(progress_bars: bool) -> None:
    """diffusers, transformers and torch print to stderr with handlers of their own: route them through ours. Without
    `progress_bars`, turn off the bars of huggingface_hub (first: transformers reads it when imported), diffusers
    and transformers. Each library is optional."""
    if not progress_bars:
        try:
            importlib.import_module("huggingface_hub.utils").disable_progress_bars()
        except Exception:  # noqa: BLE001 - optional library; logging set-up never stops the server
            pass
    for name in ("diffusers.utils.logging", "transformers.utils.logging"):
        try:
            library = importlib.import_module(name)
            library.disable_default_handler()
            library.enable_propagation()
            if not progress_bars:
                library.disable_progress_bar()
        except Exception:  # noqa: BLE001 - as above
            pass
    internal = sys.modules.get("torch._logging._internal")  # torch's loggers, when torch is imported
    if internal is not None:
        try:
            for name in internal.log_registry.get_log_qnames():
                torch_logger = logging.getLogger(name)
                for torch_handler in torch_logger.handlers[:]:
                    if type(torch_handler) is logging.StreamHandler and internal._is_torch_handler(torch_handler):
                        torch_logger.removeHandler(torch_handler)
                        torch_logger.propagate = True
        except Exception:  # noqa: BLE001 - as above
            pass

def configure_logging(config: ServerConfig, stream: TextIO | None = None) -> QueueStreamHandler:
    """The root logger's only handler, writing to `stream` (stderr) in `config.log_format`, at `config.log_level`,
    with the request id in every line (and the rank under torchrun); uvicorn's access lines without secrets in
    query strings and, unless `config.log_probes`, without the probe routes."""
    from .server.middleware import RedactQueryFilter, RequestIdLogFilter

    rank = _rank()
    if config.log_format == "json":
        formatter: logging.Formatter = JsonFormatter(rank)
    else:
        prefix = f" rank{rank}" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        formatter = logging.Formatter(f"%(asctime)s{prefix} %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    handler = QueueStreamHandler(_writer_for(stream or sys.stderr))
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdLogFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        if isinstance(old, QueueStreamHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(config.log_level.upper())
    logging.captureWarnings(True)
    access = logging.getLogger("uvicorn.access")
    for old_filter in access.filters[:]:
        if isinstance(old_filter, (RedactQueryFilter, ProbeAccessFilter)):
            access.removeFilter(old_filter)
    access.addFilter(RedactQueryFilter())
    if not config.log_probes:
        access.addFilter(ProbeAccessFilter())
    _hand_over_libraries(progress_bars_enabled())
    return handler
