"""SIGTERM ends the real server within --shutdown-timeout and a few seconds, and with 0, whatever its stdout is: a
pipe whose reader went away (`| head -1`), or a pipe nobody reads, full. Before `openai_dit.logs`, the first
failed the model's load (its progress bar wrote to the closed pipe) and then hung at exit on the bar's lock; the
second blocked the event loop on a log write, and SIGTERM was never acted on."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

import httpx
import pytest
from fakes import wait_until

from .conftest import running_server

SHUTDOWN_TIMEOUT = 5
EXIT_BOUND = SHUTDOWN_TIMEOUT + 25  # seconds from SIGTERM to exit, on a loaded machine
PADDING = "x" * 2000  # each access line ~2 KB: the 64 KiB pipe fills after some 30 requests


def serve(output: int):
    return running_server("--model-path", "tiny:flux", "--shutdown-timeout", str(SHUTDOWN_TIMEOUT), output=output)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def log_traffic(url: str, requests: int) -> None:
    """Requests that are access-logged (a non-probe route), each with a long line."""
    with httpx.Client(timeout=30) as client:
        for n in range(requests):
            assert client.get(f"{url}/v1/models", params={"n": n, "pad": PADDING}).status_code == 200


def terminated(process: subprocess.Popen) -> tuple[int, float]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(EXIT_BOUND), time.monotonic() - started
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {EXIT_BOUND} s after SIGTERM")


def pipe_full(write_end: int) -> bool:
    """Whether a write to the pipe would block (Linux: all its buffer slots are taken)."""
    return not select.select([], [write_end], [], 0)[1]


@pytest.mark.parametrize("reader", ["head -1", "gone before start"])
def test_sigterm_with_a_closed_pipe(reader):
    read, write = os.pipe()
    head = None
    if reader == "head -1":
        head = subprocess.Popen(["head", "-1"], stdin=read, stdout=subprocess.DEVNULL)
    os.close(read)
    try:
        with serve(write) as url:
            os.close(write)
            write = -1
            if head is not None:
                head.wait(60)  # it read one line and left: the pipe has no reader now
            wait_until(lambda: ready(url), timeout=120)  # the model loads: no progress bar failed on the pipe
            log_traffic(url, 20)
            assert ready(url)
            code, seconds = terminated(url.process)
            assert code == 0, f"exit {code} after {seconds:.1f} s"
    finally:
        if write >= 0:
            os.close(write)
        if head is not None and head.poll() is None:
            head.kill()


def test_sigterm_with_a_full_pipe_never_read():
    read, write = os.pipe()
    try:
        with serve(write) as url:  # this process keeps its write end, only to look at the pipe
            wait_until(lambda: ready(url), timeout=120)
            log_traffic(url, 60)  # well over the pipe's 64 KiB
            wait_until(lambda: pipe_full(write), timeout=60)  # the server's log writer is blocked in write
            log_traffic(url, 10)  # the server still answers: nothing but the writer thread waits on the pipe
            assert ready(url)
            code, seconds = terminated(url.process)
            assert code == 0, f"exit {code} after {seconds:.1f} s"
    finally:
        os.close(write)
        os.close(read)
