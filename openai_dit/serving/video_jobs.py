"""Video jobs in motion: admitted to the shared runner, driven to their end, their outcome recorded.

Progress comes from the denoising steps (0-90) and the encoding of the outputs (up to 99); it lives in memory.
Restarts: a graceful stop puts the running job back in the queue; on start, queued jobs run again and jobs that
were running when a process died are failed with `server_restarted` (they may be what killed it). A sweeper
removes expired jobs and keeps the store within its bounds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..adapters import videos as adapter
from ..config import ServerConfig
from ..errors import APIError, ModelNotReady, NotFound, RequestCancelled
from ..media import decode_image, encode_image, encode_spritesheet, encode_video
from ..runner import Runner
from ..types import GenerationResult, Progress
from .video_store import ARTIFACTS, REFERENCE_FILE, VideoRecord, VideoStore

__all__ = ["LiveJob", "VideoJobs"]

logger = logging.getLogger("openai_dit.videos")

DENOISING_SHARE = 90  # progress points of the denoising steps; encoding the outputs takes it up to 99
_SWEEP_SECONDS = 60.0


@dataclass
class LiveJob:
    """A job admitted to the runner by this process: its live status and progress."""

    job: object  # the runner's handle
    status: str = "queued"  # or "in_progress"; the store records how it ends
    progress: int = 0
    started_at: float | None = None
    deleted: bool = False


class VideoJobs:
    def __init__(self, runner: Runner, config: ServerConfig, store: VideoStore) -> None:
        self.runner = runner
        self.config = config
        self.store = store
        self._live: dict[str, LiveJob] = {}
        self._drivers: set[asyncio.Task] = set()  # one per admitted job, until its outcome is recorded
        self._background: list[asyncio.Task] = []  # the sweeper and the resumption of queued jobs
        self._stopping = False

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover the store (see the module's note) and start the sweeper."""
        queued = self.store.recover(ttl_seconds=self.config.video_ttl)
        orphans = await asyncio.to_thread(self.store.remove_orphan_folders)
        if orphans:
            logger.info("removed %d job folders without a record", orphans)
        await self.sweep()
        self._background = [asyncio.ensure_future(self._resume(queued)),
                            asyncio.ensure_future(self._sweep_forever())]

    def begin_drain(self) -> None:
        """A graceful shutdown begins: queued jobs leave the runner's queue and stay queued in the store for the next
        start; the running one may finish (if the shutdown stops it, it is queued again)."""
        self._stopping = True
        for live in list(self._live.values()):
            if live.status == "queued" and not live.deleted:
                self.runner.cancel(live.job)

    def begin_shutdown(self) -> None:
        """Before the runner stops: jobs it stops from now on go back to the queue for the next start."""
        self._stopping = True

    async def close(self) -> None:
        """After the runner stopped (every job settled): record the outcomes, close the store."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, *self._drivers, return_exceptions=True)
        self.store.close()

    async def sweep(self) -> None:
        """Remove expired jobs, and the oldest finished ones while the store is over its bounds."""
        removed = self.store.remove_expired_and_excess(max_bytes=int(self.config.video_store_mb * 1024 * 1024),
                                                       max_jobs=self.config.max_video_jobs)
        for storage in removed:
            await asyncio.to_thread(self.store.remove_folder, storage)

    async def _sweep_forever(self) -> None:
        interval = min(_SWEEP_SECONDS, max(1.0, self.config.video_ttl / 2))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - the next sweep tries again
                logger.exception("sweeping expired video jobs failed")

    async def _resume(self, records: list[VideoRecord]) -> None:
        if not records:
            return
        while not self.runner.ready:
            if self._stopping:
                return
            await asyncio.sleep(0.1)
        logger.info("resuming %d queued video job(s)", len(records))
        for record in records:
            if self._stopping:
                return  # they stay queued for the next start
            if self.store.get(record.id) is None:
                continue  # deleted meanwhile
            if record.model != self.config.model_name:
                self.store.finish(record.id, ttl_seconds=self.config.video_ttl, error_code="model_changed",
                                  error_message=f"The server now serves '{self.config.model_name}', not "
                                  f"'{record.model}'; create the video again.")
                continue
            try:
                reference = await self.reference_of(record)
            except NotFound as exc:
                self.store.finish(record.id, ttl_seconds=self.config.video_ttl, error_code=exc.code,
                                  error_message=exc.message)
                continue
            self._admit(record, reference, readmit=True)

    # --- jobs ------------------------------------------------------------------------------------------------
    def live(self, video_id: str) -> LiveJob | None:
        return self._live.get(video_id)

    async def submit(self, record: VideoRecord, reference: Image.Image | None) -> None:
        """Write the job's folder and record, and queue its work; a refusal (429, 503) leaves nothing behind."""
        record.storage = self.store.new_folder()
        try:
            if reference is not None:
                record.bytes = await asyncio.to_thread(self._write_reference, record, reference)
            live = self._admit(record, reference)
            try:
                self.store.insert(record)
            except BaseException:
                live.deleted = True
                self.runner.cancel(live.job)
                raise
        except BaseException:
            await asyncio.to_thread(self.store.remove_folder, record.storage)
            raise
        logger.info("video %s queued (%s, %s, %d frames)", record.id, record.settings.task, record.settings.size,
                    record.settings.num_frames)

    async def forget(self, record: VideoRecord) -> None:
        """After the record was deleted: stop the job (a running one at its next step) and remove its files."""
        live = self._live.get(record.id)
        if live is not None:
            live.deleted = True  # its folder goes once the runner is done with it
            self.runner.cancel(live.job)
        else:
            await asyncio.to_thread(self.store.remove_folder, record.storage)

    async def reference_of(self, record: VideoRecord) -> Image.Image | None:
        """The stored input image of a job (already fitted to its size), or None."""
        if not record.settings.has_reference:
            return None
        try:
            data = await asyncio.to_thread((self.store.folder(record) / REFERENCE_FILE).read_bytes)
        except FileNotFoundError:
            raise NotFound(f"The input image of '{record.id}' is no longer stored.",
                           code="reference_missing") from None
        return await asyncio.to_thread(decode_image, data, max_pixels=self.config.max_image_pixels,
                                       param="input_reference")

    def poll_after_ms(self, video_id: str) -> int:
        """About a quarter of the time the job still needs, between 0.1 s and 5 s."""
        live = self._live.get(video_id)
        remaining = self.runner.recent_seconds or 2.0
        if live is not None and live.started_at is not None and live.progress > 0:
            elapsed = time.monotonic() - live.started_at
            remaining = elapsed * (100 - live.progress) / live.progress
        return int(min(5000, max(100, remaining * 1000 / 4)))

    def _write_reference(self, record: VideoRecord, image: Image.Image) -> int:
        data = encode_image(np.asarray(image), "png")
        (self.store.folder(record) / REFERENCE_FILE).write_bytes(data)
        return len(data)

    def _admit(self, record: VideoRecord, reference: Image.Image | None, *, readmit: bool = False) -> LiveJob:
        """Queue the job's work in the runner (QueueFull / ModelNotReady propagate) and drive it to its end."""
        loop = asyncio.get_running_loop()
        request = adapter.to_generation_request(record.settings, reference, request_id=record.id)
        live = LiveJob(job=None)

        def on_progress(progress: Progress) -> None:  # on the generation thread
            if progress.step == 0:
                loop.call_soon_threadsafe(self._started, record.id, live)
            else:
                _advance(live, DENOISING_SHARE * progress.step // max(1, progress.total_steps))

        def finalize(result: GenerationResult) -> int:  # on an encoder thread
            return self._write_outputs(record, result, live)

        live.job = self.runner.enqueue(request, on_progress, finalize, readmit=readmit)
        self._live[record.id] = live
        driver = asyncio.ensure_future(self._drive(record, live))
        self._drivers.add(driver)
        driver.add_done_callback(self._drivers.discard)
        return live

    def _started(self, video_id: str, live: LiveJob) -> None:
        live.status = "in_progress"
        live.started_at = time.monotonic()
        if not live.deleted:
            self.store.set_status(video_id, "in_progress")

    def _write_outputs(self, record: VideoRecord, result: GenerationResult, live: LiveJob) -> int:
        """Encode the MP4, the thumbnail (the middle frame) and the spritesheet into the job's folder."""
        frames = result.videos[0]
        folder = self.store.folder(record)
        encoders = {
            "video": lambda: encode_video(frames, record.settings.fps, audio=result.audio_track(0)),
            "thumbnail": lambda: encode_image(frames[len(frames) // 2], "webp", quality=85),
            "spritesheet": lambda: encode_spritesheet(frames),
        }
        written = 0
        for index, (variant, encode) in enumerate(encoders.items()):
            data = encode()
            name = ARTIFACTS[variant][0]
            partial = folder / f".{name}.part"
            partial.write_bytes(data)
            os.replace(partial, folder / name)
            written += len(data)
            _advance(live, DENOISING_SHARE + (99 - DENOISING_SHARE) * (index + 1) // len(encoders))
        return written

    async def _drive(self, record: VideoRecord, live: LiveJob) -> None:
        """Await the job's work and record how it ended."""
        ttl = self.config.video_ttl
        try:
            written = await self.runner.wait(live.job)
        except (RequestCancelled, ModelNotReady) as exc:
            if live.deleted:
                logger.info("video %s deleted", record.id)
            elif self._stopping:
                self.store.set_status(record.id, "queued")  # the next start runs it again
                logger.info("video %s stopped by the shutdown; queued for the next start", record.id)
            elif isinstance(exc, ModelNotReady):
                # The engine died (a rank was lost) and the process exits: the record stays as it is, and the
                # next start resolves it (a queued job runs; one that was running fails as server_restarted).
                logger.warning("video %s left to the next start: %s", record.id, exc.message)
            else:
                self.store.finish(record.id, ttl_seconds=ttl, error_code="cancelled",
                                  error_message=getattr(exc, "message", "The video was cancelled."))
        except Exception as exc:  # noqa: BLE001 - recorded on the job; the runner logged the traceback
            code, message = "generation_failed", "The video could not be generated; the server log has details."
            if isinstance(exc, APIError):
                code, message = exc.code or code, exc.message
            self.store.finish(record.id, ttl_seconds=ttl, error_code=code, error_message=message)
            logger.warning("video %s failed: %s", record.id, code)
        else:
            if self.store.finish(record.id, ttl_seconds=ttl, added_bytes=written):
                logger.info("video %s completed", record.id)
                await self.sweep()  # keep the store within its bounds
        finally:
            self._live.pop(record.id, None)
            if live.deleted:
                await asyncio.to_thread(self.store.remove_folder, record.storage)


def _advance(live: LiveJob, value: int) -> None:
    """Progress only moves forward, and reaches 100 only when the job is recorded as completed."""
    live.progress = max(live.progress, min(99, value))
