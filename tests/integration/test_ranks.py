"""Two ranks under torchrun (gloo, CPU) on tiny:flux through real HTTP: the same image as one rank, every route,
cancellation in step, idle ranks past the step timeout, and a killed rank ending the launch in bounded time."""

from __future__ import annotations

import base64
import io
import subprocess
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from openai_dit.config import ServerConfig
from openai_dit.models.executor import PipelineExecutor
from openai_dit.models.loader import load_model
from openai_dit.types import GenerationRequest, Task

from .conftest import rank_pid, running_server, torchrun

BODY = {"prompt": "a small red boat", "width": 64, "height": 64, "num_inference_steps": 4, "seed": 5}
LONG = {**BODY, "width": 1024, "height": 1024, "num_inference_steps": 60}


def pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(int)


def one_rank_image() -> np.ndarray:
    executor = PipelineExecutor(load_model(ServerConfig(model_path="tiny:flux")))
    request = GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt=BODY["prompt"], width=64, height=64,
                                num_inference_steps=4, seed=5, guidance_scale=7.5)
    return executor.run(request, threading.Event()).images[0].astype(int)


def test_two_ranks_serve_every_route_with_the_one_rank_image(tmp_path):
    with running_server("--model-path", "tiny:flux", "--parallel-type", "ulysses", "--step-timeout", "5",
                        launcher=torchrun(2), log_dir=tmp_path) as url:
        response = httpx.post(f"{url}/generate", json=BODY, timeout=120)
        assert response.status_code == 200, response.text
        assert np.abs(pixels(response.json()["images"][0]) - one_rank_image()).max() <= 1
        info = httpx.get(f"{url}/get_model_info").json()
        assert info["world_size"] == 2 and info["parallel"]["type"] == "ulysses"
        openai = httpx.post(f"{url}/v1/images/generations", json={"prompt": "a boat", "size": "64x64",
                                                                 "num_inference_steps": 2}, timeout=120)
        assert openai.status_code == 200 and openai.json()["data"][0]["b64_json"]
        stream = httpx.post(f"{url}/v1/images/generations", json={"prompt": "x", "size": "64x64", "stream": True,
                                                                 "partial_images": 2})
        assert stream.status_code == 400 and stream.json()["error"]["param"] == "partial_images"
        assert httpx.post(f"{url}/flush_cache", timeout=60).status_code == 200
        # A client that leaves: every rank stops at the same step, and the ranks stay consistent.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/generate", json=LONG, timeout=1.5)
        deadline = time.monotonic() + 30
        while "stopped: cancelled" not in url.log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(6)  # idle ranks outlive the 5 s step timeout: they wait on a socket, not a collective
        again = httpx.post(f"{url}/generate", json=BODY, timeout=120)
        assert again.status_code == 200 and again.json()["images"] == response.json()["images"]


def test_killing_a_rank_fails_the_request_and_ends_the_launch(tmp_path):
    with running_server("--model-path", "tiny:flux", "--parallel-type", "ulysses", launcher=torchrun(2),
                        log_dir=tmp_path) as url:
        outcome: list = []
        client = threading.Thread(target=lambda: outcome.append(httpx.post(f"{url}/generate", json=LONG,
                                                                           timeout=60)))
        client.start()
        time.sleep(1.5)  # the call is running on both ranks
        killed_at = time.monotonic()
        subprocess.run(["kill", "-9", str(rank_pid(url.log, 1))], check=True)
        client.join(60)
        assert outcome and outcome[0].status_code == 503, outcome  # fails fast, in the OpenAI shape
        assert outcome[0].json()["error"]["code"] == "model_not_ready"
        code = url.process.wait(60)
        assert code != 0 and time.monotonic() - killed_at < 60


def test_torchrun_without_parallel_type_is_refused(tmp_path):
    done = subprocess.run([*torchrun(2), "serve", "--model-path", "tiny:flux", "--port", "0", "--data-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "without --parallel-type" in done.stdout + done.stderr


@pytest.mark.parametrize("kind", ["ring", "tp"])
def test_ring_and_tp_are_refused_on_cpu_with_a_clear_message(kind, tmp_path):
    done = subprocess.run([*torchrun(2), "serve", "--model-path", "tiny:flux", "--parallel-type", kind,
                           "--port", "0", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "needs CUDA" in done.stdout + done.stderr
