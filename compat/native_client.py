#!/usr/bin/env python3
"""Replay the old cache-dit server's documented client calls against any running server.

The calls are those of cache-dit 1.3.5's serving README (requests + base64 + PIL), unchanged, run for each task
the server says it can do (`/get_model_info` `tasks`; an old server without that key is treated as text-to-image).

    python compat/native_client.py --url http://localhost:8000 [--image-url URL] [--size 64] [--steps 4]

Prints one line per check and exits non-zero if any failed.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
from collections.abc import Callable

import requests
from PIL import Image


def _input_image_url(args) -> str:
    if args.image_url:
        return args.image_url
    buffer = io.BytesIO()
    Image.new("RGB", (args.size, args.size), (180, 120, 60)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def check_health(url: str, args) -> None:
    response = requests.get(f"{url}/health", timeout=10)
    assert response.status_code == 200 and response.text.strip('"') == "OK", response.text


def check_model_info(url: str, args) -> None:
    info = requests.get(f"{url}/get_model_info", timeout=10).json()
    for key in ("model_path", "device", "torch_dtype", "enable_cache", "is_loaded"):
        assert key in info, f"missing {key}"


def check_text_to_image(url: str, args) -> None:
    response = requests.post(f"{url}/generate", json={
        "prompt": "A beautiful sunset over the ocean", "width": args.size, "height": args.size,
        "num_inference_steps": args.steps, "seed": 42}, timeout=args.timeout)
    assert response.status_code == 200, response.text[:300]
    img_data = base64.b64decode(response.json()["images"][0])
    assert Image.open(io.BytesIO(img_data)).size == (args.size, args.size)
    again = requests.post(f"{url}/generate", json={
        "prompt": "A beautiful sunset over the ocean", "width": args.size, "height": args.size,
        "num_inference_steps": args.steps, "seed": 42}, timeout=args.timeout)
    assert again.json()["images"] == response.json()["images"], "same seed gave different images"


def check_image_edit(url: str, args) -> None:
    response = requests.post(f"{url}/generate", json={
        "prompt": "Put a birthday hat on the dog", "image_urls": [_input_image_url(args)],
        "width": args.size, "height": args.size, "num_inference_steps": args.steps}, timeout=args.timeout)
    assert response.status_code == 200, response.text[:300]
    Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0])))


def _check_video(response) -> None:
    assert response.status_code == 200, response.text[:300]
    video_data = base64.b64decode(response.json()["video"])
    assert video_data[4:8] == b"ftyp", "not an MP4"


def check_text_to_video(url: str, args) -> None:
    _check_video(requests.post(f"{url}/generate", json={
        "prompt": "A cat walks on the grass, realistic", "width": args.size, "height": args.size,
        "num_frames": 9, "fps": 16, "num_inference_steps": args.steps}, timeout=args.timeout))


def check_image_to_video(url: str, args) -> None:
    _check_video(requests.post(f"{url}/generate", json={
        "prompt": "A cat on a surfboard at the beach, summer vacation style", "image_urls": [_input_image_url(args)],
        "width": args.size, "height": args.size, "num_frames": 9, "fps": 16, "guidance_scale": 3.5,
        "num_inference_steps": args.steps}, timeout=args.timeout))


def check_flush_cache(url: str, args) -> None:
    response = requests.post(f"{url}/flush_cache", timeout=60)
    assert response.status_code == 200 and response.json() == {"message": "Cache flushed successfully"}


def check_docs(url: str, args) -> None:
    assert requests.get(f"{url}/docs", timeout=10).status_code == 200


TASK_CHECKS: dict[str, Callable] = {
    "text-to-image": check_text_to_image,
    "image-edit": check_image_edit,
    "text-to-video": check_text_to_video,
    "image-to-video": check_image_to_video,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:8000")
    parser.add_argument("--image-url", help="an input image URL for edit / image-to-video (default: a data URI)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    checks = [check_health, check_model_info]
    tasks = requests.get(f"{url}/get_model_info", timeout=10).json().get("tasks", ["text-to-image"])
    checks += [TASK_CHECKS[t] for t in tasks if t in TASK_CHECKS]
    checks += [check_flush_cache, check_docs]
    failed = 0
    for check in checks:
        try:
            check(url, args)
            print(f"PASS {check.__name__}")
        except Exception as exc:  # noqa: BLE001 - report every failure
            failed += 1
            print(f"FAIL {check.__name__}: {exc}")
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
