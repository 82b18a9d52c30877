#!/usr/bin/env python3
"""Serving under load: p50/p99 latency and images per second over `POST /generate` at concurrency 1, 2, 4 and 8,
beside the same request run in-process (one call of N prompts: the limit), then resident memory over a long run.

    python scripts/bench_serving.py                          # the two target cases; starts the server
    python scripts/bench_serving.py --case tiny:flux:64:4 --requests 64
    python scripts/bench_serving.py --url http://host:8000 --case my-model:1024:28   # any native /generate server

The in-process side is `bench_generate.py`'s worker: the model loaded and called on a thread of its own, with the
same PNG + base64 encoding; at concurrency N it makes one call of N prompts, which is what batching can reach. At
concurrency 1 the two sides alternate request by request, and the figure judged is the in-process p50 plus what
the server adds around the pipeline call (see `bench_generate.py`: the pipeline's own speed differs by up to +-8%
between processes); the raw ratio is printed too. Above it, three load windows alternate with in-process calls
(one call of N, and one at a time), and throughput is judged against the one-at-a-time rate measured between
those windows: this machine's speed was seen to drift by 10-20% within minutes.
The memory run sends --memory-requests requests of mixed sizes, step counts and image counts at concurrency 4 and
prints the server's resident memory after a warm-up and at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import InProcess, OverHTTP, alternate, free_port, percentile, server_adds, start_server  # noqa: E402

# (model, size, steps, c1 latency bound as a ratio, c8 throughput bound as a multiple of one-at-a-time)
DEFAULT_CASES = [("tiny:flux", 64, 4, 1.10, 2.0), ("small:flux", 128, 8, 1.03, 1.2)]
CONCURRENCY = (1, 2, 4, 8)
ROUNDS = 3  # load windows per concurrency level, each followed by in-process calls
MEMORY_GROWTH_BOUND_MB = 64.0


def load(url: str, size: int, steps: int, concurrency: int, seconds: float) -> tuple[list[float], float, int]:
    """`concurrency` clients (a keep-alive connection each) send back to back for `seconds`. Counted: the requests
    that finish inside the steady window (after a warm-up fifth, before the deadline), so that neither the ramp
    nor the half-filled last calls distort the rate. Returns their latencies, the window's seconds, failures."""
    finished: list[tuple[float, float]] = []
    failures = [0]
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + seconds
    window_start = started + seconds / 5

    def client() -> None:
        connection = OverHTTP(url)
        while time.perf_counter() < deadline:
            try:
                elapsed = connection(size, steps)
            except Exception:  # noqa: BLE001 - counted; the run goes on
                failures[0] += 1
                connection.close()
                connection = OverHTTP(url)
                continue
            with lock:
                finished.append((time.perf_counter(), elapsed))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    inside = [latency for at, latency in finished if window_start <= at <= deadline]
    return inside, deadline - window_start, failures[0]


