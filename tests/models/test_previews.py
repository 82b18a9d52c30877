"""Partial images decoded from intermediate latents, per-request cache settings and usage on real tiny models."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from openai_dit.models.executor import to_uint8
from openai_dit.models.previews import DenoisedEstimate, decode_preview, preview_family, preview_steps
from openai_dit.types import GenerationRequest, Task


def request(task=Task.TEXT_TO_IMAGE, steps=8, **kwargs) -> GenerationRequest:
    return GenerationRequest(task=task, prompt="a red fox in snow", width=64, height=64, num_inference_steps=steps,
                             seed=4, **kwargs)


def test_preview_steps_are_spread_and_never_the_last():
    assert preview_steps(8, 3) == [2, 4, 6]
    assert preview_steps(4, 3) == [1, 2, 3]
    assert preview_steps(2, 3) == [1]
    assert preview_steps(1, 3) == [] and preview_steps(8, 0) == []
    assert [preview_family(n) for n in ("FluxPipeline", "Flux2KleinPipeline", "QwenImageEditPlusPipeline",
                                        "WanPipeline")] == ["flux", "flux2", "qwen-image", None]


@pytest.mark.slow  # a model each
@pytest.mark.parametrize("model", ["tiny:flux", "tiny:flux2-klein", "tiny:qwen-image-edit-plus"])
def test_decoding_the_final_latents_gives_the_final_image(load, model):
    """The layout of each family: the preview decoder on the last step's latents reproduces the pipeline's own
    output, and the x0 estimate at the last step equals those latents (the Euler step lands on sigma 0)."""
    executor = load(model)
    pipe = executor.model.pipe
    caps = executor.capabilities
    images = [Image.new("RGB", (64, 64), (200, 40, 40))] if Task.TEXT_TO_IMAGE not in caps.tasks else []
    captured = {}

    def keep(pipeline, step, timestep, kwargs):
        captured["latents"], captured["estimate"] = kwargs["latents"], estimate.latents()
        return kwargs

    kwargs = {"prompt": "a fox", "width": 64, "height": 64, "num_inference_steps": 3, "output_type": "np",
              "generator": torch.Generator("cpu").manual_seed(0), "callback_on_step_end": keep}
    if images:
        kwargs["image"] = images
    estimate = DenoisedEstimate(pipe.scheduler)
    with torch.inference_mode(), estimate:
        final = to_uint8(pipe(**kwargs).images)
    assert "step" not in vars(pipe.scheduler)  # the wrapper is gone after the call
    preview = to_uint8(decode_preview(pipe, preview_family(type(pipe).__name__), captured["latents"], 64, 64))
    assert np.abs(preview.astype(int) - final.astype(int)).max() <= 1
    assert torch.allclose(captured["estimate"], captured["latents"].float(), atol=1e-5)


def test_executor_previews_approach_the_final_image(load):
    executor = load("tiny:flux")
    seen = []
    result = executor.run(request(partial_images=3), threading.Event(), seen.append)
    previews = [p for p in seen if p.previews is not None]
    assert [(p.step, p.preview_index) for p in previews] == [(2, 0), (4, 1), (6, 2)]
    final = result.images[0].astype(float)
    distances = [np.abs(p.previews[0] - final).mean() for p in previews]
    assert distances == sorted(distances, reverse=True) and distances[-1] < distances[0]
    assert all(p.previews.shape == (1, 64, 64, 3) and p.previews.dtype == np.uint8 for p in previews)
    plain = executor.run(request(), threading.Event(), seen.append)
    assert np.array_equal(plain.images, result.images)  # previews never change the result


def test_usage_counts_prompt_tokens(load):
    executor = load("tiny:flux")
    result = executor.run(request(steps=1), threading.Event())
    t5 = executor.model.pipe.tokenizer_2  # Flux's main text encoder
    assert result.prompt_tokens == len(t5("a red fox in snow", add_special_tokens=False)["input_ids"]) >= 17


def test_per_request_cache_settings(load):
    executor = load("tiny:flux", cache=True, rdt=0.0, Fn=1, max_warmup_steps=2, fresh=True)
    run = lambda **kw: executor.run(request(**kw), threading.Event())  # noqa: E731
    assert run().cache.cached_steps == 0  # the server's rdt 0 caches nothing
    loose = run(cache={"rdt": 5.0})
    assert loose.cache.enabled and loose.cache.cached_steps > 0
    assert run(cache={"rdt": 5.0, "max_cached_steps": 1}).cache.cached_steps == 1
    off = run(cache={"enabled": False})
    assert not off.cache.enabled
    assert run().cache.cached_steps == 0  # back to the server's settings
    uncached = load("tiny:flux").run(request(), threading.Event())
    assert np.array_equal(off.images, uncached.images)


def test_a_failing_preview_never_fails_the_request(load, monkeypatch):
    import openai_dit.models.executor as executor_module

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(executor_module, "decode_preview", broken)
    seen = []
    result = load("tiny:flux").run(request(partial_images=2), threading.Event(), seen.append)
    assert result.images.shape == (1, 64, 64, 3) and all(p.previews is None for p in seen)
