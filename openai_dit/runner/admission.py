"""Admission: the bounded queue of jobs waiting for the pipeline, the control calls waiting between pipeline calls,
and the lifecycle state that decides what gets in. One lock (`cv`) guards all of it; the generation thread waits
on it for work."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from ..errors import QueueFull, ServiceUnavailable
from .jobs import Job
from .state import RunnerState

__all__ = ["Admission", "settle_future"]


def settle_future(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Deliver to a future whose waiter may have given up meanwhile (then nobody is listening)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


class Admission:
    def __init__(self, max_queued: int, on_rejected: Callable[[Job], None]) -> None:
        self.max_queued = max_queued
        self._on_rejected = on_rejected
        self.cv = threading.Condition()
        self.pending: deque[Job] = deque()
        self.control: deque[tuple[Callable[[Any], Any], Future]] = deque()
        self.running: list[Job] = []
        self.state = RunnerState.LOADING
        self.recent_seconds: float | None = None  # moving average of one pipeline call, for Retry-After

    def check(self) -> None:
        """The state's 503 unless work is admitted now (loaded, not draining, stopped or dead)."""
        if not self.state.admits:
            raise self.state.refusal()

    def admit(self, job: Job, *, readmit: bool = False) -> int:
        """Queue `job` (QueueFull beyond the bound, unless `readmit`: work admitted before, e.g. a video job resumed
        after a restart). Returns how many jobs wait ahead of it."""
        with self.cv:
            self.check()
            if len(self.pending) >= self.max_queued and not readmit:
                self._on_rejected(job)
                wait = (self.recent_seconds or 1.0) * (len(self.pending) + 1)  # until the queue has drained
                raise QueueFull(retry_after_s=max(1, math.ceil(wait)))
            self.pending.append(job)
            self.cv.notify()
            return len(self.pending) - 1

    def add_control(self, fn: Callable[[Any], Any], future: Future) -> None:
        with self.cv:
            self.check()
            self.control.append((fn, future))
            self.cv.notify()

    def withdraw(self, job: Job) -> bool:
        """Take a job out of the queue; False when it is not queued (running, or ended)."""
        with self.cv:
            try:
                self.pending.remove(job)
            except ValueError:
                return False
            return True

    def set_state(self, state: RunnerState) -> None:
        with self.cv:
            self.state = state
            self.cv.notify_all()

    def take_waiting(self) -> tuple[list[Job], list[Future]]:
        """Empty the queue and the control calls (to fail them), waking the generation thread."""
        with self.cv:
            jobs, futures = list(self.pending), [future for _, future in self.control]
            self.pending.clear()
            self.control.clear()
            self.cv.notify_all()
            return jobs, futures

    def fail_waiting(self, error: ServiceUnavailable, settle: Callable[[Job, BaseException], None]) -> None:
        jobs, futures = self.take_waiting()
        for job in jobs:
            job.cancelled.set()
            settle(job, error)
        for future in futures:
            settle_future(future, error=error)

    @property
    def queued(self) -> int:
        return len(self.pending)
