"""Each built-in tiny family served by the real process, its task exercised over /generate."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import av
import httpx
import pytest
from PIL import Image

from .conftest import running_server

ROOT = Path(__file__).resolve().parents[2]


def png_data_uri(width: int, height: int, color) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def generate(url: str, **body) -> dict:
    response = httpx.post(f"{url}/generate", json={"prompt": "a small red boat", "num_inference_steps": 2,
                                                   "width": 64, "height": 64, **body}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def frames_of(video_b64: str) -> list:
    with av.open(io.BytesIO(base64.b64decode(video_b64))) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def compat(url: str, *suites: str) -> None:
    """Run client compatibility suites from compat/ against the server (default: the old native client)."""
    for suite in suites or ("native_client.py",):
        script = ROOT / "compat" / suite
        command = ["bash", str(script), url] if suite.endswith(".sh") else \
            [sys.executable, str(script), "--url", url, "--steps", "2"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHON": sys.executable})
        assert done.returncode == 0, f"{suite}:\n{done.stdout}{done.stderr}"


def test_flux_text_to_image_seeded_and_compat(tmp_path):
    with running_server("--model-path", "tiny:flux", "--cache", "--rdt", "5", "--Fn", "1",
                        "--max-warmup-steps", "2") as url:
        first = generate(url, seed=123, num_inference_steps=6, include_stats=True)
        again = generate(url, seed=123, num_inference_steps=6)
        assert first["images"] == again["images"]
        assert first["stats"]["cached_steps"] > 0 and first["stats"]["cache_enabled"] is True
        info = httpx.get(f"{url}/get_model_info").json()
        assert info["enable_cache"] is True and info["tasks"] == ["text-to-image"]
        assert info["cache"]["Fn"] == 1
        compat(url, "native_client.py", "openai_images.py")


def test_flux2_klein_text_to_image_and_multi_image_edit():
    with running_server("--model-path", "tiny:flux2-klein") as url:
        plain = generate(url, seed=5)
        refs = [png_data_uri(64, 64, (255, 0, 0)), png_data_uri(96, 64, (0, 0, 255))]
        edit = generate(url, seed=5, image_urls=refs)
        assert edit["images"] != plain["images"]
        assert generate(url, seed=5, image_urls=refs)["images"] == edit["images"]
        small = httpx.post(f"{url}/generate", json={"prompt": "x", "width": 64, "height": 64,
                                                     "image_urls": [png_data_uri(32, 64, (0, 0, 0))]})
        assert small.status_code == 400 and small.json()["error"]["code"] == "image_too_small"
        compat(url, "native_client.py", "openai_images.py", "curl_images.sh")


def test_qwen_image_edit_plus_multi_image_only():
    with running_server("--model-path", "tiny:qwen-image-edit-plus") as url:
        refs = [png_data_uri(64, 64, (255, 0, 0)), png_data_uri(80, 64, (0, 200, 0))]
        edit = generate(url, seed=9, image_urls=refs)
        assert Image.open(io.BytesIO(base64.b64decode(edit["images"][0]))).size == (64, 64)
        refused = httpx.post(f"{url}/generate", json={"prompt": "x", "width": 64, "height": 64})
        assert refused.status_code == 400 and "text-to-image" in refused.json()["error"]["message"]
        too_many = httpx.post(f"{url}/generate", json={"prompt": "x", "width": 64, "height": 64,
                                                        "image_urls": refs * 2})
        assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "image_urls"
        compat(url, "openai_images.py", "curl_images.sh")


def test_wan_text_to_video():
    with running_server("--model-path", "tiny:wan-t2v") as url:
        body = {"num_frames": 9, "fps": 8, "seed": 3}
        video = generate(url, **body)
        frames = frames_of(video["video"])
        assert len(frames) == 9 and frames[0].shape == (64, 64, 3)
        assert generate(url, **body)["video"] == video["video"]
        bad = httpx.post(f"{url}/generate", json={"prompt": "x", "width": 64, "height": 64, "num_frames": 10})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "num_frames"
        # Nothing but a prompt: the tiny model's defaults (64x64, 9 frames), quick on a CPU.
        bare = httpx.post(f"{url}/generate", json={"prompt": "a cat", "num_inference_steps": 2}, timeout=120)
        assert bare.status_code == 200 and len(frames_of(bare.json()["video"])) == 9
        compat(url, "native_client.py", "openai_videos.py")


def test_wan_image_to_video():
    with running_server("--model-path", "tiny:wan-i2v") as url:
        video = generate(url, num_frames=9, seed=1, image_urls=[png_data_uri(64, 64, (20, 120, 220))])
        assert len(frames_of(video["video"])) == 9
        refused = httpx.post(f"{url}/generate", json={"prompt": "x", "width": 64, "height": 64, "num_frames": 9})
        assert refused.status_code == 400 and "text-to-video" in refused.json()["error"]["message"]
        compat(url, "native_client.py", "openai_videos.py")


def audio_and_video_seconds(data: bytes) -> tuple[float, float, int]:
    with av.open(io.BytesIO(data)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        return float(video.duration * video.time_base), float(audio.duration * audio.time_base), audio.rate


def test_ltx2_videos_carry_their_soundtrack_natively_and_as_jobs():
    """The real process on LTX-2: the MP4 of /generate and of a /v1/videos job (downloaded with the SDK) has an AAC
    stream at the vocoder's rate, as long as the frames."""
    import openai

    with running_server("--model-path", "tiny:ltx2") as url:
        made = generate(url, width=96, height=64, num_frames=17, fps=24, seed=2)
        assert len(frames_of(made["video"])) == 17
        video_s, audio_s, rate = audio_and_video_seconds(base64.b64decode(made["video"]))
        assert rate == 24000 and abs(video_s - audio_s) < 1024 / rate and abs(video_s - 17 / 24) < 0.01
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        job = client.videos.create_and_poll(prompt="waves", size="96x64", seconds="1",
                                            extra_body={"num_inference_steps": 2}, poll_interval_ms=100)
        assert job.status == "completed" and job.num_frames == 25  # 1 s at 24 fps, as 8k+1
        content = client.videos.download_content(job.id).read()
        video_s, audio_s, _ = audio_and_video_seconds(content)
        assert abs(video_s - audio_s) < 1024 / rate and abs(video_s - 25 / 24) < 0.01


