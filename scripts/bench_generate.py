#!/usr/bin/env python3
"""p50 latency of `POST /generate` next to the same pipeline called in-process (PNG + base64 included).

    python scripts/bench_generate.py                      # the two default cases, targets checked
    python scripts/bench_generate.py --case tiny:flux:64:4 --requests 200
    python scripts/bench_generate.py --url http://host:8000 --case my-model:1024:28   # an already running server

The in-process side is this script re-run as a worker process, which loads and calls the model on a thread of
its own exactly as the server does; the two sides alternate request by request. Both report how long the
pipeline call itself took, so the figure judged against the target is what the server adds around that call
(HTTP, JSON, validation, queue, thread hops) beyond what the in-process side also spends around it. The raw
ratio of the two p50s is printed too: it also carries the pipeline's own speed, which was measured here to differ
by up to +-8% between two processes running the same code.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_CASES = [("tiny:flux", 64, 4, 0.10), ("small:flux", 128, 8, 0.03)]


def in_process_call(model_path: str):
    """The pipeline as the server runs it, with the same PNG + base64 encoding, without HTTP."""
    from openai_dit.config import ServerConfig
    from openai_dit.media import encode_image, to_base64
    from openai_dit.models.executor import PipelineExecutor
    from openai_dit.models.loader import load_model
    from openai_dit.types import GenerationRequest, Task

    config = ServerConfig(model_path=model_path)
    executor = PipelineExecutor(load_model(config))

    def call(size: int, steps: int, count: int = 1) -> float:
        """One call as the server makes it, for `count` requests batched; returns the seconds of the pipeline call
        alone."""
        requests = [GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt="a lighthouse on a cliff at dusk", width=size,
                                      height=size, num_inference_steps=steps, seed=1234 + i, guidance_scale=7.5)
                    for i in range(count)]
        results = executor.run_batch(requests, threading.Event())
        [to_base64(encode_image(pixels, "png", png_compress_level=config.png_compress_level))
         for result in results for pixels in result.images]
        return results[0].inference_seconds

    return call


def run_worker(model_path: str) -> None:
    """Worker mode: read `SIZE STEPS [COUNT]` lines, answer each with the seconds one in-process call took."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the libraries print goes to stderr, not into the replies
    sys.stdout = sys.stderr
    # The model is loaded and called on one thread of its own, as in the server: the same pipeline was measured
    # up to ~10% slower when loaded or run on a process's main thread here, which would flatter the server.
    thread = ThreadPoolExecutor(max_workers=1)
    call = thread.submit(in_process_call, model_path).result()

    def timed_call(size: int, steps: int, count: int = 1) -> str:
        started = time.perf_counter()
        pipeline_seconds = call(size, steps, count)
        return f"{time.perf_counter() - started} {pipeline_seconds}"

    print("ready", file=replies, flush=True)
    for line in sys.stdin:
        print(thread.submit(timed_call, *map(int, line.split())).result(), file=replies, flush=True)


class InProcess:
    """The worker process; each call returns its total seconds and records its pipeline-call seconds."""

    def __init__(self, model_path: str) -> None:
        self.time_costs: list[float] = []
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", model_path], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready", "in-process worker failed to start"

    def __call__(self, size: int, steps: int, count: int = 1) -> float:
        """Seconds of one call making `count` images (one request each, batched as the server batches them)."""
        self.process.stdin.write(f"{size} {steps} {count}\n")
        self.process.stdin.flush()
        total, pipeline = map(float, self.process.stdout.readline().split())
        self.time_costs.append(pipeline)
        return total

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


