"""The runner: the one place where the async HTTP side meets the synchronous torch side.

Handlers submit a request and iterate its events on the event loop: `async for event in runner.submit(request)`
(see `events`); threads, futures and the hops between them live in this package only. Inside: `admission` (the
bounded queue and the lifecycle state), `generation` (the thread that owns the engine, batching and its OOM
fallback, the encoder pool), `observer` (metrics, traces). Cancelling the iterating task (client gone) drops a
queued job, or leaves a running call at its next denoising step once no member of the call is left. `drain()` stops
admission and lets admitted work finish (a graceful shutdown); `abort()` answers everything still waiting or
running with a 503; `stop()` ends the thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..errors import EngineLost, RequestCancelled, ServerDraining, ServiceUnavailable
from ..metrics import ServerMetrics
from ..models.capabilities import ModelCapabilities
from ..types import GenerationRequest, GenerationResult
from .admission import Admission
from .events import Queued
from .generation import Engine, GenerationLoop
from .jobs import EncodeStage, Job, Submission
from .observer import MetricsObserver, TracingObserver
from .state import RunnerState

__all__ = ["Engine", "Runner", "RunnerState"]

logger = logging.getLogger("openai_dit.runner")


class Runner:
    """Admission queue + generation thread around one Engine."""

    def __init__(self, engine_factory: Callable[[], Engine], *, max_queued: int = 64, max_batch_size: int = 1,
                 on_fatal: Callable[[BaseException], None] | None = None,
                 metrics: ServerMetrics | None = None) -> None:
        self._engine_factory = engine_factory
        self._on_fatal = on_fatal
        self.metrics = metrics or ServerMetrics()
        self._observer = MetricsObserver(self.metrics)
        self._tracing: TracingObserver | None = None
        self._admission = Admission(max_queued, self._observer.rejected)
        self._loop = GenerationLoop(self._admission, self._observer, max_batch_size)
        self._thread: threading.Thread | None = None
        self.metrics.watch(queue_length=lambda: self.queued, running=lambda: self.running,
                           ready=lambda: float(self.ready), draining=lambda: float(self.draining),
                           memory=self._memory)

    # --- state -----------------------------------------------------------------------------------------------
    @property
    def state(self) -> RunnerState:
        return self._admission.state

    @property
    def ready(self) -> bool:
        """Loaded, and admitting work."""
        return self.state is RunnerState.READY

    @property
    def alive(self) -> bool:
        """The engine can still work (it may be loading or draining): False once a rank is lost or loading failed."""
        return self.state.alive

    @property
    def draining(self) -> bool:
        return self.state is RunnerState.DRAINING

    @property
    def idle(self) -> bool:
        """Nothing queued, running or being encoded."""
        a = self._admission
        with a.cv:
            return not a.pending and not a.running and not a.control and self._loop.finalizing == 0

    @property
    def queued(self) -> int:
        return self._admission.queued

    @property
    def running(self) -> int:
        """Requests in the running pipeline call."""
        return len(self._admission.running)

    @property
    def recent_seconds(self) -> float | None:
        """A moving average of one pipeline call's duration; None before the first."""
        return self._admission.recent_seconds

    def capabilities(self) -> ModelCapabilities:
        """What the loaded model can do; the state's 503 while it loads or once the server drains or stops."""
        self._admission.check()
        assert self._loop.engine is not None
        return self._loop.engine.capabilities

    @property
    def loaded_capabilities(self) -> ModelCapabilities | None:
        """What the model can do once it is loaded (whatever the state since), else None."""
        return self._loop.engine.capabilities if self._loop.engine is not None else None

    def describe(self) -> dict[str, Any] | None:
        """The engine's own description (device, dtype, cache settings, ranks), once loaded."""
        return self._loop.engine.describe() if self._loop.engine is not None else None

    def _memory(self) -> dict[str, float] | None:
        read = getattr(self._loop.engine, "memory", None)
        return read() if read is not None else None

    def trace_with(self, tracer: Any | None) -> None:
        """Emit each job admitted from now on as spans with this OpenTelemetry tracer (see `TracingObserver`);
        None: no tracing (nothing of OpenTelemetry is imported)."""
        self._tracing = TracingObserver(tracer) if tracer is not None else None

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="openai-dit-generation", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        began = time.monotonic()
        try:
            engine = self._engine_factory()
        except BaseException as exc:  # noqa: BLE001 - any load failure ends the server
            self._admission.set_state(RunnerState.DEAD)
            logger.error("model failed to load: %s", exc)
            if self._on_fatal is not None:
                self._on_fatal(exc)
            return
        self._loop.engine = engine
        with self._admission.cv:
            if self._admission.state is RunnerState.LOADING:
                self._admission.state = RunnerState.READY
        seconds = time.monotonic() - began
        self.metrics.model_load_seconds.set(seconds)
        logger.info("model ready: loaded in %.1f s", seconds)
        self._loop.run(engine)

    def drain(self) -> None:
        """A graceful shutdown begins: admit nothing more (503); queued and running work goes on to its end."""
        a = self._admission
        with a.cv:
            if a.state in (RunnerState.LOADING, RunnerState.READY):
                a.state = RunnerState.DRAINING
        logger.info("draining: %d queued, %d running", a.queued, self.running)

    def abort(self, error: ServiceUnavailable) -> None:
        """Answer every queued and running job with `error` now; running calls stop at their next step."""
        self._admission.fail_waiting(error, _settle)
        with self._admission.cv:
            running = list(self._admission.running)
        for job in running:  # its call may not return soon: answer now
            job.cancelled.set()
            job.settle(error=error)

    def stop(self, timeout: float | None = None) -> None:
        """End the generation thread: answer what waits or runs with 503 (the running call stops at its next step),
        wait up to `timeout` for the thread, and let started encodings finish."""
        dead = self.state is RunnerState.DEAD
        if not dead:
            self._admission.set_state(RunnerState.STOPPED)
        self.abort(ServerDraining())
        if self._thread is not None:
            self._thread.join(0 if dead else timeout)  # a dead engine's call may never return
        close = getattr(self._loop.engine, "close", None)
        if close is not None and not dead:
            close()  # several ranks: the others exit cleanly
        self._loop.encoders.shutdown(wait=True)

    def declare_dead(self, reason: str) -> None:
        """The engine can no longer work (a rank was lost): fail everything waiting or running at once (503),
        refuse new work, and tell `on_fatal` so that the process exits non-zero and gets restarted."""
        with self._admission.cv:
            if self._admission.state is RunnerState.DEAD:
                return
            self._admission.state = RunnerState.DEAD
            self._admission.cv.notify_all()
        self.abort(EngineLost())
        logger.error("the engine is dead: %s", reason)
        if self._on_fatal is not None:
            self._on_fatal(RuntimeError(reason))

    # --- the async side --------------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, *, encode: EncodeStage | None = None,
               readmit: bool = False, detached: bool = False) -> Submission:
        """Admit `request` now (QueueFull or the state's 503 are raised here, before any response has started) and
        return its events to iterate. `encode(result, report)` runs on an encoder thread after the call (the next
        call starts meanwhile); its output comes with Done. `readmit`: work admitted before (a video job resumed
        after a restart) is queued even beyond the bound. `detached`: the work outlives the HTTP request that
        submits it (a video job); its trace is its own, linked to the request's. Call from the event loop."""
        tracing = self._tracing
        job = Job(request=request, loop=asyncio.get_running_loop(), encode=encode, on_settled=self._settled,
                  detached=detached, trace_context=tracing.capture() if tracing is not None else None)
        ahead = self._admission.admit(job, readmit=readmit)
        job.post(Queued(ahead))
        return Submission(job, self._cancel, self._withdraw)

    def _settled(self, job: Job, error: BaseException | None, produced: GenerationResult | None) -> None:
        """A job ended (on whichever thread settled it): its metrics, and its spans while tracing is on."""
        self._observer.settled(job, error, produced)
        tracing = self._tracing
        if tracing is None or job.trace_context is None:
            return
        try:
            tracing.settled(job, error)
        except Exception:  # noqa: BLE001 - a trace is never worth a request
            logger.warning("request %s: its spans could not be made", job.request.request_id, exc_info=True)

    def _cancel(self, job: Job) -> None:
        """Drop a queued job (its iterator gets RequestCancelled), or leave a running one: its call stops at the next
        step unless other members keep it going, and its result is discarded."""
        job.cancelled.set()
        self._withdraw(job)

    def _withdraw(self, job: Job) -> bool:
        """Drop a job that is still queued (its iterator gets RequestCancelled); whether it was queued."""
        if not self._admission.withdraw(job):
            return False
        job.cancelled.set()
        logger.info("request %s dropped from the queue: cancelled", job.request.request_id)
        job.settle(error=RequestCancelled())
        return True

    async def call(self, fn: Callable[[Engine], Any]) -> Any:
        """Run `fn(engine)` on the generation thread between pipeline calls (e.g. a cache flush)."""
        future: Future = Future()
        self._admission.add_control(fn, future)
        return await asyncio.wrap_future(future)


def _settle(job: Job, error: BaseException) -> None:
    job.settle(error=error)