@pytest.mark.parametrize(("args", "code"), [
    (["--model-path", "/nonexistent/model"], 1),
    (["--parallel-type", "ulysses"], 2),
    (["--device", "cuda"], 2),  # refused at launch, before the port is bound
    (["--enable-cpu-offload"], 2),
])
def test_bad_launches_exit_non_zero(args, code, tmp_path):
    done = subprocess.run([sys.executable, "-m", "openai_dit", "serve", "--port", "0", "--data-dir", str(tmp_path),
                           *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stdout + done.stderr


def test_a_data_directory_in_use_is_refused(tmp_path):
    from openai_dit.jobs.store import JobStore, job_store_url

    held = JobStore(job_store_url("sqlite", str(tmp_path)), data_dir=str(tmp_path))
    try:
        done = subprocess.run([sys.executable, "-m", "openai_dit", "serve", "--port", "0", "--data-dir",
                               str(tmp_path)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "in use by another openai-dit server" in done.stderr, done.stderr
    finally:
        held.close()


def test_old_style_invocation_without_subcommand():
    done = subprocess.run([sys.executable, "-m", "openai_dit", "--model-path", "tiny:flux", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--max-continuous-cached-steps" in done.stdout


def test_sigterm_lets_the_request_in_flight_finish_then_exits_zero(tmp_path):
    import signal
    import threading
    import time

    from .conftest import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "openai_dit", "serve", "--model-path", "tiny:flux", "--host",
                                "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
        results = []
        body = {"prompt": "x", "width": 1024, "height": 1024, "num_inference_steps": 30}
        thread = threading.Thread(target=lambda: results.append(
            httpx.post(f"http://127.0.0.1:{port}/generate", json=body, timeout=120)))
        thread.start()
        time.sleep(0.5)  # the request is running
        process.send_signal(signal.SIGTERM)
        thread.join(120)
        assert results and results[0].status_code == 200 and results[0].json()["images"]
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