def bench_case(model: str, size: int, steps: int, latency_bound: float | None, throughput_bound: float | None,
               url: str, args) -> bool:
    local = InProcess(model)
    remote = OverHTTP(url)
    try:
        for _ in range(args.warmup):
            for count in CONCURRENCY[1:]:
                local(size, steps, count)
        local_one, remote_one = alternate(local, remote, size, steps, args.requests, args.warmup)
        outside = server_adds(local, local_one, remote, remote_one)
        remote.close()
        local_p50 = statistics.median(local_one)
        rows = [(1, remote_one, len(remote_one) / sum(remote_one), local_one, 1 / local_p50, 0, 1 / local_p50)]
        failed = 0
        singles_per_round = max(5, round(1.5 / local_p50))
        for concurrency in CONCURRENCY[1:]:
            # Load windows alternate with in-process calls (one call of N, and one at a time), so that the
            # machine's drift in speed falls on both sides of each ratio.
            latencies, wall, failures, limit, singles = [], 0.0, 0, [], []
            for _ in range(ROUNDS):
                window_seconds = max(args.seconds / ROUNDS, 3 * concurrency * local_p50)  # several calls each
                window_latencies, window, window_failures = load(url, size, steps, concurrency, window_seconds)
                latencies += window_latencies
                wall += window
                failures += window_failures
                limit += [local(size, steps, concurrency) for _ in range(max(2, singles_per_round // concurrency))]
                singles += [local(size, steps) for _ in range(singles_per_round)]
            failed += failures
            rows.append((concurrency, latencies, len(latencies) / wall, limit, concurrency / statistics.median(limit),
                         failures, 1 / statistics.median(singles)))
    finally:
        local.close()
    print(f"{model} {size}x{size} {steps} steps; concurrency 1: {args.requests} requests a side, alternated; "
          f"above: {args.seconds:g} s of load a level")
    print("  conc |   /generate p50    p99   img/s  failed |  in-process: one call of N p50   img/s | one at a "
          "time img/s  ratio")
    for concurrency, latencies, rate, limit, limit_rate, failures, single_rate in rows:
        print(f"  {concurrency:>4} | {percentile(latencies, .5) * 1000:9.1f} {percentile(latencies, .99) * 1000:7.1f} "
              f"{rate:7.2f} {failures:>6}  | {statistics.median(limit) * 1000:24.1f} {limit_rate:7.2f} | "
              f"{single_rate:17.2f} {rate / single_rate:6.2f}x")
    adjusted = (local_p50 + outside) / local_p50
    raw = statistics.median(remote_one) / local_p50
    c8_rate, one_at_a_time = rows[-1][2], rows[-1][6]
    ok = failed == 0
    print(f"  concurrency 1: the server adds {outside * 1000:.2f} ms around the call -> {adjusted:.3f}x the "
          f"in-process p50 (raw ratio {raw:.3f}x)", end="")
    if latency_bound is not None:
        ok &= adjusted <= latency_bound
        print(f"  {'PASS' if adjusted <= latency_bound else 'FAIL'} (target <= {latency_bound:.2f}x)", end="")
    print(f"\n  concurrency 8: {c8_rate:.2f} img/s = {c8_rate / one_at_a_time:.2f}x the in-process one-at-a-time rate "
          f"measured between its load windows ({one_at_a_time:.2f} img/s)", end="")
    if throughput_bound is not None:
        ok &= c8_rate / one_at_a_time >= throughput_bound
        print(f"  {'PASS' if c8_rate / one_at_a_time >= throughput_bound else 'FAIL'} "
              f"(target >= {throughput_bound:.1f}x)", end="")
    print(f"\n  failed requests: {failed}  {'PASS' if failed == 0 else 'FAIL'}", flush=True)
    return ok


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_run(url: str, pid: int | None, total: int) -> bool:
    """`total` requests of mixed sizes, steps and image counts at concurrency 4; resident memory sampled."""
    parts = urlsplit(url)
    shapes = [(64, 2, 1), (96, 3, 2), (128, 2, 1), (64, 4, 3), (112, 2, 1), (80, 3, 2)]
    counter = [0]
    lock = threading.Lock()
    samples: list[tuple[int, float]] = []
    failures = [0]

    def client() -> None:
        import http.client

        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=600)
        while True:
            with lock:
                index = counter[0]
                counter[0] += 1
            if index >= total:
                break
            size, steps, images = shapes[index % len(shapes)]
            body = json.dumps({"prompt": f"request {index}", "width": size, "height": size,
                               "num_inference_steps": steps, "num_images": images, "seed": index})
            connection.request("POST", "/generate", body=body, headers={"content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures[0] += 1
            if pid is not None and index % 50 == 0:
                with lock:
                    samples.append((index, resident_mb(pid)))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if pid is None:
        print(f"memory: {total} mixed requests, {failures[0]} failed; resident memory n/a (server not started here)")
        return failures[0] == 0
    samples.sort()
    warm = [mb for index, mb in samples if index >= 100] or [mb for _, mb in samples]
    growth = resident_mb(pid) - warm[0]
    print(f"memory: {total} mixed requests (64-128 px, 2-4 steps, 1-3 images, concurrency 4), {failures[0]} failed")
    print("  resident MiB at requests " + ", ".join(f"{i}: {mb:.0f}" for i, mb in samples))
    print(f"  growth after warm-up (request 100 -> end): {growth:+.1f} MiB  "
          f"{'PASS' if growth <= MEMORY_GROWTH_BOUND_MB else 'FAIL'} (bound {MEMORY_GROWTH_BOUND_MB:.0f} MiB)")
    return failures[0] == 0 and growth <= MEMORY_GROWTH_BOUND_MB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="MODEL:SIZE:STEPS (repeatable); default: the two targets")
    parser.add_argument("--url", help="benchmark this running server instead of starting one")
    parser.add_argument("--requests", type=int, default=48, help="requests per side at concurrency 1")
    parser.add_argument("--seconds", type=float, default=15.0, help="load time per concurrency level above 1")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-batch-size", type=int, default=8, help="for the server this script starts")
    parser.add_argument("--memory-requests", type=int, default=600, help="0 skips the memory run")
    args = parser.parse_args()
    cases = DEFAULT_CASES
    if args.case:
        cases = [(m, int(size), int(steps), None, None) for m, size, steps in
                 (spec.rsplit(":", 2) for spec in args.case)]
    ok = True
    for index, (model, size, steps, latency_bound, throughput_bound) in enumerate(cases):
        process, url = None, args.url
        if url is None:
            port = free_port()
            process = start_server(model, port, "--max-batch-size", str(args.max_batch_size))
            url = f"http://127.0.0.1:{port}"
            print(f"server: openai-dit serve --model-path {model} --max-batch-size {args.max_batch_size}")
        try:
            ok &= bench_case(model, size, steps, latency_bound, throughput_bound, url, args)
            if index == 0 and args.memory_requests:
                ok &= memory_run(url, process.pid if process else None, args.memory_requests)
        finally:
            if process is not None:
                process.terminate()
                process.wait(30)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
