"""Readiness, liveness and the graceful shutdown (drain) of a serving process.

On SIGTERM the server drains: readiness turns 503 and new work is refused with 503 (retryable), while admitted
requests run to their end, up to `--shutdown-timeout`. Queued video jobs stay queued in the store (the next start
runs them); the running one may finish, else it is queued again. Then whatever is left is answered 503 and the
process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..errors import ServerDraining
from .middleware import HttpActivity

if TYPE_CHECKING:
    from ..runner import Runner
    from ..serving.video_jobs import VideoJobs
    from ..storage.images import ObjectImageStore

__all__ = ["Lifecycle"]

logger = logging.getLogger("openai_dit.server")

_POLL_SECONDS = 0.05
_ANSWER_SECONDS = 5.0
_IMAGE_SWEEP_SECONDS = 600.0  # after the deadline: time for the 503s of aborted requests to go out


class Lifecycle:
    """Start-up, the drain and the shutdown of one app, in this order: `start()` (the lifespan's start), `drain()`
    (on SIGTERM), `shutdown()` (the lifespan's end), all bounded by --shutdown-timeout."""

    def __init__(self, runner: Runner, videos: VideoJobs, activity: HttpActivity, shutdown_timeout: float,
                 image_links: ObjectImageStore | None = None) -> None:
        self.runner = runner
        self.videos = videos
        self.activity = activity
        self.shutdown_timeout = shutdown_timeout
        self.image_links = image_links  # links in a bucket: expired ones are removed here
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        """Load the model (on the runner's thread: readiness says loading until it is done), resume video jobs."""
        self.runner.start()
        await self.videos.start()
        if self.image_links is not None:
            self._sweeper = asyncio.ensure_future(self._sweep_image_links(self.image_links))

    async def shutdown(self) -> None:
        """Stop taking video jobs, end the generation thread (what still waits or runs is answered 503) and close
        the job store."""
        self.videos.begin_shutdown()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.to_thread(self.runner.stop, self.shutdown_timeout)
        await self.videos.close()

    @staticmethod
    async def _sweep_image_links(links: ObjectImageStore) -> None:
        """Expired url images leave the bucket (each replica sweeps; removing what is gone is harmless)."""
        interval = min(_IMAGE_SWEEP_SECONDS, max(1.0, links.ttl_seconds / 2))
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await asyncio.to_thread(links.sweep)
                if removed:
                    logger.debug("removed %d expired image links", removed)
            except Exception as exc:  # noqa: BLE001 - the next sweep tries again
                logger.warning("removing expired image links failed (%s)", type(exc).__name__)

    @property
    def readiness(self) -> str:
        """ready, loading, draining, failed (a lost rank, a model that failed to load) or storage_unavailable (the
        data directory takes no writes: full or read-only)."""
        if not self.runner.alive:
            return "failed"
        if self.runner.draining:
            return "draining"
        if not self.runner.ready:
            return "loading"
        return "ready" if self.videos.store_writable() else "storage_unavailable"

    @property
    def live(self) -> bool:
        """The process can still do its work (loading and draining included)."""
        return self.runner.alive

    def _drained(self) -> bool:
        return self.runner.idle and self.activity.in_flight == 0

    async def drain(self, timeout: float | None = None) -> None:
        """Refuse new work, wait for admitted work (at most `timeout` s, default --shutdown-timeout), then answer
        what is left with 503."""
        timeout = self.shutdown_timeout if timeout is None else timeout
        started = time.monotonic()
        self.runner.drain()
        self.videos.begin_drain()
        deadline = started + timeout
        while not self._drained() and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
        if self._drained():
            logger.info("drained in %.1f s", time.monotonic() - started)
            return
        logger.warning("shutdown timeout (%g s) reached: answering the remaining requests with 503", timeout)
        self.runner.abort(ServerDraining())
        deadline = time.monotonic() + _ANSWER_SECONDS
        while self.activity.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
