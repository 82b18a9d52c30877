"""One pipeline call per request on real tiny models: seeds, outputs, progress, cancellation, cache-dit."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from PIL import Image

from openai_dit.errors import RequestCancelled
from openai_dit.types import GenerationRequest, Task


def request(task=Task.TEXT_TO_IMAGE, steps=4, seed=0, n=1, size=64, **kwargs) -> GenerationRequest:
    return GenerationRequest(task=task, prompt="a red fox in snow", width=size, height=size,
                             num_inference_steps=steps, seed=seed, num_outputs=n, **kwargs)


def run(executor, req, cancelled=None, on_progress=None):
    return executor.run(req, cancelled or threading.Event(), on_progress)


def test_seed_reproduces_and_one_generator_per_image(load):
    executor = load("tiny:flux")
    a = run(executor, request(seed=11)).images
    b = run(executor, request(seed=11)).images
    assert a.dtype == np.uint8 and a.shape == (1, 64, 64, 3)
    assert np.array_equal(a, b)
    pair = run(executor, request(seed=11, n=2))
    assert pair.seeds == [11, 12]
    # One call for two images: the same noise per seed; batched float kernels may round one level apart.
    assert np.abs(pair.images[0].astype(int) - a[0]).max() <= 1
    assert np.abs(pair.images[1].astype(int) - run(executor, request(seed=12)).images[0]).max() <= 1
    assert not np.array_equal(pair.images[0], pair.images[1])


def test_progress_and_cancellation_at_the_next_step(load):
    executor = load("tiny:flux")
    steps = []
    run(executor, request(steps=3), on_progress=lambda p: steps.append((p.step, p.total_steps)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    cancelled = threading.Event()
    seen = []

    def cancel_after_two(progress):
        seen.append(progress.step)
        if progress.step == 2:
            cancelled.set()

    with pytest.raises(RequestCancelled):
        run(executor, request(steps=8), cancelled, cancel_after_two)
    assert seen == [1, 2]


def test_a_cancelled_call_leaves_no_trace_in_the_next(load):
    executor = load("tiny:flux", cache=True, rdt=0.5, Fn=1, max_warmup_steps=2, fresh=True)
    reference = run(executor, request(steps=8, seed=21)).images
    cancelled = threading.Event()
    with pytest.raises(RequestCancelled):
        run(executor, request(steps=8, seed=99), cancelled, lambda p: p.step == 4 and cancelled.set())
    again = run(executor, request(steps=8, seed=21))
    assert np.array_equal(again.images, reference) and again.cache.total_steps == 8


@pytest.mark.slow  # a model each; test_family_matrix covers every family
@pytest.mark.parametrize(
    ("model", "req"),
    [
        ("tiny:flux2-klein", request()),
        ("tiny:flux2-klein", request(task=Task.IMAGE_EDIT, images=[Image.new("RGB", (64, 64), "red")] * 2)),
        ("tiny:qwen-image-edit-plus", request(task=Task.IMAGE_EDIT, steps=2,
                                              images=[Image.new("RGB", (96, 64), "red"), Image.new("RGB", (64, 64))])),
    ],
)
def test_image_families(load, model, req):
    result = run(load(model), req)
    assert result.images.shape == (1, 64, 64, 3) and result.images.dtype == np.uint8


def test_qwen_edit_uses_the_small_vae_area(load):
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as module

    load("tiny:qwen-image-edit-plus")
    assert module.VAE_IMAGE_SIZE == 128 * 128


@pytest.mark.slow  # a model each; test_family_matrix covers every family
@pytest.mark.parametrize(("model", "task", "images"), [
    ("tiny:wan-t2v", Task.TEXT_TO_VIDEO, []),
    ("tiny:wan-i2v", Task.IMAGE_TO_VIDEO, [Image.new("RGB", (80, 64), "blue")]),
])
def test_video_families(load, model, task, images):
    executor = load(model)
    result = run(executor, request(task=task, steps=2, size=32, num_frames=9, images=images, seed=5))
    assert result.videos.shape == (1, 9, 32, 32, 3) and result.videos.dtype == np.uint8
    again = run(executor, request(task=task, steps=2, size=32, num_frames=9, images=images, seed=5))
    assert np.array_equal(result.videos, again.videos)


def test_capabilities_come_from_the_pipeline(load):
    caps = load("tiny:flux").capabilities
    assert caps.tasks == {Task.TEXT_TO_IMAGE} and caps.accepts("true_cfg_scale") and caps.size_multiple == 16
    klein = load("tiny:flux2-klein").capabilities
    assert klein.tasks == {Task.TEXT_TO_IMAGE, Task.IMAGE_EDIT} and klein.max_input_images > 1
    qwen = load("tiny:qwen-image-edit-plus").capabilities
    assert qwen.tasks == {Task.IMAGE_EDIT} and qwen.max_input_images == 3
    i2v = load("tiny:wan-i2v").capabilities
    assert i2v.tasks == {Task.IMAGE_TO_VIDEO} and i2v.frame_multiple == 4 and i2v.size_multiple == 16
    t2v = load("tiny:wan-t2v").capabilities
    assert t2v.tasks == {Task.TEXT_TO_VIDEO}
    assert (t2v.default_width, t2v.default_height, t2v.default_num_frames) == (64, 64, 9)
    assert caps.default_size() == (256, 256) and caps.default_size((200, 100)) == (368, 176)


def test_cache_settings_take_effect_and_are_reported(load, caplog):
    plain = load("tiny:flux")
    with caplog.at_level(logging.WARNING, logger="openai_dit.cache"):
        cached = load("tiny:flux", cache=True, rdt=5.0, Fn=8, Bn=0, max_warmup_steps=2, fresh=True)
    assert "clamped" in caplog.text  # Fn=8 exceeds the tiny model's blocks
    assert cached.model.cache.settings.Fn == 1
    result = run(cached, request(steps=8))
    assert result.cache.enabled and result.cache.cached_steps > 0 and result.cache.total_steps == 8
    assert not np.array_equal(result.images, run(plain, request(steps=8)).images)
    # max_cached_steps bounds the cached steps
    bounded = load("tiny:flux", cache=True, rdt=5.0, Fn=1, max_warmup_steps=2, max_cached_steps=2, fresh=True)
    assert run(bounded, request(steps=8)).cache.cached_steps == 2
    # warm-up steps are never cached
    warm = load("tiny:flux", cache=True, rdt=5.0, Fn=1, max_warmup_steps=8, fresh=True)
    assert run(warm, request(steps=8)).cache.cached_steps == 0


def test_step_mask_follows_each_requests_step_count(load):
    import cache_dit

    executor = load("tiny:flux", cache=True, rdt=5.0, Fn=1, max_warmup_steps=1, scm="fast", fresh=True)
    for steps in (10, 20, 10):
        stats = run(executor, request(steps=steps)).cache
        mask = cache_dit.steps_mask(total_steps=steps, mask_policy="fast")
        assert stats.total_steps == steps and stats.cached_steps > 0
        # the mask's compute steps are never cached
        assert all(mask[i] == 0 for i in stats.cached_step_indices), (mask, stats.cached_step_indices)
        assert f"N{steps}" in stats.options


def test_taylorseer_takes_effect(load):
    executor = load("tiny:flux", cache=True, rdt=5.0, Fn=1, max_warmup_steps=2, taylorseer=True, taylorseer_order=2,
                    fresh=True)
    stats = run(executor, request(steps=8)).cache
    assert "T1O2" in stats.options and stats.cached_steps > 0


def test_flush_drops_cached_state_and_keeps_outputs_identical(load):
    import cache_dit

    executor = load("tiny:flux", cache=True, rdt=0.5, Fn=1, max_warmup_steps=2, fresh=True)
    before = run(executor, request(steps=8, seed=3)).images
    assert any(entry.residual_diffs for entry in cache_dit.summary(executor.model.pipe, logging=False))
    executor.flush()
    assert not any(entry.residual_diffs or entry.cached_steps
                   for entry in cache_dit.summary(executor.model.pipe, logging=False))
    assert np.array_equal(before, run(executor, request(steps=8, seed=3)).images)
