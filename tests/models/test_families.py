"""The family table against the real pipeline classes: one tiny model per entry, an unknown class read from its
signature (and said to be inferred), and the rules the table adds: masks, frame rates, buckets, min steps, cache."""

from __future__ import annotations

import json
import threading

import pytest
from fakes import assert_openai_error, data_uri, png_bytes

from openai_dit.cli import _check_launch
from openai_dit.config import ServerConfig
from openai_dit.models.families import FAMILIES
from openai_dit.models.tiny import BUILTIN_MODELS, builtin_model_dir, write_builtin
from openai_dit.types import GenerationRequest, Task

from .test_family_matrix import mask_png, served

pytestmark = pytest.mark.slow  # real pipelines of many families


def test_every_family_has_a_tiny_model_and_every_tiny_model_a_family():
    classes = {}
    for name in BUILTIN_MODELS:
        index = json.loads((builtin_model_dir(name) / "model_index.json").read_text())
        classes[name] = index["_class_name"]
    assert set(classes.values()) == set(FAMILIES)


def test_an_unknown_class_is_read_from_its_signature_and_said_to_be_inferred(tmp_path):
    folder = write_builtin("tiny:flux", tmp_path / "img2img")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxImg2ImgPipeline"}))
    with served(str(folder)) as client:
        caps = client.capabilities
        assert caps["capabilities_inferred"] is True and caps["family"] == "FluxImg2ImgPipeline (inferred)"
        assert caps["tasks"] == ["image-edit"] and caps["size_multiple"] == 16
        made = client.post("/generate", json={"prompt": "x", "num_inference_steps": 2, "width": 64, "height": 64,
                                              "image_urls": [data_uri(png_bytes(64, 64))]})
        assert made.status_code == 200, made.text
        assert client.get("/get_model_info").json()["tasks"] == ["image-edit"]


def test_an_inpainting_only_model_needs_a_mask_and_others_refuse_one():
    image = data_uri(png_bytes(64, 64))
    with served("tiny:flux-fill") as fill:
        assert fill.capabilities["tasks"] == ["image-edit"] and fill.capabilities["mask_required"] is True
        body = {"prompt": "x", "num_inference_steps": 2, "width": 64, "height": 64}
        assert_openai_error(fill.post("/generate", json=body), 400, "image_urls")  # no text-to-image
        error = assert_openai_error(fill.post("/generate", json={**body, "image_urls": [image]}), 400, "mask")
        assert error["code"] == "mask_required"
        small_mask = data_uri(mask_png((32, 32), alpha=False))
        assert_openai_error(fill.post("/generate", json={**body, "image_urls": [image], "mask": small_mask}), 400,
                            "mask")
        no_mask = fill.post("/v1/images/edits", data={"prompt": "x"},
                            files=[("image", ("a.png", png_bytes(64, 64), "image/png"))])
        assert_openai_error(no_mask, 400, "mask")
    with served("tiny:flux2-klein") as klein:
        mask = data_uri(mask_png((64, 64), alpha=False))
        refused = klein.post("/generate", json={"prompt": "x", "image_urls": [image], "mask": mask})
        assert assert_openai_error(refused, 400, "mask")["code"] == "unsupported_parameter"
        upload = klein.post("/v1/images/edits", data={"prompt": "x"},
                            files=[("image", ("a.png", png_bytes(64, 64), "image/png")),
                                   ("mask", ("m.png", mask_png((64, 64), alpha=True), "image/png"))])
        assert_openai_error(upload, 400, "mask")


def test_ltx_takes_its_frame_rate_sizes_of_32_and_8k_plus_1_frames():
    from openai_dit.models.executor import PipelineExecutor
    from openai_dit.models.loader import load_model

    executor = PipelineExecutor(load_model(ServerConfig(model_path="tiny:ltx")))
    request = GenerationRequest(task=Task.TEXT_TO_VIDEO, prompt="p", width=96, height=64, num_inference_steps=2,
                                seed=1, num_frames=9, fps=12)
    kwargs = executor._kwargs([request])
    assert kwargs["frame_rate"] == 12 and (kwargs["width"], kwargs["height"]) == (96, 64) and "fps" not in kwargs
    with served("tiny:ltx") as client:
        error = assert_openai_error(client.post("/v1/videos", json={"prompt": "p", "size": "100x64"}), 400, "size")
        assert "nearest: 96x64" in error["message"]
        error = assert_openai_error(client.post("/v1/videos", json={"prompt": "p", "num_frames": 13}), 400,
                                    "num_frames")
        assert "8k+1" in error["message"] and "9 or 17" in error["message"]
        assert_openai_error(client.post("/generate", json={"prompt": "p", "num_frames": 9, "num_inference_steps": 1}),
                            400, "num_inference_steps")


def test_mochi_takes_6k_plus_1_frames():
    with served("tiny:mochi") as client:
        assert client.capabilities["frame_rule"] == "6k+1"
        body = {"prompt": "p", "width": 64, "height": 64, "num_inference_steps": 2}
        assert client.post("/generate", json={**body, "num_frames": 7}).status_code == 200
        error = assert_openai_error(client.post("/generate", json={**body, "num_frames": 9}), 400, "num_frames")
        assert "6k+1" in error["message"] and "7 or 13" in error["message"]


def test_a_bucketed_model_names_the_sizes_it_can_make():
    with served("tiny:hunyuan-video-1.5-i2v") as client:
        sizes = client.capabilities["sizes"]
        assert sizes and "64x64" in sizes
        upload = [("input_reference", ("in.png", png_bytes(64, 64), "image/png"))]
        error = assert_openai_error(client.post("/v1/videos", data={"prompt": "p", "size": "96x64"},
                                                files=upload), 400, "size")
        assert "makes only" in error["message"] and "64x64" in error["message"]


def test_cache_on_ltx2_is_refused_at_launch_naming_the_cache_dit_version():
    from importlib.metadata import version

    builtin_model_dir("tiny:ltx2")  # built: its folder says which family it is
    problem = _check_launch(ServerConfig(model_path="tiny:ltx2", cache=True))
    assert problem and f"cache-dit {version('cache-dit')} cannot cache LTX-2" in problem
    assert _check_launch(ServerConfig(model_path="tiny:ltx", cache=True)) is None


def test_the_preview_of_a_kontext_edit_keeps_the_requested_size():
    """FLUX.1 Kontext previews decode at the size asked for (its output is no longer rescaled to 1 MP)."""
    from openai_dit.models.executor import PipelineExecutor
    from openai_dit.models.loader import load_model

    executor = PipelineExecutor(load_model(ServerConfig(model_path="tiny:flux-kontext")))
    previews = []
    request = GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt="p", width=80, height=64, num_inference_steps=4,
                                seed=1, partial_images=1)
    result = executor.run(request, threading.Event(), lambda p: previews.append(p) if p.previews is not None else 0)
    assert result.images.shape == (1, 64, 80, 3) and previews[0].previews.shape == (1, 64, 80, 3)


@pytest.mark.parametrize("name", ["tiny:wan-i2v", "tiny:wan2.1-i2v"])
def test_wan_takes_guidance_scale_2_only_with_two_experts(name):
    with served(name) as client:
        body = {"prompt": "p", "width": 64, "height": 64, "num_frames": 5, "num_inference_steps": 2,
                "guidance_scale_2": 3.0, "image_urls": [data_uri(png_bytes(64, 64))]}
        response = client.post("/generate", json=body)
        if name == "tiny:wan-i2v":  # Wan 2.2: boundary_ratio set
            assert response.status_code == 200, response.text
        else:
            assert_openai_error(response, 400, "guidance_scale_2")
