"""The runner: the one place where the async HTTP side meets the synchronous torch side.

HTTP handlers `await runner.submit(request, finalize=...)`. A bounded admission queue feeds one generation thread,
which owns the engine (the pipeline). When the pipeline is free it takes the oldest job and the waiting jobs that
can share its call (see `batching`), up to `max_batch_size` outputs, and runs them as one call. `finalize`
(encoding the outputs) runs on a small pool of encoder threads, so the generation thread starts the next call at
once and each result reaches the event loop in one hop. Cancelling the awaiting coroutine (client gone) drops a
queued job, or leaves a running call at its next denoising step once no member of the call is left. Control work
(cache flushes) runs on the generation thread, between calls. `drain()` stops admission and lets admitted work
finish (a graceful shutdown); `abort()` answers everything still waiting or running with a 503.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import APIError, ModelNotReady, QueueFull, RequestCancelled
from ..metrics import ServerMetrics
from ..models.capabilities import ModelCapabilities
from ..types import GenerationRequest, GenerationResult, Progress
from .batching import CallStop, fan_out_progress, take_batch, waiting_images

__all__ = ["Engine", "Runner"]

logger = logging.getLogger("openai_dit.runner")

_IDLE_RELEASE_SECONDS = 2.0  # after this long without work, the memory of past calls goes back to the device


class Engine(Protocol):
    """What the runner drives: the pipeline executor, or a fake in tests."""

    def run_batch(self, requests: list[GenerationRequest], cancelled, on_progress: Callable[[Progress], None] | None
                  = None) -> list[GenerationResult]:
        """One call for requests sharing a batch key; `cancelled.is_set()` stops it at the next step."""
        ...

    def flush(self) -> None: ...

    def release_memory(self) -> None:
        """Hand the memory of finished calls back to the device (optional)."""
        ...

    def describe(self) -> dict[str, Any]: ...

    @property
    def capabilities(self) -> ModelCapabilities: ...


# Called on the generation thread: a listener must be thread-safe (e.g. use loop.call_soon_threadsafe).
ProgressListener = Callable[[Progress], None]


@dataclass
class _Job:
    request: GenerationRequest
    future: Future
    on_progress: ProgressListener | None = None
    finalize: Callable[[GenerationResult], Any] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None  # when its (last) pipeline call started
    inference_seconds: float | None = None
    regrouped: bool = False  # its call was restarted once to take in waiting requests; never again
    counted: bool = False  # its outcome is in the metrics


def _settle(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Deliver to a future whose waiter may have been cancelled meanwhile (then nobody is listening)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


class Runner:
    """Admission queue + generation thread around one Engine."""

    def __init__(self, engine_factory: Callable[[], Engine], *, max_queued: int = 64, max_batch_size: int = 1,
                 on_fatal: Callable[[BaseException], None] | None = None,
                 metrics: ServerMetrics | None = None) -> None:
        self._engine_factory = engine_factory
        self._max_queued = max_queued
        self._max_batch_size = max_batch_size
        self._on_fatal = on_fatal
        self._engine: Engine | None = None
        self._pending: deque[_Job] = deque()
        self._control: deque[tuple[Callable[[Engine], Any], Future]] = deque()
        self._cv = threading.Condition()
        self._running: list[_Job] = []
        self._stopping = False
        self._draining = False
        self._finalizing = 0  # results being encoded on the encoder threads
        self._dead: str | None = None  # why the engine can no longer work (several ranks: one was lost)
        self._thread: threading.Thread | None = None
        self._encoders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="openai-dit-encode")
        self._recent_seconds: float | None = None  # moving average of one call, for Retry-After
        self.metrics = metrics or ServerMetrics()
        self.metrics.watch(queue_length=lambda: self.queued, running=lambda: self.running,
                           ready=lambda: float(self.ready), draining=lambda: float(self.draining),
                           memory=self._memory)

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="openai-dit-generation", daemon=True)
        self._thread.start()

    def drain(self) -> None:
        """A graceful shutdown begins: admit nothing more (503); queued and running work goes on to its end."""
        with self._cv:
            self._draining = True
        logger.info("draining: %d queued, %d running", len(self._pending), len(self._running))

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def idle(self) -> bool:
        """Nothing queued, running or being encoded."""
        with self._cv:
            return not self._pending and not self._running and not self._control and self._finalizing == 0

    def abort(self, error: ModelNotReady) -> None:
        """Answer every queued and running job with `error` now; running calls stop at their next step."""
        with self._cv:
            self._fail_waiting(error)
            for job in self._running:  # its call may not return soon: answer now
                job.cancelled.set()
                self._settle_job(job, error=error)

    def stop(self, timeout: float | None = None) -> None:
        """Answer what waits or runs with 503 (the running call stops at its next step); let started encodings
        finish."""
        with self._cv:
            self._stopping = True
        self.abort(ModelNotReady.shutting_down())
        if self._thread is not None:
            self._thread.join(0 if self._dead else timeout)  # a dead engine's call may never return
        close = getattr(self._engine, "close", None)
        if close is not None and self._dead is None:
            close()  # several ranks: the others exit cleanly
        self._encoders.shutdown(wait=True)

    def declare_dead(self, reason: str) -> None:
        """The engine can no longer work (a rank was lost): fail everything waiting or running at once (503),
        refuse new work, and tell `on_fatal` so that the process exits non-zero and gets restarted."""
        with self._cv:
            if self._dead is not None:
                return
            self._dead = reason
        self.abort(ModelNotReady.ranks_lost())
        logger.error("the engine is dead: %s", reason)
        if self._on_fatal is not None:
            self._on_fatal(RuntimeError(reason))

    def _fail_waiting(self, error: ModelNotReady) -> None:
        """With the lock held: fail every queued job and control call, and wake the generation thread."""
        for job in self._pending:
            job.cancelled.set()
            self._settle_job(job, error=error)
        self._pending.clear()
        for _, future in self._control:
            _settle(future, error=error)
        self._control.clear()
        self._cv.notify_all()

    @property
    def ready(self) -> bool:
        """Loaded, and admitting work (not draining, stopping or dead)."""
        return self._engine is not None and not self._stopping and not self._draining and self._dead is None

    @property
    def alive(self) -> bool:
        """The engine can still work (it may be loading or draining): False once a rank is lost or loading failed."""
        return self._dead is None

    @property
    def engine(self) -> Engine | None:
        return self._engine

    def capabilities(self) -> ModelCapabilities:
        """What the loaded model can do; ModelNotReady while it loads or once the server drains or stops."""
        self._check_admitting()
        return self._engine.capabilities

    def _check_admitting(self) -> None:
        """ModelNotReady (503) unless work is admitted now: the model is loaded and the server is neither
        draining, stopping nor dead. Also checked under the lock, where work is queued."""
        if self._draining or self._stopping or self._dead is not None:
            raise ModelNotReady.shutting_down()
        if self._engine is None:
            raise ModelNotReady()

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def recent_seconds(self) -> float | None:
        """A moving average of one pipeline call's duration; None before the first."""
        return self._recent_seconds

    @property
    def busy(self) -> bool:
        return bool(self._running)

    @property
    def running(self) -> int:
        """Requests in the running pipeline call."""
        return len(self._running)

    # --- the async side --------------------------------------------------------------------------------------
    async def submit(self, request: GenerationRequest, on_progress: ProgressListener | None = None,
                     finalize: Callable[[GenerationResult], Any] | None = None) -> Any:
        """Queue a request and wait for its result, or for `finalize(result)` run on an encoder thread.
        Raises QueueFull at once when the queue is full."""
        return await self.wait(self.enqueue(request, on_progress, finalize))

    def enqueue(self, request: GenerationRequest, on_progress: ProgressListener | None = None,
                finalize: Callable[[GenerationResult], Any] | None = None, *, readmit: bool = False) -> _Job:
        """Admission alone: QueueFull / ModelNotReady now (before a response has started), else the queued job
        for `wait`. A streaming handler admits first, so refusals still get their HTTP status. `readmit`: work
        admitted before (a video job resumed after a restart) is queued even beyond the bound."""
        job = _Job(request=request, future=Future(), on_progress=on_progress, finalize=finalize)
        with self._cv:
            self._check_admitting()
            if len(self._pending) >= self._max_queued and not readmit:
                self.metrics.observe_request(request.task.value, "rejected")
                wait = (self._recent_seconds or 1.0) * (len(self._pending) + 1)  # until the queue has drained
                raise QueueFull(retry_after_s=max(1, math.ceil(wait)))
            self._pending.append(job)
            self._cv.notify()
        return job

    async def wait(self, job: _Job) -> Any:
        """The job's result; cancelling this coroutine (client gone) drops or stops the job."""
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            self.cancel(job)
            raise

    async def call(self, fn: Callable[[Engine], Any]) -> Any:
        """Run `fn(engine)` on the generation thread between pipeline calls (e.g. a cache flush)."""
        future: Future = Future()
        with self._cv:
            self._check_admitting()
            self._control.append((fn, future))
            self._cv.notify()
        return await asyncio.wrap_future(future)

    def cancel(self, job: _Job) -> None:
        """Drop a queued job (its waiter gets RequestCancelled), or leave a running one: its call stops at the next
        step unless other members keep it going, and its result is discarded."""
        job.cancelled.set()
        with self._cv:
            try:
                self._pending.remove(job)
            except ValueError:
                return  # already running: the engine stops it at the next step
        logger.info("request %s dropped from the queue: cancelled", job.request.request_id)
        self._settle_job(job, error=RequestCancelled())

    # --- the generation thread -------------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._engine = self._engine_factory()
        except BaseException as exc:  # noqa: BLE001 - any load failure ends the server
            self._dead = "the model failed to load"
            logger.error("model failed to load: %s", exc)
            if self._on_fatal is not None:
                self._on_fatal(exc)
            return
        logger.info("model ready")
        used = False  # memory used by calls since it was last handed back
        while True:
            with self._cv:
                while not self._pending and not self._control and not self._stopping and not self._dead:
                    if used and not self._cv.wait(_IDLE_RELEASE_SECONDS):
                        break  # idle: hand the memory back (below, outside the lock)
                    if not used:
                        self._cv.wait()
                idle = not self._pending and not self._control
                if self._stopping or self._dead:
                    return
                if idle:
                    used = False
                    fn = future = batch = None
                elif self._control:
                    fn, future = self._control.popleft()
                    batch = None
                else:
                    batch = take_batch(self._pending, self._max_batch_size)
                    self._running = batch
            if idle:
                self._release_memory()
            elif batch is None:
                self._run_control(fn, future)
            else:
                used = True
                self._run_batch(batch)
                with self._cv:
                    self._running = []

    def _run_control(self, fn: Callable[[Engine], Any], future: Future) -> None:
        try:
            _settle(future, fn(self._engine))
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting handler
            _settle(future, error=exc)

    def _run_batch(self, batch: list[_Job]) -> None:
        for job in [job for job in batch if job.cancelled.is_set()]:
            self._settle_job(job, error=RequestCancelled())
            batch.remove(job)
        if not batch:
            return
        started = time.monotonic()
        for job in batch:
            job.started_at = started
            if job.on_progress is not None:
                job.on_progress(Progress(step=0, total_steps=job.request.num_inference_steps))  # started
        ids = ", ".join(job.request.request_id for job in batch)
        logger.debug("one call for %d request(s): %s", len(batch), ids)
        stop = CallStop(batch)
        try:
            results = self._engine.run_batch([job.request for job in batch], stop, self._listener(batch, stop))
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting handlers
            out_of_memory = type(exc).__name__ == "OutOfMemoryError"
            retry = out_of_memory and len(batch) > 1
            if not retry:
                # The client gets the error without its traceback, whose frames hold the failed call's tensors.
                self._call_failed(batch, exc.with_traceback(None) if out_of_memory else exc, stop, ids)
        else:
            self._deliver(batch, results, started)
            return
        if not out_of_memory:
            return
        # Here, outside the `except` block, the failed call's traceback (and the tensors its frames hold) is gone:
        # the engine can hand the memory back before the requests are retried one by one.
        self._release_memory()
        if retry:
            logger.warning("a batch of %d ran out of memory; running its requests one by one", len(batch))
            for job in batch:
                self._run_batch([job])

    def _memory(self) -> dict[str, float] | None:
        read = getattr(self._engine, "memory", None)
        return read() if read is not None else None

    def _release_memory(self) -> None:
        release = getattr(self._engine, "release_memory", None)
        if release is None:
            return
        try:
            release()
        except Exception:  # noqa: BLE001 - memory stays cached; a lost rank is reported by its own path
            logger.warning("handing memory back to the device failed", exc_info=True)

    def _call_failed(self, batch: list[_Job], exc: BaseException, stop: CallStop, ids: str) -> None:
        if isinstance(exc, RequestCancelled) and stop.regroup.is_set() and not stop.all_cancelled:
            self._requeue(batch)
            return
        if isinstance(exc, RequestCancelled):
            logger.info("request %s stopped: cancelled (client gone, job deleted or server stopping)", ids)
        elif self._dead is not None:
            logger.info("request %s ended with the engine (%s)", ids, type(exc).__name__)
        else:
            logger.exception("request %s failed", ids)
        for job in batch:
            self._settle_job(job, error=exc)

    def _deliver(self, batch: list[_Job], results: list[GenerationResult], started: float) -> None:
        elapsed = time.monotonic() - started
        previous = self._recent_seconds
        self._recent_seconds = elapsed if previous is None else 0.8 * previous + 0.2 * elapsed
        cache = results[0].cache if results else None
        enabled = cache is not None and cache.enabled
        self.metrics.observe_call(len(batch), cache.cached_steps if enabled else None,
                                  cache.total_steps if enabled else 0)
        for job, result in zip(batch, results, strict=True):
            job.inference_seconds = elapsed
            if job.cancelled.is_set():  # left while the others kept the call going
                self._settle_job(job, error=RequestCancelled())
            elif job.finalize is None:
                self._settle_job(job, result, produced=result)
            else:
                with self._cv:
                    self._finalizing += 1
                self._encoders.submit(self._finalize, job, result)

    def _listener(self, batch: list[_Job], stop: CallStop) -> ProgressListener | None:
        """The call's progress listener: each member's progress, and the regroup check. Under load, requests come
        back just after a call ends, so a lone request that started at once would leave the others to wait for it
        (batches alternating 1, N-1). If compatible requests for at least as many outputs arrive during its first
        step (and fit in the batch), the call stops there and restarts with them: at most one step is lost, and
        no timer is involved."""
        fan_out = fan_out_progress(batch)
        key = batch[0].request.batch_key
        images = sum(job.request.num_outputs for job in batch)
        can_regroup = key is not None and images < self._max_batch_size and \
            not any(job.regrouped or job.request.partial_images for job in batch)
        if not can_regroup:
            return fan_out

        def listener(progress: Progress) -> None:
            if fan_out is not None:
                fan_out(progress)
            if progress.step == 1 and not stop.regroup.is_set():
                with self._cv:
                    if waiting_images(self._pending, key, self._max_batch_size - images) >= images:
                        stop.regroup.set()

        return listener

    def _requeue(self, batch: list[_Job]) -> None:
        """Put a regrouped call's members back at the head of the queue, in order, for the next pick."""
        with self._cv:
            for job in reversed(batch):
                job.regrouped = True
                if job.cancelled.is_set():
                    self._settle_job(job, error=RequestCancelled())
                else:
                    self._pending.appendleft(job)
        logger.debug("a call of %d request(s) restarts to take in waiting ones", len(batch))

    def _finalize(self, job: _Job, result: GenerationResult) -> None:
        try:
            self._settle_job(job, job.finalize(result), produced=result)
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting handler
            if isinstance(exc, APIError):  # a refusal the client is told about (e.g. storage full): one line
                logger.warning("request %s: its result could not be kept: %s", job.request.request_id, exc.code)
            else:
                logger.exception("encoding the result of request %s failed", job.request.request_id)
            self._settle_job(job, error=exc)
        finally:
            with self._cv:
                self._finalizing -= 1
                self._cv.notify_all()

    def _settle_job(self, job: _Job, result: Any = None, error: BaseException | None = None,
                    produced: GenerationResult | None = None) -> None:
        """Deliver a job's outcome, and count it in the metrics (once, whichever path ends it first)."""
        _settle(job.future, result, error)
        if job.counted:
            return
        job.counted = True
        request = job.request
        if error is None:
            outcome = "success"
        elif isinstance(error, RequestCancelled):
            outcome = "cancelled"
        elif isinstance(error, ModelNotReady):
            outcome = "aborted"  # the server stopped, or lost a rank, after admitting it
        else:
            outcome = "failed"
        now = time.monotonic()
        queue_s = job.started_at - job.enqueued_at if job.started_at is not None else None
        self.metrics.observe_request(request.task.value, outcome, queue_s=queue_s, inference_s=job.inference_seconds,
                                     e2e_s=now - job.enqueued_at if error is None else None)
        if produced is not None:
            if produced.images is not None:
                self.metrics.count_outputs(images=len(produced.images))
            if produced.videos is not None:
                videos, frames = produced.videos.shape[:2]
                seconds = videos * frames / request.fps if request.fps else 0.0
                self.metrics.count_outputs(videos=videos, video_seconds=seconds)
