"""Two replicas on one PostgreSQL and one S3 bucket (moto), against one server on SQLite and its disk: what sharing
costs per request, and how fast the replicas react.

    python scripts/bench_replicas.py [--lease 3] [--polls 200]

Prints: the p50 of GET /v1/videos/{id} and of a list page (SQLite vs PostgreSQL), of a url image download
(memory vs the bucket, from the other replica); the time from a DELETE on B to the job stopping on A, against
the mean step time; from `kill -9` of A to B claiming its job, against the lease; from a job's completion to its
webhook's arrival. Needs PostgreSQL's binaries (initdb, postgres) and moto[server], as the tests do.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from conftest import client_for, mean_step_seconds, running_server  # noqa: E402
from services import postgres_server, s3_server, webhook_receiver  # noqa: E402

SECRET = "whsec_" + "c2VjcmV0LW9mLXRoZS1iZW5jaC0xMjM0NTY3ODkw"


def p50_ms(call, polls: int) -> float:
    call()
    samples = []
    for _ in range(polls):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.01)
    return value


def read_costs(url: str, polls: int) -> tuple[float, float]:
    client = client_for(url)
    job = client.videos.create_and_poll(prompt="x", size="64x64", extra_body={"num_inference_steps": 2})
    with httpx.Client(base_url=url, timeout=30) as http:
        return (p50_ms(lambda: http.get(f"/v1/videos/{job.id}").raise_for_status(), polls),
                p50_ms(lambda: http.get("/v1/videos", params={"limit": 20}).raise_for_status(), polls))


def log_has(url, text: str) -> bool:
    return text in url.log.read_text(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--polls", type=int, default=200)
    args = parser.parse_args()
    video = ("--model-path", "tiny:wan-t2v")
    long_job = {"size": "256x256", "seconds": "4", "extra_body": {"num_inference_steps": 200}}

    with running_server(*video) as single:
        sqlite_get, sqlite_list = read_costs(single, args.polls)
    with running_server("--model-path", "tiny:flux") as single:
        link = client_for(single).images.generate(prompt="x", size="64x64", response_format="url").data[0].url
        memory_image = p50_ms(lambda: httpx.get(link).raise_for_status(), args.polls)

    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(postgres_server())
        bucket = stack.enter_context(s3_server())
        os.environ.update(bucket.env)
        shared = ("--job-store", cluster.new_database("bench").dsn, "--object-store",
                  f"s3://{bucket.bucket}/bench", "--job-lease", str(args.lease))
        receiver = stack.enter_context(webhook_receiver())
        hooks = ("--webhook-url", receiver.url, "--webhook-secret", SECRET, "--allow-private-urls")
        a = stack.enter_context(running_server(*video, *shared, *hooks))
        b = stack.enter_context(running_server(*video, *shared, *hooks))
        pg_get, pg_list = read_costs(a, args.polls)

        client_a, client_b = client_for(a), client_for(b)
        job = client_a.videos.create(prompt="hook", size="64x64", extra_body={"num_inference_steps": 2})
        wait_for(lambda: client_a.videos.retrieve(job.id).status == "completed", 60)
        completed = time.time()  # seen by a 10 ms poll: the webhook may come a little before
        receiver.wait_for(2, timeout=30)  # the read_costs job's event and this one's
        arrived = [d for d in receiver.deliveries if d.json()["data"]["id"] == job.id][0]
        webhook_ms = (arrived.received_at - completed) * 1000

        job = client_a.videos.create(prompt="deleted on b", **long_job)
        wait_for(lambda: client_b.videos.retrieve(job.id).progress > 0, 60)
        client_b.videos.delete(job.id)
        deleted = time.monotonic()
        wait_for(lambda: log_has(a, f"video {job.id} deleted"), 10)
        delete_ms, step_ms = (time.monotonic() - deleted) * 1000, mean_step_seconds(a) * 1000

        job = client_a.videos.create(prompt="survives", **long_job)
        wait_for(lambda: client_b.videos.retrieve(job.id).status == "in_progress", 60)
        a.process.kill()
        killed = time.monotonic()
        wait_for(lambda: log_has(b, f"video {job.id} claimed"), args.lease + 30)
        takeover_s = time.monotonic() - killed
        client_b.videos.delete(job.id)

        b_image = stack.enter_context(running_server("--model-path", "tiny:flux", *shared))
        other = stack.enter_context(running_server("--model-path", "tiny:flux", *shared))
        link = client_for(b_image).images.generate(prompt="x", size="64x64", response_format="url").data[0].url
        bucket_image = p50_ms(lambda: httpx.get(link.replace(b_image, other)).raise_for_status(), args.polls)

    print(f"GET /v1/videos/{{id}} p50: SQLite {sqlite_get:.2f} ms, PostgreSQL {pg_get:.2f} ms")
    print(f"GET /v1/videos?limit=20 p50: SQLite {sqlite_list:.2f} ms, PostgreSQL {pg_list:.2f} ms")
    print(f"url image download p50: memory {memory_image:.2f} ms, bucket via another replica {bucket_image:.2f} ms")
    print(f"DELETE on B -> stopped on A: {delete_ms:.0f} ms (mean denoising step {step_ms:.0f} ms)")
    print(f"kill -9 of A -> job claimed by B: {takeover_s:.2f} s (lease {args.lease:g} s)")
    print(f"completion (seen by a 10 ms poll) -> webhook received: {webhook_ms:+.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
