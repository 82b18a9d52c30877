"""A job inside the runner, and the submission through which the event loop follows it.

The generation and encoder threads `post` events to a job; each lands on the submission's asyncio queue through
`call_soon_threadsafe`, the one hop between the threads and the event loop. A job settles once (a result or an
error), whichever path ends it first.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import RequestCancelled
from ..types import GenerationRequest, GenerationResult, Progress
from .events import Done, EncodeProgress, Event, Preview, StepDone

__all__ = ["CallRecord", "EncodeStage", "Job", "Submission"]

# The encode stage of a job: (result, report) -> output, run on an encoder thread; `report(fraction)` posts an
# EncodeProgress event.
EncodeStage = Callable[[GenerationResult, Callable[[float], None]], Any]


@dataclass(eq=False)
class CallRecord:
    """One pipeline call as the generation thread saw it, in `time.monotonic()` seconds: the traces and the step
    histogram are made from it afterwards (nothing crosses to the event loop for them)."""

    started_at: float
    batch_size: int  # requests in the call
    steps: list[tuple[int, int, float]] = field(default_factory=list)  # (step, total_steps, when) as reported
    ended_at: float | None = None  # when the engine's call returned or raised


@dataclass(eq=False)
class Job:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    encode: EncodeStage | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued_at: float = field(default_factory=time.monotonic)
    inference_seconds: float | None = None
    regrouped: bool = False  # its call was restarted once to take in waiting requests; never again
    settled: bool = False
    on_settled: Callable[[Job, BaseException | None, GenerationResult | None], None] | None = None
    # Tracing (see `observer.TracingObserver`): plain timestamps, written by the threads that do the work.
    trace_context: Any = None  # the OpenTelemetry context it was submitted in; None while tracing is off
    detached: bool = False  # it outlives the HTTP request that created it (a video job): a trace of its own
    call: CallRecord | None = None  # its (last) pipeline call
    steps_seen: int = 0  # the steps of that call that reached it (one that left the call stops counting)
    result_at: float | None = None  # when its call returned its result (the VAE decode done)
    encode_started_at: float | None = None
    settled_at: float | None = None
    _queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    @property
    def started_at(self) -> float | None:
        """When its (last) pipeline call started; None while it waits."""
        return self.call.started_at if self.call is not None else None

    def post(self, event: Event) -> None:
        """From any thread: the event, for the submission (dropped once the job has settled or the loop closed)."""
        if self.settled:
            return
        self._deliver(event)

    def settle(self, result: GenerationResult | None = None, output: Any = None,
               error: BaseException | None = None) -> bool:
        """End the job with its Done event or its error, once; False when it had settled already."""
        if self.settled:
            return False
        self.settled = True
        self.settled_at = time.monotonic()
        self._deliver(error if error is not None else Done(result, output))  # type: ignore[arg-type]
        if self.on_settled is not None:
            self.on_settled(self, error, result)
        return True

    def _deliver(self, item: Event | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop has closed: nobody is listening
            pass

    def report_encoding(self, fraction: float) -> None:
        self.post(EncodeProgress(min(1.0, max(0.0, fraction))))

    def on_progress(self, progress: Progress) -> None:
        """From the generation thread: this job's share of a step of its call (see `batching.fan_out_progress`)."""
        self.steps_seen += 1
        self.post(StepDone(progress.step, progress.total_steps))
        if progress.previews is not None and progress.preview_index is not None:
            self.post(Preview(progress.preview_index, progress.previews))

    async def next(self) -> Event | BaseException:
        return await self._queue.get()


class Submission:
    """An admitted request's events, in order, on the event loop: `async for event in submission`. The last is
    Done; a failure is raised instead. Cancelling the iterating task (a client gone, a time limit) cancels the job:
    a queued one is dropped, a running one stops at its next step."""

    def __init__(self, job: Job, cancel: Callable[[Job], None], withdraw: Callable[[Job], bool]) -> None:
        self._job = job
        self._cancel = cancel
        self._withdraw = withdraw
        self._finished = False

    @property
    def request(self) -> GenerationRequest:
        return self._job.request

    def __aiter__(self) -> Submission:
        return self

    async def __anext__(self) -> Event:
        if self._finished:
            raise StopAsyncIteration
        try:
            item = await self._job.next()
        except BaseException:  # cancelled while waiting: the client is gone
            self.cancel()
            raise
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        if isinstance(item, Done):
            self._finished = True
        return item

    async def done(self) -> Done:
        """Iterate to the end: the Done event (or the failure, raised)."""
        async for event in self:
            if isinstance(event, Done):
                return event
        raise RequestCancelled()  # ended without a result (never happens: every job settles)

    def cancel(self) -> None:
        """Drop the job if it is queued, else stop it at its next denoising step (unless others share the call)."""
        if not self._finished:
            self._cancel(self._job)

    def withdraw(self) -> bool:
        """Drop the job only if it is still queued; whether it was."""
        return self._withdraw(self._job)

    async def aclose(self) -> None:
        self.cancel()
