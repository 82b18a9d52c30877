"""The runner: queueing, cancellation (queued and running), failures, control calls, and client disconnects
over a real uvicorn server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fakes import FakeEngine, run_request, wait_until

from openai_dit.config import ServerConfig
from openai_dit.errors import ServiceUnavailable
from openai_dit.runner import Runner
from openai_dit.types import GenerationRequest, Task


def make_request(steps: int = 3, seed: int = 1) -> GenerationRequest:
    return GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt="x", width=16, height=16, num_inference_steps=steps,
                             seed=seed)


def started_runner(engine, **kwargs) -> Runner:
    runner = Runner(lambda: engine, **kwargs)
    runner.start()
    wait_until(lambda: runner.ready, timeout=5)
    return runner



def test_progress_is_reported_per_step():
    runner = started_runner(FakeEngine())
    seen = []
    result = asyncio.run(run_request(runner, make_request(steps=4), on_progress=lambda p: seen.append(p.step)))
    assert seen == [0, 1, 2, 3, 4]  # 0: the call has started
    assert result.images.shape == (1, 16, 16, 3)
    runner.stop()


def gated_runner() -> tuple[FakeEngine, Runner]:
    """A runner whose engine holds every call at its first step until `engine.gate` is set."""
    engine = FakeEngine()
    engine.gate = threading.Event()
    return engine, started_runner(engine)


async def one_running_one_queued(engine: FakeEngine, runner: Runner):
    running = asyncio.ensure_future(run_request(runner, make_request(seed=1)))
    await asyncio.to_thread(engine.started.wait, 5)
    queued = asyncio.ensure_future(run_request(runner, make_request(seed=2)))
    await asyncio.sleep(0.05)
    assert runner.queued == 1
    return running, queued


def test_cancelled_waiter_drops_queued_job_and_stops_running_one():
    engine, runner = gated_runner()

    async def scenario():
        running, queued = await one_running_one_queued(engine, runner)
        queued.cancel()
        await asyncio.sleep(0.05)
        assert runner.queued == 0  # dropped before it ever ran
        running.cancel()
        engine.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(scenario())
    wait_until(lambda: engine.cancelled_calls == 1)
    assert [c.seed for c in engine.calls] == [1]
    runner.stop()


def test_engine_failure_fails_only_that_request():
    class Flaky(FakeEngine):
        def run_batch(self, requests, cancelled, on_progress=None):
            if requests[0].prompt == "boom":
                raise ValueError("internal detail /secret/path")
            return super().run_batch(requests, cancelled, on_progress)

    runner = started_runner(Flaky())
    bad = make_request()
    bad.prompt = "boom"
    with pytest.raises(ValueError):
        asyncio.run(run_request(runner, bad))
    assert asyncio.run(run_request(runner, make_request())).images is not None
    runner.stop()


def test_control_calls_run_between_jobs_and_stop_fails_waiters():
    engine = FakeEngine()
    runner = started_runner(engine)
    assert asyncio.run(runner.call(lambda e: e.flush() or "done")) == "done"
    assert engine.flushes == 1
    runner.stop()
    with pytest.raises(ServiceUnavailable):
        asyncio.run(run_request(runner, make_request()))


def test_load_failure_is_fatal():
    failures = []

    def broken():
        raise RuntimeError("no weights")

    runner = Runner(broken, on_fatal=failures.append)
    runner.start()
    wait_until(lambda: failures)
    assert not runner.ready


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_disconnect_cancels_running_and_queued_work():
    from openai_dit.server import create_app

    engine = FakeEngine(step_delay=0.05)
    engine.gate = threading.Event()
    runner = Runner(lambda: engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ServerConfig(model_path="fake"), runner), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: runner.ready, 10)
        body = {"prompt": "x", "width": 64, "height": 64, "num_inference_steps": 50}

        def post_and_give_up(after: float):
            try:
                httpx.post(f"http://127.0.0.1:{port}/generate", json=body, timeout=after)
            except httpx.TimeoutException:
                pass

        # The queued request's client leaves first: it is dropped while the running call is still held.
        first = threading.Thread(target=post_and_give_up, args=(1.5,))
        first.start()
        assert engine.started.wait(5)
        second = threading.Thread(target=post_and_give_up, args=(0.5,))
        second.start()
        first.join()
        second.join()
        # The server noticed both clients leave: the queued job is gone, the running call stopped at its step.
        wait_until(lambda: runner.queued == 0 and engine.cancelled_calls == 1 and not runner.running)
        engine.gate.set()
        assert len(engine.calls) == 1  # the queued request was dropped, never run
        ok = httpx.post(f"http://127.0.0.1:{port}/generate", json={**body, "num_inference_steps": 1}, timeout=10)
        assert ok.status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)


def test_stop_fails_queued_work_and_refuses_new_work():
    engine, runner = gated_runner()

    async def scenario():
        running, queued = await one_running_one_queued(engine, runner)
        stopper = asyncio.ensure_future(asyncio.to_thread(runner.stop, 10))
        await asyncio.sleep(0.05)
        engine.gate.set()
        await stopper
        with pytest.raises(ServiceUnavailable):
            await queued
        with pytest.raises(ServiceUnavailable):  # answered at once (503); the call ends at its next step
            await running
        with pytest.raises(ServiceUnavailable):
            await run_request(runner, make_request())

    asyncio.run(scenario())
    assert [c.seed for c in engine.calls] == [1] and engine.cancelled_calls == 1


def test_a_dead_engine_fails_everything_at_once_and_asks_to_exit():
    fatal = []
    engine = FakeEngine()
    engine.gate = threading.Event()
    runner = Runner(lambda: engine, on_fatal=fatal.append)
    runner.start()
    wait_until(lambda: runner.ready)

    async def scenario():
        running, queued = await one_running_one_queued(engine, runner)
        runner.declare_dead("rank 1 disconnected")
        runner.declare_dead("again")  # once only
        for outcome in (running, queued):
            with pytest.raises(ServiceUnavailable):
                await asyncio.wait_for(outcome, 2)
        with pytest.raises(ServiceUnavailable):
            runner.submit(make_request())

    asyncio.run(scenario())
    assert not runner.ready and [str(e) for e in fatal] == ["rank 1 disconnected"]
    engine.gate.set()
    started = time.monotonic()
    runner.stop(30)
    assert time.monotonic() - started < 5  # a dead engine's call is not waited for
