"""Start the real `openai-dit serve` process on a tiny model and drive it over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerURL(str):
    process: subprocess.Popen


@contextmanager
def running_server(*args: str, ready_timeout: float = 180.0, log_dir: Path | None = None):
    """The server on a free port, with its own data directory unless `args` names one. Yields its URL, which carries
    the process as `.process`."""
    port = free_port()
    log = open((log_dir or Path(os.environ.get("TMPDIR", "/tmp"))) / f"openai-dit-{port}.log", "w+")
    data_dir = None if "--data-dir" in args else tempfile.TemporaryDirectory(prefix="openai-dit-data-")
    extra = ["--data-dir", data_dir.name] if data_dir else []
    process = subprocess.Popen([sys.executable, "-m", "openai_dit", "serve", "--host", "127.0.0.1", "--port",
                                str(port), *extra, *args], stdout=log, stderr=subprocess.STDOUT)
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.process = process
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited with {process.returncode}:\n{log.read()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy in time")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        if data_dir is not None:
            data_dir.cleanup()

