"""Batching in the runner, with a fake engine: which waiting requests share a call, results and previews split back,
a cancelled member, the batch bound, and the out-of-memory fallback."""

from __future__ import annotations

import asyncio
import io
import threading
import traceback
import weakref

import numpy as np
import pytest
from fakes import IMAGES, FakeEngine, png_bytes, run_request, serving, wait_until
from PIL import Image

from openai_dit.runner import Runner
from openai_dit.types import GenerationRequest, Task


def make(prompt: str, seed: int = 1, n: int = 1, size: int = 16, **kwargs) -> GenerationRequest:
    return GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt=prompt, width=size, height=size, num_inference_steps=2,
                             seed=seed, num_outputs=n, request_id=prompt, **kwargs)



def held_runner(max_batch_size: int, engine: FakeEngine | None = None) -> tuple[FakeEngine, Runner]:
    """A runner whose first call is held at its first step (`engine.gate`), so that later requests wait."""
    engine = engine or FakeEngine(IMAGES)
    engine.gate = threading.Event()
    runner = Runner(lambda: engine, max_batch_size=max_batch_size)
    runner.start()
    wait_until(lambda: runner.ready)
    return engine, runner


def held() -> GenerationRequest:
    """The call that holds the pipeline while others queue: a size nothing else uses, so that none joins it."""
    return make("first", size=48)


async def queue_behind_held(engine: FakeEngine, runner: Runner, requests: list[GenerationRequest],
                            listeners: list | None = None) -> list[asyncio.Future]:
    """Run `held()` (held at its first step), queue `requests` behind it, release it and let it finish; the
    queued requests' pending results."""
    first = asyncio.ensure_future(run_request(runner, held()))
    await asyncio.to_thread(engine.started.wait, 5)
    tasks = [asyncio.ensure_future(run_request(runner, r, on_progress=(listeners or [None] * len(requests))[i]))
             for i, r in enumerate(requests)]
    while runner.queued < len(requests):
        await asyncio.sleep(0.005)
    engine.gate.set()
    await first
    return tasks


async def submit_while_held(engine: FakeEngine, runner: Runner, requests: list[GenerationRequest]):
    """The results of `requests`, queued behind a held call."""
    return await asyncio.gather(*await queue_behind_held(engine, runner, requests), return_exceptions=True)


def test_waiting_requests_that_can_share_a_call_share_it():
    engine, runner = held_runner(max_batch_size=8)
    requests = [make("a", seed=1), make("other size", size=32), make("b", seed=5, n=2),
                make("negative", negative_prompt="blurry"), make("c", seed=9)]
    results = asyncio.run(submit_while_held(engine, runner, requests))
    assert [[r.prompt for r in batch] for batch in engine.batches] == \
        [["first"], ["a", "b", "c"], ["other size"], ["negative"]]
    by_prompt = dict(zip([r.prompt for r in requests], results, strict=True))
    assert by_prompt["b"].seeds == [5, 6] and by_prompt["b"].images.shape == (2, 16, 16, 3)
    assert by_prompt["c"].seeds == [9] and by_prompt["c"].images.shape == (1, 16, 16, 3)
    alone = FakeEngine(IMAGES).run(make("b", seed=5, n=2), threading.Event())
    assert np.array_equal(by_prompt["b"].images, alone.images)
    runner.stop()


def test_the_bound_counts_images_and_one_means_never_batched():
    engine, runner = held_runner(max_batch_size=4)
    asyncio.run(submit_while_held(engine, runner, [make("a", n=3), make("b", n=2), make("c"), make("d", n=3)]))
    assert [[r.prompt for r in batch] for batch in engine.batches] == [["first"], ["a", "c"], ["b"], ["d"]]
    runner.stop()
    engine, runner = held_runner(max_batch_size=1)
    asyncio.run(submit_while_held(engine, runner, [make("a"), make("b")]))
    assert [len(batch) for batch in engine.batches] == [1, 1, 1]
    runner.stop()


def test_requests_with_input_images_run_alone():
    image = Image.open(io.BytesIO(png_bytes(16, 16)))
    engine, runner = held_runner(max_batch_size=8)
    edits = [GenerationRequest(task=Task.IMAGE_EDIT, prompt=p, width=16, height=16, num_inference_steps=2, seed=1,
                               images=[image]) for p in ("e1", "e2")]
    asyncio.run(submit_while_held(engine, runner, edits))
    assert [len(batch) for batch in engine.batches] == [1, 1, 1]
    runner.stop()


