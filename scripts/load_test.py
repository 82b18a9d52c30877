"""Load test: N clients at twice the server's capacity for a bounded time.

Capacity is what the server holds at once: one pipeline call (--max-batch-size outputs) plus its admission queue
(--max-queued-requests). Each client sends image generations back to back; a 429 is a rejection, and the client
honours Retry-After (capped, so that the load stays on). Every admitted request must succeed: the run prints
accepted / rejected / failed counts and latencies, and exits 1 if any admitted request failed.

    python scripts/load_test.py                       # starts tiny:flux with a queue of 8 and batches of 4
    python scripts/load_test.py --url http://host:8000 --capacity 68 --api-key KEY
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_generate import percentile, start_server  # noqa: E402

_RETRY_CAP_SECONDS = 0.25


class Tally:
    def __init__(self) -> None:
        self.accepted: list[float] = []  # latencies of admitted requests that succeeded
        self.rejected: list[float] = []  # time to the 429 / 503
        self.failed: Counter[str] = Counter()  # admitted (or never answered) and not a success

    def report(self, seconds: float, clients: int, capacity: int) -> str:
        def pct(values: list[float], q: float) -> str:
            return f"{1000 * percentile(values, q):.0f}" if values else "-"

        lines = [
            f"{clients} clients (2 x capacity {capacity}) for {seconds:.0f} s",
            f"  accepted {len(self.accepted) + sum(self.failed.values())}: succeeded {len(self.accepted)}, "
            f"failed {sum(self.failed.values())} {dict(self.failed) or ''}".rstrip(),
            f"  rejected (429/503, Retry-After honoured): {len(self.rejected)}",
            f"  throughput: {len(self.accepted) / seconds:.1f} successful requests/s",
            f"  accepted latency ms: p50 {pct(self.accepted, 0.5)}  p95 {pct(self.accepted, 0.95)}  "
            f"p99 {pct(self.accepted, 0.99)}  max {pct(self.accepted, 1.0)}",
            f"  rejection latency ms: p50 {pct(self.rejected, 0.5)}  p99 {pct(self.rejected, 0.99)}",
        ]
        if self.accepted:
            lines.append(f"  mean accepted latency {1000 * statistics.fmean(self.accepted):.0f} ms")
        return "\n".join(lines)


async def client_loop(client: httpx.AsyncClient, body: dict, deadline: float, tally: Tally) -> None:
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            response = await client.post("/v1/images/generations", json=body)
        except httpx.HTTPError as exc:
            tally.failed[type(exc).__name__] += 1
            continue
        elapsed = time.monotonic() - started
        if response.status_code in (429, 503):
            tally.rejected.append(elapsed)
            retry_after = float(response.headers.get("retry-after") or 1)
            await asyncio.sleep(min(retry_after, _RETRY_CAP_SECONDS))
        elif response.status_code == 200 and len(response.json()["data"]) == body["n"]:
            tally.accepted.append(elapsed)
        else:
            tally.failed[str(response.status_code)] += 1


async def run(url: str, clients: int, seconds: float, body: dict, api_key: str | None) -> Tally:
    tally = Tally()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as client:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(client_loop(client, body, deadline, tally) for _ in range(clients)))
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (default: start tiny:flux here)")
    parser.add_argument("--capacity", type=int, help="the server's --max-queued-requests + --max-batch-size "
                        "(default: those of the server started here)")
    parser.add_argument("--max-queued-requests", type=int, default=8)
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="64x64")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--api-key")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    capacity = args.capacity or args.max_queued_requests + args.max_batch_size
    process = None
    url = args.url
    if url is None:
        extra = ["--max-queued-requests", str(args.max_queued_requests), "--max-batch-size", str(args.max_batch_size)]
        if args.api_key:
            extra += ["--api-key", args.api_key]
        process = start_server("tiny:flux", args.port, *extra)
        url = f"http://127.0.0.1:{args.port}"
    body = {"prompt": "a lighthouse at dusk", "size": args.size, "n": 1, "num_inference_steps": args.steps,
            "output_format": "jpeg"}
    try:
        tally = asyncio.run(run(url, 2 * capacity, args.seconds, body, args.api_key))
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    print(tally.report(args.seconds, 2 * capacity, capacity), flush=True)
    if process is not None:
        print(f"  server exit code after SIGTERM: {process.returncode}")
    return 1 if tally.failed or not tally.accepted else 0


if __name__ == "__main__":
    sys.exit(main())
