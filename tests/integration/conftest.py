"""Start the real `openai-dit serve` process on a tiny model and drive it over HTTP."""

from __future__ import annotations

import os
import re
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
    log: Path


def torchrun(nproc: int) -> list[str]:
    """The command prefix of a torchrun launch on this machine (its own rendezvous port)."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr",
            "127.0.0.1", "--master_port", str(free_port()), "-m", "openai_dit"]


@contextmanager
def running_server(*args: str, ready_timeout: float = 180.0, log_dir: Path | None = None,
                   launcher: list[str] | None = None, output: int | None = None):
    """The server on a free port, with its own data directory unless `args` names one (`launcher`: e.g. torchrun).
    Yields its URL, which carries the process as `.process` and the log's path as `.log` (left empty when `output`,
    a file descriptor, takes the server's stdout and stderr instead)."""
    port = free_port()
    log = open((log_dir or Path(os.environ.get("TMPDIR", "/tmp"))) / f"openai-dit-{port}.log", "w+")
    data_dir = None if "--data-dir" in args else tempfile.TemporaryDirectory(prefix="openai-dit-data-")
    extra = ["--data-dir", data_dir.name] if data_dir else []
    process = subprocess.Popen([*(launcher or [sys.executable, "-m", "openai_dit"]), "serve", "--host", "127.0.0.1",
                                "--port", str(port), *extra, *args], stdout=log if output is None else output,
                               stderr=subprocess.STDOUT)
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.process = process
    url.log = Path(log.name)
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


def rank_pid(log: Path, rank: int) -> int:
    """The pid of `rank` in a torchrun launch, from its log line."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(rf"rank {rank} of \d+ joined \(\w+ parallelism, pid (\d+)\)", log.read_text())
        if found:
            return int(found.group(1))
        time.sleep(0.1)
    raise AssertionError(f"rank {rank} never joined")


def client_for(url: str):
    """The official SDK on a server under test (no retries: a test sees every answer)."""
    import warnings

    import openai

    warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks the Videos API deprecated
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def mean_step_seconds(url: str) -> float:
    """The mean denoising step time of a server so far (its /metrics)."""
    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(("openai_dit_denoising_step_seconds_sum", "openai_dit_denoising_step_seconds_count")):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0].rsplit("_", 1)[1]] = float(value)
    return values["sum"] / values["count"]
