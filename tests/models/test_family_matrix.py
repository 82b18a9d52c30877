"""Every built-in tiny family, served in-process by the real app and engine: each of its tasks through the native
and the OpenAI routes, with and without --cache; the size and frame count made are the ones asked for, and the
outputs decode (LTX-2's MP4 with its soundtrack)."""

from __future__ import annotations

import base64
import io
import tempfile
import time
from contextlib import contextmanager

import av
import pytest
from fakes import data_uri, png_bytes
from PIL import Image

from openai_dit.config import ServerConfig
from openai_dit.models.tiny import BUILTIN_MODELS

FAMILIES = sorted(name for name in BUILTIN_MODELS if name.startswith("tiny:"))
CACHE = {"cache": True, "Fn": 1, "rdt": 5.0, "max_warmup_steps": 1}


@contextmanager
def served(model_path: str, **overrides):
    """The app on the real engine (loader, executor, runner), as `openai-dit serve` builds it, in this process."""
    from litestar.testing import TestClient

    from openai_dit.models.executor import PipelineExecutor
    from openai_dit.models.loader import load_model
    from openai_dit.runner import Runner
    from openai_dit.server import create_app

    with tempfile.TemporaryDirectory(prefix="openai-dit-data-") as data_dir:
        config = ServerConfig(model_path=model_path, data_dir=data_dir, **overrides)
        failures: list[BaseException] = []
        runner = Runner(lambda: PipelineExecutor(load_model(config)), on_fatal=failures.append)
        with TestClient(create_app(config, runner)) as client:
            deadline = time.monotonic() + 120
            while not runner.ready and not failures and time.monotonic() < deadline:
                time.sleep(0.02)
            if failures:
                raise failures[0]
            client.capabilities = client.get("/v1/models").json()["data"][0]["capabilities"]
            yield client


def size_for(caps: dict) -> tuple[int, int]:
    """A non-square size the model makes: one of its buckets, or multiples of its size multiple (sides >= 64)."""
    if caps["sizes"]:
        sizes = [tuple(map(int, s.split("x"))) for s in caps["sizes"]]
        usable = [s for s in sizes if min(s) >= 64] or sizes  # the native API takes sides of 64 and more
        return next((s for s in usable if s[0] != s[1]), usable[0])
    m = caps["size_multiple"]
    side = -(-64 // m) * m
    return side + m, side


def frames_for(caps: dict) -> int:
    """A valid frame count above the smallest: 9 for 4k+1 and 8k+1, 13 for Mochi's 6k+1."""
    multiple = caps["frame_multiple"]
    return multiple * (2 if multiple < 8 else 1) + 1


def png_size(b64: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(b64))).size


