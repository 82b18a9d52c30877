"""One rank against two (torchrun, ulysses): p50 latency of the same /generate request, then the time from killing
rank 1 mid-request to the failed response and to the launcher's exit.

    python scripts/bench_ranks.py [--model small:flux] [--size 128] [--steps 8] [--requests 10]

On CPU the two ranks share the machine's cores (torchrun gives each one thread), so two ranks are not expected to
be faster here; the figures show what coordination costs and how fast a lost rank ends the launch.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from conftest import rank_pid, running_server, torchrun  # noqa: E402


def p50_ms(url: str, body: dict, requests: int) -> float:
    with httpx.Client(timeout=600) as client:
        client.post(f"{url}/generate", json=body).raise_for_status()  # warm-up
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            client.post(f"{url}/generate", json=body).raise_for_status()
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small:flux")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    body = {"prompt": "a lighthouse at dusk", "width": args.size, "height": args.size,
            "num_inference_steps": args.steps, "seed": 1}
    with running_server("--model-path", args.model, "--log-level", "warning") as url:
        one = p50_ms(url, body, args.requests)
    with running_server("--model-path", args.model, "--parallel-type", "ulysses", launcher=torchrun(2)) as url:
        two = p50_ms(url, body, args.requests)
        print(f"{args.model} {args.size}x{args.size} {args.steps} steps, p50 of {args.requests}: 1 rank {one:.1f} ms, "
              f"2 ranks (ulysses) {two:.1f} ms ({two / one:.2f}x)")
        outcome: list = []
        long = {**body, "width": 1024, "height": 1024, "num_inference_steps": 60}
        client = threading.Thread(target=lambda: outcome.append(httpx.post(f"{url}/generate", json=long,
                                                                           timeout=120)))
        client.start()
        time.sleep(2)
        pid = rank_pid(url.log, 1)
        killed = time.perf_counter()
        subprocess.run(["kill", "-9", str(pid)], check=True)
        client.join(120)
        answered = time.perf_counter() - killed
        code = url.process.wait(120)
        exited = time.perf_counter() - killed
        status = outcome[0].status_code if outcome else "none"
    print(f"kill -9 of rank 1 mid-request: the client got {status} after {answered * 1000:.0f} ms; the launcher "
          f"exited with {code} after {exited * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
