"""Which replica runs which video job: claims, leases and announcements (see jobs/store.py for the rules).

A replica holds at most one claimed job that still waits for its pipeline: it claims the next one when that job
starts, when a job ends, when another replica announces a queued one, and at every poll (which also finds jobs
whose server died). With a shared store an idle replica claims at once; a busy one (running something) only at its
poll, so that announced jobs go to the idle replicas first. It renews the leases of the jobs it holds (storing
their progress for the other replicas) and listens for deletions, which stop a running job at its next step. It
also owns the webhook sender, when --webhook-url is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING

from ..config import ServerConfig
from ..errors import ServiceUnavailable, StorageUnavailable
from ..jobs.notify import Listener
from ..jobs.store import CHANNEL, JobStore
from ..jobs.webhooks import WebhookSender

if TYPE_CHECKING:
    from .video_jobs import VideoJobs

__all__ = ["JobClaims", "replica_id"]

logger = logging.getLogger("openai_dit.videos")

_POLL_SECONDS = 2.0  # how often a shared store is asked for jobs nobody holds (announcements come sooner)
_MAX_RENEW_SECONDS = 2.0  # how often the leases (and the progress other replicas see) are renewed at most


def replica_id() -> str:
    """This process's name as a job owner: host, pid and a random part (a restarted process is a new owner)."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


class JobClaims:
    def __init__(self, jobs: VideoJobs, store: JobStore, config: ServerConfig) -> None:
        self.jobs, self.store, self.config = jobs, store, config
        self.owner = replica_id()
        self.max_attempts = config.job_attempts or (2 if store.shared else 1)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._listener: Listener | None = None
        self._failing = False
        self._closed = False
        self.sender: WebhookSender | None = None
        if config.webhook_url and config.webhook_secret:
            self.sender = WebhookSender(store, config.webhook_url, config.webhook_secret,
                                        allow_private=config.allow_private_urls)

    async def start(self) -> None:
        self._wake.set()  # jobs given back before this start (or never claimed) run now
        self._tasks.append(asyncio.ensure_future(self._claim_forever()))
        if self.store.shared:
            self._tasks.append(asyncio.ensure_future(self._renew_forever()))
            self._listener = Listener(self.store.dsn, CHANNEL, self._on_notice, asyncio.get_running_loop())
            self._listener.start()
        if self.sender is not None:
            await self.sender.start()

    async def close(self) -> None:
        # A flag, not only a cancellation: wait_for() may swallow a cancel that lands as the event is set (3.11).
        self._closed = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            await asyncio.to_thread(self._listener.stop)
        if self.sender is not None:
            await self.sender.close()

    def wake(self) -> None:
        """Something changed here (a job started or ended): maybe claim one more."""
        self._wake.set()

    def recorded(self) -> None:
        """A job's outcome was recorded (and with it, its webhook event)."""
        if self.sender is not None:
            self.sender.wake()

    def _on_notice(self, payload: str) -> None:
        kind, _, video_id = payload.partition(":")
        if kind == "deleted":
            self.jobs.stop_here(video_id, deleted=True)
        elif kind == "queued":
            self._wake.set()

    async def _claim_forever(self) -> None:
        polled_at = 0.0
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), _POLL_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            now = time.monotonic()
            if self.store.shared and not self.jobs.runner.idle and now - polled_at < _POLL_SECONDS:
                continue  # an announcement goes to the idle replicas first; a busy one takes what is left at its poll
            polled_at = now
            try:
                await self._claim_while_free()
                self._failing = False
            except StorageUnavailable as exc:
                if not self._failing:
                    logger.warning("video jobs: cannot claim from the store (%s); retrying", exc.code)
                self._failing = True
                await asyncio.sleep(_POLL_SECONDS)
            except Exception:  # noqa: BLE001 - the next round tries again
                logger.exception("claiming video jobs failed")
                await asyncio.sleep(_POLL_SECONDS)

    async def _claim_while_free(self) -> None:
        while self.jobs.runner.ready and not (self._closed or self.jobs.stopping or self.jobs.waiting_here()):
            resolved = await asyncio.to_thread(self.store.claim, self.owner, lease_seconds=self.config.job_lease,
                                               max_attempts=self.max_attempts, ttl_seconds=self.config.video_ttl)
            for video_id in resolved.failed:
                logger.warning("video %s failed as server_restarted: its server stopped while running it, %d "
                               "time(s)", video_id, self.max_attempts)
            if resolved.failed:
                self.recorded()
            if resolved.claimed is None:
                return
            try:
                await self.jobs.run_claimed(resolved.claimed)
            except ServiceUnavailable:  # draining or stopping meanwhile: give it back
                await asyncio.to_thread(self.store.release, resolved.claimed.id, self.owner)
                return

    async def _renew_forever(self) -> None:
        interval = min(_MAX_RENEW_SECONDS, self.config.job_lease / 3)
        while True:
            await asyncio.sleep(interval)
            progress = self.jobs.progress_here()
            if not progress:
                continue
            try:
                lost = await asyncio.to_thread(self.store.renew, self.owner, progress, self.config.job_lease)
            except StorageUnavailable as exc:  # the lease may run out: another replica may take the job over
                logger.warning("video jobs: cannot renew the leases (%s)", exc.code)
                continue
            for video_id in lost:
                deleted = await asyncio.to_thread(self.store.get, video_id) is None
                self.jobs.stop_here(video_id, deleted=deleted)
