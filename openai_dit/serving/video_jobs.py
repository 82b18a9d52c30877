"""Video jobs in motion: admitted to the shared runner, driven to their end, their outcome recorded.

Progress comes from the denoising steps (0-90) and the encoding of the outputs (up to 99); it lives in memory
(and, with a shared store, in the record, for the other replicas). Restarts: a graceful stop gives the running and
queued jobs back to the store; jobs whose server died are claimed again (`job_claims`): on start with SQLite, by
another replica with PostgreSQL, or failed with `server_restarted` once they have started --job-attempts times
(they may be what killed it). A sweeper removes expired jobs and keeps the store within its bounds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import numpy as np
from PIL import Image

from ..adapters import videos as adapter
from ..config import ServerConfig
from ..errors import APIError, NotFound, QueueFull, RequestCancelled, ServiceUnavailable, StorageUnavailable
from ..jobs.records import VideoRecord
from ..jobs.store import JobStore
from ..media import decode_image, encode_image, encode_spritesheet, encode_video
from ..protocol.videos import VideoStatus
from ..runner import Done, EncodeProgress, Runner, Started, StepDone, Submission
from ..types import GenerationResult
from .job_claims import JobClaims
from .job_files import JobFiles

__all__ = ["LiveJob", "Outcome", "VideoJobs"]

logger = logging.getLogger("openai_dit.videos")

DENOISING_SHARE = 90  # progress points of the denoising steps; encoding the outputs takes it up to 99
_SWEEP_SECONDS = 60.0
_RETRY_SECONDS = 2.0  # how soon an outcome the store refused is written again
_PROBE_SECONDS = 2.0  # how often /ready writes a probe file
_EVENTS_KEPT_SECONDS = 7 * 86400  # delivered (or abandoned) webhook events kept this long


@dataclass
class LiveJob:
    """A job admitted to the runner by this process: its live status and progress, kept on the event loop."""

    submission: Submission
    status: VideoStatus = "queued"  # or "in_progress"; the store records how it ends
    progress: int = 0
    started_at: float | None = None
    deleted: bool = False
    lost: bool = False  # another replica holds it now (this one's lease ran out): nothing to record here
    timed_out: bool = False  # stopped by --video-timeout
    deadline: asyncio.TimerHandle | None = None


@dataclass(frozen=True)
class Outcome:
    """How a job ended (completed when `error_code` is None), kept in memory until the store has recorded it."""

    error_code: str | None = None
    error_message: str | None = None
    added_bytes: int = 0

    @property
    def status(self) -> VideoStatus:
        return "failed" if self.error_code else "completed"


class VideoJobs:
    def __init__(self, runner: Runner, config: ServerConfig, store: JobStore, files: JobFiles) -> None:
        self.runner = runner
        self.config = config
        self.store = store
        self.files = files
        self.claims = JobClaims(self, store, config)
        self._live: dict[str, LiveJob] = {}
        self._unrecorded: dict[str, Outcome] = {}  # outcomes the store refused to record yet (full, read-only)
        self._writable, self._probed_at = True, -_PROBE_SECONDS
        self._probe: asyncio.Future | None = None  # a probe write in flight
        self._retry = asyncio.Event()  # set when an outcome waits to be recorded
        self._drivers: set[asyncio.Task] = set()  # one per admitted job, until its outcome is recorded
        self._background: list[asyncio.Task] = []  # the sweeper
        self._stopping = False
        self._closed = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover the store (see the module's note), start claiming jobs and the sweeper."""
        if not self.store.shared:
            failed = self.store.recover(ttl_seconds=self.config.video_ttl, max_attempts=self.claims.max_attempts)
            if failed:
                logger.warning("%d video job(s) were running when the last server stopped: failed as "
                               "server_restarted", failed)
        self._writable, self._probed_at = await asyncio.to_thread(self.files.writable), time.monotonic()
        await self._remove_orphans()
        await self.sweep()
        await self.claims.start()
        self._background = [asyncio.ensure_future(self._sweep_forever())]

    def begin_drain(self) -> None:
        """A graceful shutdown begins: queued jobs leave the runner's queue and stay queued in the store for the next
        start; the running one may finish (if the shutdown stops it, it is queued again)."""
        self._stopping = True
        for live in list(self._live.values()):
            if live.status == "queued" and not live.deleted:
                live.submission.withdraw()  # a job that started meanwhile goes on
        self.claims.wake()

    def begin_shutdown(self) -> None:
        """Before the runner stops: jobs it stops from now on go back to the queue for the next start."""
        self._stopping = True

    async def close(self) -> None:
        """After the runner stopped (every job settled): record the outcomes, close the store."""
        self._closed = True  # see JobClaims.close
        self._retry.set()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, *self._drivers, return_exceptions=True)
        try:
            await self._record_unrecorded()
        except StorageUnavailable:  # the records stay as they were: the next start resolves them
            logger.warning("%d video outcome(s) could not be recorded before stopping", len(self._unrecorded))
        await self.claims.close()
        self.store.close()

    async def sweep(self) -> None:
        """Record outcomes the store refused before, remove expired jobs, and the oldest finished ones while the
        store is over its bounds."""
        await self._record_unrecorded()
        removed = await asyncio.to_thread(self._bound_store)
        await asyncio.to_thread(self.store.remove_old_events, time.time() - _EVENTS_KEPT_SECONDS)
        for storage in removed:
            await asyncio.to_thread(self.files.remove, storage)

    def _bound_store(self) -> list[str]:
        """(On a worker thread.) Expired records out, then the oldest finished while over the bounds; their folders."""
        return self.store.remove_expired_and_excess(max_bytes=int(self.config.video_store_mb * 1024 * 1024),
                                                    max_jobs=self.config.max_video_jobs)

    async def _remove_orphans(self) -> None:
        """Folders no record names (see JobFiles.remove_orphans)."""
        orphans = await asyncio.to_thread(lambda: self.files.remove_orphans(self.store.storages()))
        if orphans:
            logger.info("removed %d job folders without a record", orphans)

    async def _sweep_forever(self) -> None:
        interval = min(_SWEEP_SECONDS, max(1.0, self.config.video_ttl / 2))
        while not self._closed:
            try:  # an outcome the store refused wakes it at once, then it retries every few seconds
                await asyncio.wait_for(self._retry.wait(), _RETRY_SECONDS if self._unrecorded else interval)
                if not self._closed:
                    await asyncio.sleep(_RETRY_SECONDS)
            except asyncio.TimeoutError:
                pass
            if self._closed:
                return
            self._retry.clear()
            try:
                await self.sweep()
                if self.store.shared:  # folders a replica left when it died creating a job (a single server: at start)
                    await self._remove_orphans()
            except StorageUnavailable as exc:
                logger.warning("video store: %s (%d outcome(s) waiting to be recorded)", exc.code,
                               len(self._unrecorded))
            except Exception:  # noqa: BLE001 - the next sweep tries again
                logger.exception("sweeping expired video jobs failed")

    def store_writable(self) -> bool:
        """Whether the data directory takes writes (probed at most every few seconds)."""
        now = time.monotonic()
        if now - self._probed_at >= _PROBE_SECONDS and self._probe is None:  # probed off the event loop
            self._probed_at = now
            self._probe = asyncio.ensure_future(asyncio.to_thread(self.files.writable))
            self._probe.add_done_callback(self._probed)
        return self._writable

    def _probed(self, probe: asyncio.Future) -> None:
        self._probe = None
        if not probe.cancelled() and probe.exception() is None:
            self._writable = probe.result()

    def unrecorded(self, video_id: str) -> Outcome | None:
        """How a job ended, while the store has not recorded it yet."""
        return self._unrecorded.get(video_id)

    async def _record_outcome(self, record: VideoRecord, outcome: Outcome) -> bool:
        """Write how a job ended; where the store refuses, keep it (clients see it) and retry on every sweep.
        False when the record is gone (deleted meanwhile)."""
        try:
            recorded = await self._write_outcome(record.id, outcome)
        except StorageUnavailable as exc:
            logger.warning("video %s %s, but the store cannot record it (%s): retried until it can", record.id,
                           outcome.status, exc.code)
            self._unrecorded[record.id] = outcome
            self._retry.set()
            return True
        self._unrecorded.pop(record.id, None)
        return recorded

    async def _write_outcome(self, video_id: str, outcome: Outcome) -> bool:
        """Record the outcome (StorageUnavailable when the store refuses), announce its webhook event, remove the
        folders of the records it evicted; False when the record is gone or not this replica's."""
        recorded, removed = await asyncio.to_thread(self._finish, video_id, outcome)
        if recorded:
            self.claims.recorded()
        for storage in removed:
            await asyncio.to_thread(self.files.remove, storage)
        return recorded

    def _finish(self, video_id: str, outcome: Outcome) -> tuple[bool, list[str]]:
        """(On a worker thread.) Record the outcome and, for a completed job, keep the store within its bounds in
        the same go (the record it evicts is gone by the time a client sees the new one); the folders to remove."""
        recorded = self.store.finish(video_id, owner=self.claims.owner, ttl_seconds=self.config.video_ttl,
                                     added_bytes=outcome.added_bytes, error_code=outcome.error_code,
                                     error_message=outcome.error_message)
        return recorded, self._bound_store() if recorded and outcome.status == "completed" else []

    async def _record_unrecorded(self) -> None:
        """Outcomes the store refused before, written now (StorageUnavailable while it still refuses)."""
        for video_id, outcome in list(self._unrecorded.items()):
            await self._write_outcome(video_id, outcome)
            del self._unrecorded[video_id]
            logger.info("video %s: its outcome (%s) is recorded now", video_id, outcome.status)

    async def run_claimed(self, record: VideoRecord) -> None:
        """Run a job this replica claimed from the store (one given back, or whose server died)."""
        if record.model != self.config.model_name:
            await self._record_outcome(record, Outcome("model_changed", f"The server now serves "
                                                 f"'{self.config.model_name}', not '{record.model}'; create the "
                                                 "video again."))
            return
        try:
            reference = await self.reference_of(record)
        except StorageUnavailable:  # the bucket or disk cannot be read now: back to the queue, for a later try
            await asyncio.to_thread(self.store.release, record.id, self.claims.owner)
            raise
        except APIError as exc:  # gone, or no longer decodable: the job cannot run anywhere
            await self._record_outcome(record, Outcome(exc.code or "reference_missing", exc.message))
            return
        self._admit(record, reference, readmit=True)
        logger.info("video %s claimed%s", record.id, f" (attempt {record.attempts + 1})" if record.attempts else "")

    def waiting_here(self) -> bool:
        """Whether a job this replica holds still waits for the pipeline."""
        return any(live.status == "queued" and not live.deleted for live in self._live.values())

    def stop_here(self, video_id: str, *, deleted: bool) -> None:
        """Another replica deleted the job (`deleted`), or holds it now: stop it at its next step."""
        live = self._live.get(video_id)
        if live is not None:
            live.deleted, live.lost = live.deleted or deleted, live.lost or not deleted
            live.submission.cancel()

    def progress_here(self) -> dict[str, int]:
        """The progress of every job this replica holds (for the leases' renewal)."""
        return {video_id: live.progress for video_id, live in self._live.items() if not live.deleted}

    # --- jobs ------------------------------------------------------------------------------------------------
    def live(self, video_id: str) -> LiveJob | None:
        return self._live.get(video_id)

    async def submit(self, record: VideoRecord, reference: Image.Image | None) -> None:
        """Write the job's reference image and record, and queue its work (here, or in a shared store for the first
        free replica); a refusal (429, 503) leaves nothing behind."""
        record.storage = self.files.new_storage()
        try:
            await asyncio.to_thread(self.files.write_settings, record.storage, msgspec.json.encode(
                {"id": record.id, "model": record.model, "settings": record.settings}))
            if reference is not None:
                record.bytes = await asyncio.to_thread(self._write_reference, record, reference)
            if self.store.shared and not self.runner.idle:  # busy here: the first free replica takes it
                if await asyncio.to_thread(self.store.waiting) >= self.config.max_queued_requests:
                    raise QueueFull(retry_after_s=max(1, round(self.runner.recent_seconds or 5)))
                await asyncio.to_thread(self.store.insert, record, owner=None, lease_seconds=0)
                self.claims.wake()
            else:  # recorded as this replica's first (nobody else takes it), then queued here
                await asyncio.to_thread(self.store.insert, record, owner=self.claims.owner,
                                        lease_seconds=self.config.job_lease)
                try:
                    self._admit(record, reference)
                except BaseException:
                    await asyncio.to_thread(self.store.delete, record.id)
                    raise
        except BaseException:
            await asyncio.to_thread(self.files.remove, record.storage)
            raise
        logger.info("video %s queued (%s, %s, %d frames)", record.id, record.settings.task, record.settings.size,
                    record.settings.num_frames)

    async def forget(self, record: VideoRecord) -> None:
        """After the record was deleted: stop the job (a running one at its next step) and remove its files."""
        live = self._live.get(record.id)
        if live is not None:
            live.deleted = True  # its folder goes once the runner is done with it
            live.submission.cancel()
        else:
            await asyncio.to_thread(self.files.remove, record.storage)

    async def reference_of(self, record: VideoRecord) -> Image.Image | None:
        """The stored input image of a job (already fitted to its size), or None."""
        if not record.settings.has_reference:
            return None
        data = await asyncio.to_thread(self.files.read_reference, record.storage)
        if data is None:
            raise NotFound(f"The input image of '{record.id}' is no longer stored.", code="reference_missing")
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
        self.files.write_reference(record.storage, data)
        return len(data)

    def _admit(self, record: VideoRecord, reference: Image.Image | None, *, readmit: bool = False) -> LiveJob:
        """Queue the job's work in the runner (QueueFull and the runner's 503s propagate) and drive it to its end.
        Its encode stage writes the MP4, thumbnail and spritesheet (on an encoder thread)."""
        request = adapter.to_generation_request(record.settings, reference, request_id=record.id)
        submission = self.runner.submit(request, encode=lambda result, report: self._write_outputs(
            record, result, report), readmit=readmit, detached=True)
        live = LiveJob(submission)
        self._live[record.id] = live
        driver = asyncio.ensure_future(self._drive(record, live))
        self._drivers.add(driver)
        driver.add_done_callback(self._drivers.discard)
        return live

    async def _started(self, video_id: str, live: LiveJob) -> None:
        """When the runner starts the job: in progress, under --video-timeout from now."""
        live.status = "in_progress"
        live.started_at = time.monotonic()
        if self.config.video_timeout > 0:
            live.deadline = asyncio.get_running_loop().call_later(self.config.video_timeout, self._time_out, live)
        self.claims.wake()  # nothing of this replica's waits now: it may take one more
        if live.deleted:
            return
        try:
            await asyncio.to_thread(self.store.started, video_id, self.claims.owner, self.config.job_lease)
        except StorageUnavailable as exc:  # the status lives on in memory; the outcome is recorded (or retried)
            logger.warning("video %s: the store cannot record that it started (%s)", video_id, exc.code)

    def _time_out(self, live: LiveJob) -> None:
        live.timed_out = True
        live.submission.cancel()  # stops at its next denoising step

    def _write_outputs(self, record: VideoRecord, result: GenerationResult, report: Callable[[float], None]) -> int:
        """The encode stage: the MP4, the thumbnail (the middle frame) and the spritesheet, into the job's folder;
        the bytes written."""
        assert result.videos is not None
        frames = result.videos[0]
        encoders = {
            "video": lambda: encode_video(frames, record.settings.fps, audio=result.audio_track(0)),
            "thumbnail": lambda: encode_image(frames[len(frames) // 2], "webp", quality=85),
            "spritesheet": lambda: encode_spritesheet(frames),
        }
        written = 0
        try:
            for index, (variant, encode) in enumerate(encoders.items()):
                data = encode()
                self.files.write_artifact(record.storage, variant, data)
                written += len(data)
                report((index + 1) / len(encoders))
        except StorageUnavailable:  # nothing half-written stays: the job fails as a whole
            self.files.remove_artifacts(record.storage)
            raise
        return written

    async def _drive(self, record: VideoRecord, live: LiveJob) -> None:
        """Await the job's work and record how it ended. Never raises: a store that refuses a write keeps the
        outcome in memory (and retries), so no job is left queued or in progress by a failed write."""
        try:
            outcome = await self._run(record, live)
            if outcome is not None:
                if await self._record_outcome(record, outcome):
                    if outcome.status == "completed":
                        logger.info("video %s completed", record.id)
                elif await asyncio.to_thread(self.store.get, record.id) is None:
                    live.deleted = True  # deleted on another replica meanwhile: its files go too (written since)
        except Exception:  # noqa: BLE001 - a driver never dies silently
            logger.exception("video %s: recording its outcome failed", record.id)
        finally:
            if live.deadline is not None:
                live.deadline.cancel()
            self._live.pop(record.id, None)
            self.claims.wake()
            if live.deleted:
                await asyncio.to_thread(self.files.remove, record.storage)

    async def _run(self, record: VideoRecord, live: LiveJob) -> Outcome | None:
        """The job's outcome; None when there is nothing to record (deleted, or left to the next start)."""
        try:
            written = await self._follow(record, live)
        except (RequestCancelled, ServiceUnavailable) as exc:
            if live.deleted:
                logger.info("video %s deleted", record.id)
            elif live.lost:
                logger.warning("video %s stopped: another replica holds it now (this one's lease ran out)", record.id)
            elif live.timed_out:
                logger.warning("video %s: stopped after --video-timeout", record.id)
                return Outcome("video_timeout", f"The video did not finish within the server's time limit of "
                                                f"{self.config.video_timeout:g} seconds.")
            elif self._stopping:
                await self._requeue(record)
            elif isinstance(exc, ServiceUnavailable):
                # The engine died (a rank was lost) and the process exits: the record stays as it is, and the
                # next start resolves it (a queued job runs; one that was running fails as server_restarted).
                logger.warning("video %s left to the next start: %s", record.id, exc.message)
            else:
                return Outcome("cancelled", getattr(exc, "message", "The video was cancelled."))
            return None
        except Exception as exc:  # noqa: BLE001 - recorded on the job; the runner logged the traceback
            code, message = "generation_failed", "The video could not be generated; the server log has details."
            if isinstance(exc, APIError):
                code, message = exc.code or code, exc.message
            logger.warning("video %s failed: %s", record.id, code)
            return Outcome(code, message)
        return Outcome(added_bytes=written)

    async def _follow(self, record: VideoRecord, live: LiveJob) -> int:
        """The job's events: started, progress over the steps (0-90) and the encoding (to 99); the bytes written."""
        async for event in live.submission:
            if isinstance(event, Started):
                await self._started(record.id, live)
            elif isinstance(event, StepDone):
                _advance(live, DENOISING_SHARE * event.step // max(1, event.total_steps))
            elif isinstance(event, EncodeProgress):
                _advance(live, DENOISING_SHARE + round((99 - DENOISING_SHARE) * event.fraction))
            elif isinstance(event, Done):
                return event.output
        raise RequestCancelled()

    async def _requeue(self, record: VideoRecord) -> None:
        try:
            await asyncio.to_thread(self.store.release, record.id, self.claims.owner)  # elsewhere, or next start
            logger.info("video %s stopped by the shutdown; queued again", record.id)
        except StorageUnavailable as exc:  # recorded as running: the next start fails it as server_restarted
            logger.warning("video %s stopped by the shutdown; the store cannot requeue it (%s)", record.id, exc.code)


def _advance(live: LiveJob, value: int) -> None:
    """Progress only moves forward, and reaches 100 only when the job is recorded as completed."""
    live.progress = max(live.progress, min(99, value))
