"""What the OpenAI Images layer costs: p50 latency of the same generation through the native `/generate`,
`/v1/images/generations` (b64_json and url), and streamed with 0 and 3 partial images.

    python scripts/bench_images.py [--model small:flux] [--size 256] [--steps 8] [--rounds 10]

Starts `openai-dit serve` on the model, then alternates the variants request by request so that machine noise
spreads evenly over them. Prints one line per variant: p50 and its difference to the native call.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from conftest import running_server  # noqa: E402


def variants(size: int, steps: int) -> dict:
    common = {"prompt": "a lighthouse at dusk", "seed": 1, "num_inference_steps": steps}
    openai = {**common, "size": f"{size}x{size}"}
    return {
        "native /generate": ("/generate", {**common, "width": size, "height": size}, False),
        "openai b64_json": ("/v1/images/generations", openai, False),
        "openai url (+ download)": ("/v1/images/generations", {**openai, "response_format": "url"}, False),
        "openai stream, 0 partials": ("/v1/images/generations", {**openai, "stream": True}, True),
        "openai stream, 3 partials": ("/v1/images/generations", {**openai, "stream": True, "partial_images": 3},
                                      True),
    }


def timed(client: httpx.Client, url: str, path: str, body: dict, stream: bool) -> float:
    started = time.perf_counter()
    if stream:
        with client.stream("POST", url + path, json=body) as response:
            assert response.status_code == 200
            text = "".join(response.iter_text())
        assert '"image_generation.completed"' in text, text[:300]
    else:
        response = client.post(url + path, json=body)
        assert response.status_code == 200, response.text
        item = response.json().get("data", [{}])[0]
        if "url" in item:
            assert client.get(item["url"]).status_code == 200
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small:flux")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    cases = variants(args.size, args.steps)
    times: dict[str, list[float]] = {name: [] for name in cases}
    with running_server("--model-path", args.model) as url, httpx.Client(timeout=600) as client:
        for path, body, stream in cases.values():  # warm-up, one each
            timed(client, url, path, body, stream)
        for _ in range(args.rounds):
            for name, (path, body, stream) in cases.items():
                times[name].append(timed(client, url, path, body, stream))
    base = statistics.median(times["native /generate"])
    print(f"{args.model} {args.size}x{args.size}, {args.steps} steps, {args.rounds} rounds (p50):")
    for name, values in times.items():
        p50 = statistics.median(values)
        print(f"  {name:28s} {p50 * 1000:8.1f} ms  {100 * (p50 - base) / base:+6.1f}% vs native")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.SubprocessError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        sys.exit(1)
