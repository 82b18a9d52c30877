"""Streaming on the real server: a client that leaves mid-stream stops its generation."""

from __future__ import annotations

import time

import httpx

from .conftest import running_server


def test_leaving_mid_stream_stops_the_generation(tmp_path):
    with running_server("--model-path", "tiny:flux", log_dir=tmp_path) as url:
        body = {"prompt": "a long one", "size": "1024x1024", "num_inference_steps": 60, "stream": True,
                "partial_images": 3}
        started = time.monotonic()
        with httpx.stream("POST", f"{url}/v1/images/generations", json=body, timeout=120) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: ") and "partial_image" in line:
                    break  # the first preview arrived; now hang up
        full_run_estimate = (time.monotonic() - started) * 4  # the first of 3 previews comes after 1/4 of the steps
        # The next request is served as soon as the abandoned one stops, long before it would have finished.
        quick = httpx.post(f"{url}/v1/images/generations", json={"prompt": "x", "size": "64x64",
                                                                 "num_inference_steps": 1}, timeout=120)
        assert quick.status_code == 200
        deadline = time.monotonic() + 10
        log = next(tmp_path.glob("openai-dit-*.log"))
        while "stopped: cancelled" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "stopped: cancelled" in log.read_text()
        assert time.monotonic() - started < full_run_estimate
