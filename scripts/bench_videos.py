"""What a video job looks like from a client: its progress over time, what the job layer costs, how fast a DELETE
stops a running job.

    python scripts/bench_videos.py [--model tiny:wan-t2v] [--size 128] [--seconds 4] [--steps 40]

Starts `openai-dit serve` on the model (its own data directory), then prints:
1. the progress of one job, polled every 20 ms, with the time each value was first seen;
2. create -> completed -> MP4 downloaded over /v1/videos, polling as the SDK does (sleeping for the
   `openai-poll-after-ms` hint), next to the same video through the native /generate (median of --rounds each,
   alternated);
3. DELETE of a running job: the time from the DELETE to the end of a 1-step request queued behind it, minus that
   request's own time, next to the job's measured time per step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from conftest import running_server  # noqa: E402


def create(client: httpx.Client, size: int, seconds: str, steps: int, prompt: str = "waves") -> dict:
    response = client.post("/v1/videos", json={"prompt": prompt, "size": f"{size}x{size}", "seconds": seconds,
                                               "num_inference_steps": steps, "seed": 1})
    response.raise_for_status()
    return response.json()


def progress_of_one_job(client: httpx.Client, args) -> None:
    started = time.perf_counter()
    video = create(client, args.size, args.seconds, args.steps)
    seen: list[tuple[float, str, int]] = [(0.0, video["status"], video["progress"])]
    while seen[-1][1] not in ("completed", "failed"):
        time.sleep(0.02)
        body = client.get(f"/v1/videos/{video['id']}").json()
        if (body["status"], body["progress"]) != seen[-1][1:]:
            seen.append((time.perf_counter() - started, body["status"], body["progress"]))
    print(f"1. progress of one job ({args.size}x{args.size}, {video['num_frames']} frames, {args.steps} steps):")
    print("   " + ", ".join(f"{p}" for _, _, p in seen))
    print("   " + ", ".join(f"{t * 1000:.0f}ms {s[:4]}" for t, s, _ in seen[::max(1, len(seen) // 8)]))


def job_versus_native(client: httpx.Client, args) -> None:
    video = create(client, args.size, args.seconds, args.steps)
    frames = video["num_frames"]
    native_body = {"prompt": "waves", "width": args.size, "height": args.size, "num_frames": frames, "fps": 16,
                   "num_inference_steps": args.steps, "seed": 1}
    jobs, natives, polls = [], [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        video = create(client, args.size, args.seconds, args.steps)
        polls.append(0)
        while True:  # as the SDK's create_and_poll: sleep for openai-poll-after-ms between polls
            response = client.get(f"/v1/videos/{video['id']}")
            polls[-1] += 1
            if response.json()["status"] in ("completed", "failed"):
                break
            time.sleep(int(response.headers.get("openai-poll-after-ms", 1000)) / 1000)
        client.get(f"/v1/videos/{video['id']}/content").raise_for_status()
        jobs.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.post("/generate", json=native_body).raise_for_status()
        natives.append(time.perf_counter() - started)
    job, native = statistics.median(jobs), statistics.median(natives)
    print(f"2. p50 over {args.rounds}: /v1/videos job (create, poll as the SDK does, download) {job * 1000:.0f} ms "
          f"with {statistics.median(polls):.0f} polls; native /generate {native * 1000:.0f} ms "
          f"({(job / native - 1) * 100:+.1f}%; the job also writes a thumbnail and a spritesheet)")


def delete_latency(client: httpx.Client, args) -> None:
    quick = {"prompt": "x", "width": 64, "height": 64, "num_frames": 5, "num_inference_steps": 1}
    solo = []
    for _ in range(3):
        started = time.perf_counter()
        client.post("/generate", json=quick).raise_for_status()
        solo.append(time.perf_counter() - started)
    long_steps = 200
    video = create(client, 256, args.seconds, long_steps, prompt="long")
    first = None
    while True:
        body = client.get(f"/v1/videos/{video['id']}").json()
        if body["progress"] > 0 and first is None:
            first = (time.perf_counter(), body["progress"])
        if first and body["progress"] >= first[1] + 2:
            steps_done = (body["progress"] - first[1]) * long_steps / 90  # denoising is 0-90 of progress
            step_ms = (time.perf_counter() - first[0]) * 1000 / steps_done
            break
        time.sleep(0.01)
    deleted_at = time.perf_counter()
    client.delete(f"/v1/videos/{video['id']}").raise_for_status()
    client.post("/generate", json=quick).raise_for_status()
    stop_ms = (time.perf_counter() - deleted_at - statistics.median(solo)) * 1000
    print(f"3. DELETE of a running job (256x256, {long_steps} steps): freed the pipeline {stop_ms:.0f} ms after "
          f"the DELETE; one step takes {step_ms:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny:wan-t2v")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seconds", default="4")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with running_server("--model-path", args.model, "--log-level", "warning") as url, \
            httpx.Client(base_url=url, timeout=600) as client:
        progress_of_one_job(client, args)
        job_versus_native(client, args)
        delete_latency(client, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