def test_each_member_gets_its_own_progress_and_previews():
    engine, runner = held_runner(max_batch_size=8)
    seen: dict[str, list] = {"a": [], "b": []}
    requests = [make("a", n=1, partial_images=1), make("b", n=2, partial_images=1)]

    async def scenario():
        listeners = [lambda p, k=r.prompt: seen[k].append(p) for r in requests]
        return await asyncio.gather(*await queue_behind_held(engine, runner, requests, listeners))

    asyncio.run(scenario())
    assert len(engine.batches[1]) == 2
    for prompt, outputs in (("a", 1), ("b", 2)):
        assert [p.step for p in seen[prompt]] == [0, 1, 2]
        previews = [p.previews for p in seen[prompt] if p.previews is not None]
        assert len(previews) == 1 and previews[0].shape == (outputs, 16, 16, 3)
    runner.stop()


def test_a_cancelled_member_leaves_the_others_running():
    engine, runner = held_runner(max_batch_size=8, engine=FakeEngine(IMAGES, step_delay=0.05))

    async def scenario():
        leaving, staying = await queue_behind_held(engine, runner, [make("leaving", seed=2), make("staying", seed=3)])
        while len(engine.batches) < 2:
            await asyncio.sleep(0.005)
        leaving.cancel()  # the client went away mid-call
        return await staying

    result = asyncio.run(scenario())
    assert [r.prompt for r in engine.batches[1]] == ["leaving", "staying"]
    assert engine.cancelled_calls == 0 and result.seeds == [3]
    alone = FakeEngine(IMAGES).run(make("staying", seed=3), threading.Event())
    assert np.array_equal(result.images, alone.images)
    runner.stop()


def test_a_call_whose_members_all_left_stops():
    engine, runner = held_runner(max_batch_size=8, engine=FakeEngine(IMAGES, step_delay=0.05))

    async def scenario():
        members = await queue_behind_held(engine, runner, [make("x"), make("y")])
        while len(engine.batches) < 2:
            await asyncio.sleep(0.005)
        for member in members:
            member.cancel()

    asyncio.run(scenario())
    wait_until(lambda: engine.cancelled_calls == 1)
    runner.stop()


def test_a_batch_out_of_memory_is_retried_one_by_one():
    class OutOfMemoryError(RuntimeError):
        pass

    class Tight(FakeEngine):
        def run_batch(self, requests, cancelled, on_progress=None):
            if len(requests) > 1:
                raise OutOfMemoryError("CUDA out of memory")
            return super().run_batch(requests, cancelled, on_progress)

    engine, runner = held_runner(max_batch_size=8, engine=Tight(IMAGES))
    results = asyncio.run(submit_while_held(engine, runner, [make("a", seed=1), make("b", seed=2)]))
    assert [r.seeds for r in results] == [[1], [2]]
    assert [[r.prompt for r in batch] for batch in engine.batches] == [["first"], ["a"], ["b"]]
    runner.stop()


def test_out_of_memory_retries_start_after_the_failed_call_is_released():
    """The failed call's tensors (held by its traceback's frames) are gone, and the engine has handed the memory
    back, before the first retry runs; a lone request's OOM releases them too."""
    class OutOfMemoryError(RuntimeError):
        pass

    class Activations:  # stands in for the tensors of the failed call
        pass

    class Tight(FakeEngine):
        held_by_failed_call: weakref.ref | None = None
        seen_at_release: list[bool] = []
        seen_at_retry: list[bool] = []

        def run_batch(self, requests, cancelled, on_progress=None):
            if len(requests) > 1 or requests[0].prompt == "huge":
                activations = Activations()  # a local of the failing frame
                Tight.held_by_failed_call = weakref.ref(activations)
                raise OutOfMemoryError("CUDA out of memory")
            if requests[0].prompt != "first":
                Tight.seen_at_retry.append(Tight.held_by_failed_call() is None)
            return super().run_batch(requests, cancelled, on_progress)

        def release_memory(self):
            Tight.seen_at_release.append(Tight.held_by_failed_call() is None)

    engine, runner = held_runner(max_batch_size=8, engine=Tight(IMAGES))
    results = asyncio.run(submit_while_held(engine, runner, [make("a", seed=1), make("b", seed=2)]))
    assert [r.seeds for r in results] == [[1], [2]]
    assert Tight.seen_at_release == [True] and Tight.seen_at_retry == [True, True]

    async def lone() -> BaseException:
        return (await asyncio.gather(run_request(runner, make("huge")), return_exceptions=True))[0]

    failed = asyncio.run(lone())
    assert type(failed).__name__ == "OutOfMemoryError"
    frames = [summary.name for summary in traceback.extract_tb(failed.__traceback__)]
    assert "run_batch" not in frames  # delivered without the failed call's frames
    wait_until(lambda: len(Tight.seen_at_release) == 2)  # released just after the error was delivered
    assert Tight.seen_at_release == [True, True]
    runner.stop()


