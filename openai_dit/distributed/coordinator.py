"""Rank 0 drives every rank: each work item goes to the others over the control channel, then all ranks run the
same pipeline call in step (see `ranks.StepSync`). The other ranks run `serve_worker`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import EngineLost, RequestCancelled
from ..types import GenerationRequest, GenerationResult, Progress
from .control import ControlClient, ControlServer
from .ranks import PeerFailed, RanksLost, StepSync

__all__ = ["RankCoordinator", "Watchdog", "serve_worker"]

logger = logging.getLogger("openai_dit.ranks")


class RankCoordinator:
    """Rank 0's engine. `on_dead(reason)` is called once the ranks can no longer work together."""

    def __init__(self, executor, control: ControlServer, world_size: int, parallel: dict,
                 on_dead: Callable[[str], None]) -> None:
        self.executor = executor
        self.capabilities = executor.capabilities
        self.control = control
        self.world_size = world_size
        self.parallel = parallel
        self._on_dead = on_dead

    def run_batch(self, requests: list[GenerationRequest], cancelled,
                  on_progress: Callable[[Progress], None] | None = None) -> list[GenerationResult]:
        try:
            self.control.send(("run", requests))
            return self.executor.run_batch(requests, cancelled, on_progress)
        except (RanksLost, OSError) as exc:
            self._on_dead(f"the ranks lost contact during a call ({exc})")
            raise EngineLost() from exc

    def flush(self) -> None:
        try:
            self.control.send(("flush",))
        except OSError as exc:
            self._on_dead(f"the control channel failed ({exc})")
            raise EngineLost() from exc
        self.executor.flush()

    def release_memory(self) -> None:
        try:
            self.control.send(("release",))
        except OSError as exc:
            self._on_dead(f"the control channel failed ({exc})")
            raise EngineLost() from exc
        self.executor.release_memory()

    def memory(self) -> dict[str, float] | None:
        return self.executor.memory()

    def describe(self) -> dict[str, Any]:
        return {**self.executor.describe(), "world_size": self.world_size, "parallel": self.parallel}

    def close(self) -> None:
        """Tell the other ranks to exit (a clean stop), then close the channel."""
        try:
            self.control.send(("stop",))
        except OSError:
            pass
        self.control.close()


class _Never:
    @staticmethod
    def is_set() -> bool:
        return False


def serve_worker(executor, control: ControlClient) -> int:
    """A rank other than 0: run what rank 0 sends until it says stop (0) or is gone (1)."""
    logger.info("rank ready, waiting for work")
    while True:
        try:
            message = control.receive()
        except (ConnectionError, OSError):
            logger.error("rank 0 is gone; exiting")
            return 1
        kind = message[0]
        if kind == "run":
            try:
                executor.run_batch(message[1], _Never(), None)  # rank 0 decides cancellation, via StepSync
            except RanksLost:
                logger.exception("the ranks lost contact")
                return 1
            except (RequestCancelled, PeerFailed):
                pass
            except Exception:  # noqa: BLE001 - every rank left the call together; rank 0 answers the client
                logger.exception("a call failed on this rank")
        elif kind == "flush":
            executor.flush()
        elif kind == "release":
            executor.release_memory()
        elif kind == "stop":
            return 0


class Watchdog:
    """Declares the ranks dead when a running call makes no step for `timeout` seconds (a rank hangs)."""

    def __init__(self, sync: StepSync, timeout: float, on_dead: Callable[[str], None]) -> None:
        self._sync = sync
        self._timeout = timeout
        self._on_dead = on_dead
        threading.Thread(target=self._watch, name="openai-dit-step-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self._timeout / 4))
            if self._sync.in_call_since is not None and time.monotonic() - self._sync.last_sync > self._timeout:
                self._on_dead(f"no denoising step for {self._timeout:g} s (--step-timeout): a rank hangs")
                return
