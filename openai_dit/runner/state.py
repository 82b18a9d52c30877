"""The runner's one lifecycle state, read by every check (admission, probes, shutdown)."""

from __future__ import annotations

import enum

from ..errors import EngineLost, ModelLoading, ServerDraining, ServiceUnavailable

__all__ = ["RunnerState"]


class RunnerState(enum.Enum):
    LOADING = "loading"  # the engine is being built
    READY = "ready"  # admitting work
    DRAINING = "draining"  # a graceful shutdown: admitted work goes on, new work is refused
    STOPPED = "stopped"  # nothing runs any more
    DEAD = "dead"  # the engine can no longer work (a lost rank, a model that failed to load)

    @property
    def admits(self) -> bool:
        return self is RunnerState.READY

    @property
    def alive(self) -> bool:
        """The process can still do its work (loading and draining included)."""
        return self is not RunnerState.DEAD

    def refusal(self) -> ServiceUnavailable:
        """The 503 for work that arrives in this state."""
        if self is RunnerState.LOADING:
            return ModelLoading()
        if self is RunnerState.DEAD:
            return EngineLost()
        return ServerDraining()