def mask_png(size: tuple[int, int], *, alpha: bool) -> bytes:
    """The right half repainted: OpenAI's form (transparent = repaint) or diffusers' (white = repaint)."""
    image = Image.new("RGBA" if alpha else "L", size, (0, 0, 0, 255) if alpha else 0)
    image.paste((0, 0, 0, 0) if alpha else 255, (size[0] // 2, 0, size[0], size[1]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def check_video(data: bytes, size: tuple[int, int], frames: int, audio: bool) -> None:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        decoded = list(container.decode(video))
        assert len(decoded) == frames and (decoded[0].width, decoded[0].height) == size
        assert len(container.streams.audio) == int(audio)
        if audio:
            sound = container.streams.audio[0]
            assert sound.codec_context.name == "aac" and sound.rate > 0
            video_s, audio_s = float(video.duration * video.time_base), float(sound.duration * sound.time_base)
            assert abs(video_s - audio_s) < 1024 / sound.rate, (video_s, audio_s)  # within one AAC frame


def native(client, **body) -> dict:
    response = client.post("/generate", json={"prompt": "a red boat at sea", "num_inference_steps": 2, **body})
    assert response.status_code == 200, response.text
    return response.json()


def openai_video(client, files: dict | None = None, **fields) -> bytes:
    """A video job (multipart with an input image, else JSON) run to completion; its MP4."""
    if files:
        response = client.post("/v1/videos", data={"prompt": "waves", **{k: str(v) for k, v in fields.items()}},
                               files=files)
    else:
        response = client.post("/v1/videos", json={"prompt": "waves", **fields})
    assert response.status_code == 200, response.text
    video_id, deadline = response.json()["id"], time.monotonic() + 60
    while (video := client.get(f"/v1/videos/{video_id}").json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, video
        time.sleep(0.05)
    assert video["status"] == "completed", video
    return client.get(f"/v1/videos/{video_id}/content").content


def exercise(client) -> None:
    """Every task of the served family, through both APIs."""
    caps = client.capabilities
    width, height = size_for(caps)
    size = f"{width}x{height}"
    image = data_uri(png_bytes(width, height))
    for task in caps["tasks"]:
        if task == "text-to-image":
            made = native(client, width=width, height=height)
            assert png_size(made["images"][0]) == (width, height) == (made["width"], made["height"])
            response = client.post("/v1/images/generations", json={"prompt": "a kite", "size": size,
                                                                    "num_inference_steps": 2})
            assert response.status_code == 200, response.text
            assert png_size(response.json()["data"][0]["b64_json"]) == (width, height)
        elif task == "image-edit":
            mask = {"mask": data_uri(mask_png((width, height), alpha=False))} if caps["inpainting"] else {}
            made = native(client, width=width, height=height, image_urls=[image], **mask)
            assert png_size(made["images"][0]) == (width, height)
            files = [("image", ("in.png", png_bytes(width, height), "image/png"))]
            if caps["inpainting"]:
                files.append(("mask", ("mask.png", mask_png((width, height), alpha=True), "image/png")))
            response = client.post("/v1/images/edits", data={"prompt": "make it blue", "size": size,
                                                              "num_inference_steps": "2"}, files=files)
            assert response.status_code == 200, response.text
            assert png_size(response.json()["data"][0]["b64_json"]) == (width, height)
        else:
            frames = frames_for(caps)
            reference = {"image_urls": [image]} if task == "image-to-video" else {}
            made = native(client, width=width, height=height, num_frames=frames, **reference)
            check_video(base64.b64decode(made["video"]), (width, height), frames, caps["audio"])
            upload = {"input_reference": ("in.png", png_bytes(width, height), "image/png")} \
                if task == "image-to-video" else None
            content = openai_video(client, upload, size=size, num_frames=frames, num_inference_steps=2)
            check_video(content, (width, height), frames, caps["audio"])


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_serves_each_task_through_both_apis(name):
    with served(name) as client:
        assert client.capabilities["capabilities_inferred"] is False
        exercise(client)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_with_cache_caches_steps_or_is_refused_at_start_up(name):
    from openai_dit.models.startup import StartupError

    with served(name) as plain:
        refused = plain.capabilities["cache"] == "refused"
    if refused:
        with pytest.raises(StartupError, match=r"cache-dit \d+\.\d+\.\d+ cannot cache"):
            with served(name, **CACHE):
                pass
        return
    with served(name, **CACHE) as client:
        caps = client.capabilities
        width, height = size_for(caps)
        body = {"width": width, "height": height, "num_inference_steps": 4, "include_stats": True}
        if caps["inpainting"]:
            body["mask"] = data_uri(mask_png((width, height), alpha=False))
        task = caps["tasks"][0]
        if task in ("image-edit", "image-to-video"):
            body["image_urls"] = [data_uri(png_bytes(width, height))]
        if "video" in task:
            body["num_frames"] = frames_for(caps)
        made = native(client, **body)
        assert made["stats"]["cache_enabled"] is True and made["stats"]["cached_steps"] > 0, made["stats"]
        assert (made["width"], made["height"]) == (width, height)
        exercise(client)
