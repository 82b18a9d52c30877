"""The step protocol of several ranks, on one process with a recording StepSync: however a call ends, this rank
makes exactly as many syncs as the others, so no rank is left waiting in a collective."""

from __future__ import annotations

import threading

import pytest

from openai_dit.distributed.ranks import PeerFailed
from openai_dit.errors import RequestCancelled
from openai_dit.models.executor import PipelineExecutor
from openai_dit.types import GenerationRequest, Task

STEPS = 4


class RecordingSync:
    """Answers (stop, failed) as the other ranks would; records what this rank sent."""

    def __init__(self, peer_fails_at: int | None = None) -> None:
        self.sent: list[tuple[bool, bool]] = []
        self.peer_fails_at = peer_fails_at
        self.in_call_since = None

    def __call__(self, stop: bool, failed: bool) -> tuple[bool, bool]:
        self.sent.append((stop, failed))
        return stop, failed or len(self.sent) == self.peer_fails_at

    def begin(self) -> None:
        self.in_call_since = 1.0

    def end(self) -> None:
        self.in_call_since = None


@pytest.fixture
def executor_with(load):
    model = load("tiny:flux").model

    def make(sync: RecordingSync) -> PipelineExecutor:
        return PipelineExecutor(model, step_sync=sync)

    return make


def request() -> GenerationRequest:
    return GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt="a boat", width=64, height=64,
                             num_inference_steps=STEPS, seed=1)


def test_a_normal_call_syncs_after_each_step_and_at_the_end(executor_with):
    sync = RecordingSync()
    result = executor_with(sync).run(request(), threading.Event())
    assert sync.sent == [(False, False)] * (STEPS + 1) and result.images.shape == (1, 64, 64, 3)
    assert sync.in_call_since is None
    assert executor_with(sync).capabilities.previews is False  # previews decode on rank 0 alone: none


def test_a_peer_failure_ends_the_call_on_the_sync_that_reported_it(executor_with):
    sync = RecordingSync(peer_fails_at=2)
    with pytest.raises(PeerFailed):
        executor_with(sync).run(request(), threading.Event())
    assert len(sync.sent) == 2


def test_a_local_failure_is_told_once_in_place_of_the_next_sync(executor_with):
    sync = RecordingSync()

    def failing(progress):
        if progress.step == 2:
            raise ValueError("boom")

    with pytest.raises(ValueError):
        executor_with(sync).run(request(), threading.Event(), failing)
    assert sync.sent == [(False, False), (False, True)]  # step 1, then the failure where step 2's sync would be


def test_rank_zeros_cancel_travels_in_the_step_sync(executor_with):
    sync = RecordingSync()
    cancelled = threading.Event()

    def cancel_at_two(progress):
        if progress.step == 2:
            cancelled.set()

    with pytest.raises(RequestCancelled):
        executor_with(sync).run(request(), cancelled, cancel_at_two)
    assert sync.sent == [(False, False), (True, False)]
