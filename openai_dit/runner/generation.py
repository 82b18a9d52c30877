"""The generation thread: it owns the engine (the pipeline). When the pipeline is free it takes the oldest job
and the waiting jobs that can share its call (`batching`), runs them as one call, and hands each result to the
encoder pool (the encode stage), so that the next call starts at once. Control work (cache flushes) runs between
calls. A batch that runs out of memory is retried one request at a time, once its failed call is released; the
memory of past calls goes back to the device when the thread has been idle a while."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from ..errors import APIError, RequestCancelled
from ..models.capabilities import ModelCapabilities
from ..types import GenerationRequest, GenerationResult, Progress
from .admission import Admission, settle_future
from .batching import CallStop, fan_out_progress, take_batch, waiting_images
from .events import Started
from .jobs import CallRecord, Job
from .observer import MetricsObserver
from .state import RunnerState

__all__ = ["Engine", "GenerationLoop"]

logger = logging.getLogger("openai_dit.runner")

_IDLE_RELEASE_SECONDS = 2.0  # after this long without work, the memory of past calls goes back to the device


class Engine(Protocol):
    """What the runner drives: the pipeline executor, or a fake in tests."""

    def run_batch(self, requests: list[GenerationRequest], cancelled, on_progress: Callable[[Progress], None] | None
                  = None) -> list[GenerationResult]:
        """One call for requests sharing a batch key; `cancelled.is_set()` stops it at the next step."""
        ...

    def flush(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    @property
    def capabilities(self) -> ModelCapabilities: ...


class GenerationLoop:
    def __init__(self, admission: Admission, observer: MetricsObserver, max_batch_size: int,
                 encoder_threads: int = 2) -> None:
        self.admission = admission
        self.observer = observer
        self.max_batch_size = max_batch_size
        self.engine: Engine | None = None
        self.encoders = ThreadPoolExecutor(max_workers=encoder_threads, thread_name_prefix="openai-dit-encode")
        self.finalizing = 0  # results being encoded on the encoder threads

    # --- the thread ------------------------------------------------------------------------------------------
    def run(self, engine: Engine) -> None:
        """Until the state is STOPPED or DEAD."""
        self.engine = engine
        a = self.admission
        used = False  # memory used by calls since it was last handed back
        while True:
            with a.cv:
                while not a.pending and not a.control and a.state not in (RunnerState.STOPPED, RunnerState.DEAD):
                    if used and not a.cv.wait(_IDLE_RELEASE_SECONDS):
                        break  # idle: hand the memory back (below, outside the lock)
                    if not used:
                        a.cv.wait()
                if a.state in (RunnerState.STOPPED, RunnerState.DEAD):
                    return
                control, batch = None, None
                if a.control:
                    control = a.control.popleft()
                elif a.pending:
                    batch = take_batch(a.pending, self.max_batch_size)
                    a.running = batch
            if control is not None:
                self._run_control(*control)
            elif batch is not None:
                used = True
                self.run_batch(batch)
                with a.cv:
                    a.running = []
            else:
                used = False
                self.release_memory()

    def _run_control(self, fn: Callable[[Any], Any], future: Future) -> None:
        try:
            settle_future(future, fn(self.engine))
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting handler
            settle_future(future, error=exc)

    def run_batch(self, batch: list[Job]) -> None:
        for job in [job for job in batch if job.cancelled.is_set()]:
            job.settle(error=RequestCancelled())
            batch.remove(job)
        if not batch:
            return
        started = time.monotonic()
        call = CallRecord(started, len(batch))
        for job in batch:
            job.call, job.steps_seen = call, 0
            job.post(Started(job.request.num_inference_steps))
        ids = ", ".join(job.request.request_id for job in batch)
        logger.debug("one call for %d request(s): %s", len(batch), ids)
        stop = CallStop(batch)
        try:
            results = self._call(batch, stop, call)
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
        self.release_memory()
        if retry:
            logger.warning("a batch of %d ran out of memory; running its requests one by one", len(batch))
            for job in batch:
                self.run_batch([job])

    def _call(self, batch: list[Job], stop: CallStop, call: CallRecord) -> list[GenerationResult]:
        """The engine's call, its steps' times recorded in `call` (and in the step histogram, once per call)."""
        assert self.engine is not None
        listener = self._listener(batch, stop)

        def on_progress(progress: Progress) -> None:
            call.steps.append((progress.step, progress.total_steps, time.monotonic()))
            listener(progress)

        try:
            return self.engine.run_batch([job.request for job in batch], stop, on_progress)
        finally:
            call.ended_at = time.monotonic()
            self.observer.call_steps(call)

    def release_memory(self) -> None:
        release = getattr(self.engine, "release_memory", None)
        if release is None:
            return
        try:
            release()
        except Exception:  # noqa: BLE001 - memory stays cached; a lost rank is reported by its own path
            logger.warning("handing memory back to the device failed", exc_info=True)

    def _call_failed(self, batch: list[Job], exc: BaseException, stop: CallStop, ids: str) -> None:
        if isinstance(exc, RequestCancelled) and stop.regroup.is_set() and not stop.all_cancelled:
            self._requeue(batch)
            return
        if isinstance(exc, RequestCancelled):
            logger.info("request %s stopped: cancelled (client gone, job deleted or server stopping)", ids)
        elif self.admission.state is RunnerState.DEAD:
            logger.info("request %s ended with the engine (%s)", ids, type(exc).__name__)
        else:
            logger.exception("request %s failed", ids)
        for job in batch:
            job.settle(error=exc)

    def _deliver(self, batch: list[Job], results: list[GenerationResult], started: float) -> None:
        elapsed = time.monotonic() - started
        previous = self.admission.recent_seconds
        self.admission.recent_seconds = elapsed if previous is None else 0.8 * previous + 0.2 * elapsed
        self.observer.call(len(batch), results[0].cache if results else None)
        for job, result in zip(batch, results, strict=True):
            job.inference_seconds = elapsed
            if job.cancelled.is_set():  # left while the others kept the call going
                job.settle(error=RequestCancelled())
                continue
            job.result_at = job.call.ended_at if job.call is not None else None
            if job.encode is None:
                job.settle(result)
            else:
                with self.admission.cv:
                    self.finalizing += 1
                self.encoders.submit(self._encode, job, result)

    def _encode(self, job: Job, result: GenerationResult) -> None:
        """The encode stage, on an encoder thread."""
        job.encode_started_at = time.monotonic()
        try:
            assert job.encode is not None
            job.settle(result, job.encode(result, job.report_encoding))
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting handler
            if isinstance(exc, APIError):  # a refusal the client is told about (e.g. storage full): one line
                logger.warning("request %s: its result could not be kept: %s", job.request.request_id, exc.code)
            else:
                logger.exception("encoding the result of request %s failed", job.request.request_id)
            job.settle(error=exc)
        finally:
            with self.admission.cv:
                self.finalizing -= 1
                self.admission.cv.notify_all()

    def _listener(self, batch: list[Job], stop: CallStop) -> Callable[[Progress], None]:
        """The call's progress listener: each member's progress, and the regroup check. Under load, requests come
        back just after a call ends, so a lone request that started at once would leave the others to wait for it
        (batches alternating 1, N-1). If compatible requests for at least as many outputs arrive during its first
        step (and fit in the batch), the call stops there and restarts with them: at most one step is lost, and
        no timer is involved."""
        fan_out = fan_out_progress(batch)
        key = batch[0].request.batch_key
        images = sum(job.request.num_outputs for job in batch)
        can_regroup = key is not None and images < self.max_batch_size and \
            not any(job.regrouped or job.request.partial_images for job in batch)
        if not can_regroup:
            return fan_out

        def listener(progress: Progress) -> None:
            fan_out(progress)
            if progress.step == 1 and not stop.regroup.is_set():
                with self.admission.cv:
                    if key is not None and waiting_images(self.admission.pending, key,
                                                          self.max_batch_size - images) >= images:
                        stop.regroup.set()

        return listener

    def _requeue(self, batch: list[Job]) -> None:
        """Put a regrouped call's members back at the head of the queue, in order, for the next pick."""
        with self.admission.cv:
            for job in reversed(batch):
                job.regrouped = True
                if job.cancelled.is_set():
                    job.settle(error=RequestCancelled())
                else:
                    self.admission.pending.appendleft(job)
        logger.debug("a call of %d request(s) restarts to take in waiting ones", len(batch))
