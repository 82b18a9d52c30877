"""One pipeline call for several requests on the real tiny models: each result equals the request run alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from openai_dit.types import GenerationRequest, Task


def request(prompt: str, seed: int, n: int = 1, task=Task.TEXT_TO_IMAGE, **kwargs) -> GenerationRequest:
    return GenerationRequest(task=task, prompt=prompt, width=64, height=64, num_inference_steps=3, seed=seed,
                             num_outputs=n, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "task", "extra"), [
    ("tiny:flux", Task.TEXT_TO_IMAGE, {}),
    ("small:flux", Task.TEXT_TO_IMAGE, {}),
    ("tiny:wan-t2v", Task.TEXT_TO_VIDEO, {"num_frames": 5, "negative_prompt": "blurry"}),
])
def test_a_batched_call_gives_each_request_what_it_gets_alone(load, model, task, extra):
    executor = load(model)
    requests = [request("a red fox in snow", 1, **extra, task=task),
                request("a lighthouse at dusk", 7, n=2, **extra, task=task),
                request("a bowl of ramen", 3, **extra, task=task)]
    for r in requests[1:]:
        assert r.batch_key == requests[0].batch_key
    batched = executor.run_batch(requests, threading.Event())
    assert [r.seeds for r in batched] == [r.seeds for r in requests]
    for req, together in zip(requests, batched, strict=True):
        alone = executor.run(req, threading.Event())
        a, b = (alone.videos, together.videos) if task.is_video else (alone.images, together.images)
        assert a.shape == b.shape and a.shape[0] == req.num_outputs
        difference = np.abs(a.astype(int) - b.astype(int))
        assert difference.max() <= 2 and difference.mean() < 0.05, (difference.max(), difference.mean())
        assert together.prompt_tokens == alone.prompt_tokens > 0