def test_a_failed_batch_fails_each_member():
    class Failing(FakeEngine):
        def run_batch(self, requests, cancelled, on_progress=None):
            if len(requests) > 1:
                raise ValueError("broken")
            return super().run_batch(requests, cancelled, on_progress)

    engine, runner = held_runner(max_batch_size=8, engine=Failing(IMAGES))
    results = asyncio.run(submit_while_held(engine, runner, [make("a"), make("b")]))
    assert [type(r) for r in results] == [ValueError, ValueError]
    runner.stop()


@pytest.mark.parametrize("field", ["guidance_scale", "num_frames", "cache"])
def test_call_shaping_settings_are_in_the_batch_key(field):
    value = {"guidance_scale": 3.5, "num_frames": 9, "cache": {"rdt": 0.5}}[field]
    assert make("a").batch_key != make("a", **{field: value}).batch_key
    assert make("a").batch_key == make("b", seed=9, n=3).batch_key


def test_native_and_openai_requests_share_a_call_over_http():
    engine = FakeEngine(IMAGES)
    engine.gate = threading.Event()
    with serving(engine, max_batch_size=8) as client:
        results = {}
        common = {"num_inference_steps": 2, "seed": 3, "guidance_scale": 4.0}
        calls = {
            "held": ("/generate", {"prompt": "held", "width": 128, "height": 128, **common}),
            "native": ("/generate", {"prompt": "native", "width": 64, "height": 64, "num_images": 2, **common}),
            "openai": ("/v1/images/generations", {"prompt": "openai", "size": "64x64", **common}),
        }

        def post(name: str) -> None:
            path, body = calls[name]
            results[name] = client.post(path, json=body)

        threads = {name: threading.Thread(target=post, args=(name,)) for name in calls}
        threads["held"].start()
        wait_until(lambda: engine.started.is_set())
        threads["native"].start()
        threads["openai"].start()
        wait_until(lambda: client.runner.queued == 2)
        engine.gate.set()
        for thread in threads.values():
            thread.join(10)
        assert all(r.status_code == 200 for r in results.values()), {k: r.text for k, r in results.items()}
        assert [[r.prompt for r in batch] for batch in engine.batches][1] in (["native", "openai"],
                                                                               ["openai", "native"])
        assert len(results["native"].json()["images"]) == 2 and len(results["openai"].json()["data"]) == 1


def test_a_lone_call_restarts_once_to_take_in_requests_that_arrive_during_its_first_step():
    engine, runner = held_runner(max_batch_size=8)

    async def scenario(first: GenerationRequest, later: list[GenerationRequest]):
        lone = asyncio.ensure_future(run_request(runner, first))
        await asyncio.to_thread(engine.started.wait, 5)
        tasks = [asyncio.ensure_future(run_request(runner, r)) for r in later]
        while runner.queued < len(later):
            await asyncio.sleep(0.005)
        engine.gate.set()  # the lone call reaches the end of its first step with the others waiting
        return await asyncio.gather(lone, *tasks)

    results = asyncio.run(scenario(make("a", seed=1), [make("b", seed=2), make("c", seed=3)]))
    assert [[r.prompt for r in batch] for batch in engine.batches] == [["a"], ["a", "b", "c"]]
    assert [r.seeds for r in results] == [[1], [2], [3]]
    alone = FakeEngine(IMAGES).run(make("a", seed=1), threading.Event())
    assert np.array_equal(results[0].images, alone.images)
    runner.stop()
    # Fewer waiting outputs than the call makes: not worth a lost step.
    engine, runner = held_runner(max_batch_size=8)
    asyncio.run(scenario(make("a", n=2), [make("b")]))
    assert [[r.prompt for r in batch] for batch in engine.batches] == [["a"], ["b"]]
    runner.stop()