class OverHTTP:
    """One keep-alive connection with the standard library's lean HTTP client, so that the figure is the
    server's and not the client library's."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=600)
        self.time_costs: list[float] = []

    def __call__(self, size: int, steps: int) -> float:
        body = json.dumps({"prompt": "a lighthouse on a cliff at dusk", "width": size, "height": size,
                           "num_inference_steps": steps, "seed": 1234})
        started = time.perf_counter()
        try:
            self.connection.request("POST", "/generate", body=body, headers={"content-type": "application/json"})
            response = self.connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.connection.close()  # the server closed an idle keep-alive connection: open a new one
            started = time.perf_counter()
            self.connection.request("POST", "/generate", body=body, headers={"content-type": "application/json"})
            response = self.connection.getresponse()
        payload = json.loads(response.read())
        elapsed = time.perf_counter() - started
        assert response.status == 200 and payload["images"][0], payload
        self.time_costs.append(payload["time_cost"])
        return elapsed

    def close(self) -> None:
        self.connection.close()


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `samples`; NaN when there are none."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path: str, port: int, *extra: str) -> subprocess.Popen:
    """The server on `port`, with a data directory of its own (so it runs beside any other server)."""
    data_dir = tempfile.mkdtemp(prefix="openai-dit-bench-")
    atexit.register(shutil.rmtree, data_dir, True)
    process = subprocess.Popen([sys.executable, "-m", "openai_dit", "serve", "--model-path", model_path, "--host",
                                "127.0.0.1", "--port", str(port), "--log-level", "warning", "--data-dir", data_dir,
                                *extra])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("server did not start")


def alternate(local: InProcess, remote: OverHTTP, size: int, steps: int, requests: int,
              warmup: int) -> tuple[list[float], list[float]]:
    """Warm both sides up (allocator, caches, first-call paths), then alternate them request by request, so that
    machine noise falls on both. Each side's totals; its pipeline-call seconds are in its `time_costs`."""
    for _ in range(warmup):
        local(size, steps)
        remote(size, steps)
    local.time_costs.clear()
    remote.time_costs.clear()
    local_samples, remote_samples = [], []
    for _ in range(requests):
        local_samples.append(local(size, steps))
        remote_samples.append(remote(size, steps))
    return local_samples, remote_samples


def outside_call(totals: list[float], pipelines: list[float]) -> float:
    """p50 seconds spent outside the pipeline call."""
    return statistics.median([t - p for t, p in zip(totals, pipelines, strict=True)])


def server_adds(local: InProcess, local_samples: list[float], remote: OverHTTP, remote_samples: list[float]) -> float:
    """What the server adds: its time outside the pipeline call, less what the in-process side also spends outside
    it (request set-up, encoding). This is immune to the pipeline itself running faster or slower in one process
    than in another, which moved the raw ratio by up to +-8% between runs here."""
    return outside_call(remote_samples, remote.time_costs) - outside_call(local_samples, local.time_costs)


def bench_case(model_path: str, size: int, steps: int, target: float | None, args) -> bool:
    local = InProcess(model_path)
    process = None
    url = args.url
    if url is None:
        port = free_port()
        process = start_server(model_path, port)
        url = f"http://127.0.0.1:{port}"
    try:
        remote = OverHTTP(url)
        local_samples, remote_samples = alternate(local, remote, size, steps, args.requests, args.warmup)
        remote.close()
    finally:
        local.close()
        if process is not None:
            process.terminate()
            process.wait(30)
    def p50_ms(samples) -> float:
        return statistics.median(samples) * 1000

    def outside_ms(totals, pipelines) -> float:
        return outside_call(totals, pipelines) * 1000

    local_p50, remote_p50 = p50_ms(local_samples), p50_ms(remote_samples)
    added_ms = server_adds(local, local_samples, remote, remote_samples) * 1000
    overhead = added_ms / local_p50
    verdict = "" if target is None else ("PASS" if overhead <= target else "FAIL") + f" (target <= {target:.0%})"
    print(f"{model_path:<12} {size:>4}x{size:<4} {steps:>3} steps  n={len(remote_samples)}\n"
          f"  p50 latency    in-process {local_p50:8.2f} ms   /generate {remote_p50:8.2f} ms   "
          f"(raw ratio {remote_p50 / local_p50 - 1:+.2%})\n"
          f"  pipeline call  in-process {p50_ms(local.time_costs):8.2f} ms   "
          f"/generate {p50_ms(remote.time_costs):8.2f} ms\n"
          f"  outside it     in-process {outside_ms(local_samples, local.time_costs):8.2f} ms   "
          f"/generate {outside_ms(remote_samples, remote.time_costs):8.2f} ms\n"
          f"  the server adds {added_ms:.2f} ms = {overhead:+.2%} of the in-process call  {verdict}", flush=True)
    return target is None or overhead <= target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="MODEL:SIZE:STEPS (repeatable); default: the two targets")
    parser.add_argument("--url", help="benchmark this running server instead of starting one")
    parser.add_argument("--requests", type=int, default=120, help="timed requests per side and case")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker)
        return 0
    cases = DEFAULT_CASES
    if args.case:
        cases = []
        for spec in args.case:
            model, size, steps = spec.rsplit(":", 2)
            cases.append((model, int(size), int(steps), None))
    ok = all([bench_case(model, size, steps, target, args) for model, size, steps, target in cases])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
