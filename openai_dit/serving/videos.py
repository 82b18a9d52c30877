"""Handling of the OpenAI Videos API: durable asynchronous jobs driven through the shared runner.

A job is checked, its input image fetched and decoded, its record written and its work admitted to the runner's
queue (the same queue as image requests, first come first served) before `POST /v1/videos` answers `queued`.
Progress comes from the denoising steps (0-90) and the encoding of the outputs (90-99). Restarts: a graceful stop
puts the running job back in the queue; on start, queued jobs run again and jobs that were running when a process
died are failed with `server_restarted` (they may be what killed it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
from PIL import Image, ImageOps

from ..adapters import videos as adapter
from ..adapters.forms import FormFields, convert_form
from ..config import ServerConfig
from ..errors import APIError, Conflict, InvalidRequest, ModelNotReady, NotFound, RequestCancelled
from ..media import (
    MediaPolicy,
    check_byte_limit,
    decode_image,
    encode_image,
    encode_spritesheet,
    encode_video,
    load_image_bytes,
)
from ..protocol.videos import InputReference, Video, VideoCreateRequest, VideoDeleted, VideoError, VideoList
from ..runner import Runner
from ..types import GenerationResult, Progress, Task
from .video_store import ARTIFACTS, REFERENCE_FILE, VideoRecord, VideoStore, new_video_id

__all__ = ["FILE_FIELDS", "VideosService"]

logger = logging.getLogger("openai_dit.videos")

FILE_FIELDS = frozenset({"input_reference"})
DENOISING_SHARE = 90  # progress points given to the denoising steps; encoding takes the rest up to 99
MAX_LIST_LIMIT = 100
_SWEEP_SECONDS = 60.0


@dataclass
class _ActiveJob:
    """A job admitted to the runner in this process: live status and progress, kept in memory only."""

    job: object
    status: str = "queued"
    progress: int = 0
    started_at: float | None = None
    deleted: bool = False
    updated_at: float = field(default_factory=time.monotonic)


class VideosService:
    def __init__(self, runner: Runner, config: ServerConfig, policy: MediaPolicy, store: VideoStore) -> None:
        self.runner = runner
        self.config = config
        self.policy = policy
        self.store = store
        self._active: dict[str, _ActiveJob] = {}
        self._tasks: set[asyncio.Task] = set()  # one per admitted job, until its outcome is recorded
        self._background: list[asyncio.Task] = []  # the sweeper and the resumption of queued jobs
        self._stopping = False

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover the store (see the module's note) and start the expiry sweeper."""
        queued = self.store.recover(ttl_seconds=self.config.video_ttl)
        orphans = await asyncio.to_thread(self.store.remove_orphan_folders)
        if orphans:
            logger.info("removed %d job folders without a record", orphans)
        await self.sweep()
        self._background = [asyncio.ensure_future(self._resume(queued)),
                            asyncio.ensure_future(self._sweep_forever())]

    def begin_shutdown(self) -> None:
        """Before the runner stops: jobs it stops from now on go back to the queue for the next start."""
        self._stopping = True

    async def close(self) -> None:
        """After the runner stopped (every job settled): record the outcomes, close the store."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, *self._tasks, return_exceptions=True)
        self.store.close()

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            await asyncio.sleep(0.1)
        logger.info("resuming %d queued video job(s)", len(records))
        for record in records:
            if self.store.get(record.id) is None:
                continue  # deleted meanwhile
            if record.model != self.config.model_name:
                self.store.finish(record.id, ttl_seconds=self.config.video_ttl, error_code="model_changed",
                                  error_message=f"The server now serves '{self.config.model_name}', not "
                                  f"'{record.model}'; create the video again.")
                continue
            reference = await self._stored_reference(record)
            self._admit(record, reference, readmit=True)

    # --- the API ---------------------------------------------------------------------------------------------
    async def create_from_json(self, body: VideoCreateRequest) -> Video:
        return await self._create(body, None)

    async def create_from_form(self, form: FormFields) -> Video:
        body = convert_form(form.fields, VideoCreateRequest)
        uploads = form.files.get("input_reference", [])
        if len(uploads) > 1:
            raise InvalidRequest("Send one input_reference image.", param="input_reference")
        return await self._create(body, uploads[0] if uploads else None)

    async def remix(self, video_id: str, prompt: str) -> Video:
        source = self._record(video_id)
        if source.status != "completed":
            raise Conflict(f"Video '{video_id}' is {source.status}; only a completed video can be remixed.",
                           code="video_not_ready")
        if source.model != self.config.model_name:
            raise InvalidRequest(f"Video '{video_id}' was made by '{source.model}'; this server serves "
                                 f"'{self.config.model_name}'.", param="video_id", code="model_mismatch")
        self.runner.capabilities()  # 503 while the model loads
        settings = msgspec.structs.replace(source.settings, prompt=prompt)
        reference = await self._stored_reference(source)
        record = self._new_record(settings, remixed_from=source.id)
        return await self._store_and_admit(record, reference)

    def retrieve(self, video_id: str) -> tuple[Video, int | None]:
        """The Video, and how long a poller should wait before asking again (ms; None once it is finished)."""
        record = self._record(video_id)
        active = self._active.get(record.id)
        return self._video(record), (self._poll_after_ms(active) if record.status not in ("completed", "failed")
                                     else None)

    def list(self, after: str | None, limit: str | None, order: str | None) -> VideoList:
        count = _parse_limit(limit)
        if order not in (None, "asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'.", param="order")
        cursor = None
        if after:
            cursor = self.store.get(after)
            if cursor is None:
                raise InvalidRequest(f"after: no video with id '{after[:64]}'.", param="after")
        records, has_more = self.store.page(after=cursor, limit=count, descending=order != "asc")
        data = [self._video(record) for record in records]
        return VideoList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
                         has_more=has_more)

    async def delete(self, video_id: str) -> VideoDeleted:
        """Remove the job; a running one stops at its next step, a queued one leaves the queue."""
        record = self.store.delete(video_id)
        if record is None:
            raise _not_found(video_id)
        active = self._active.get(record.id)
        if active is not None:
            active.deleted = True  # its folder goes once the runner is done with it
            self.runner.cancel(active.job)
        else:
            await asyncio.to_thread(self.store.remove_folder, record.storage)
        return VideoDeleted(id=record.id)

    def content(self, video_id: str, variant: str | None) -> tuple[Path, str]:
        """(file, media type) of a completed video's MP4, thumbnail or spritesheet."""
        if variant not in (None, *ARTIFACTS):
            raise InvalidRequest(f"variant must be one of {', '.join(ARTIFACTS)}.", param="variant")
        record = self._record(video_id)
        if record.status != "completed":
            raise Conflict(f"Video '{video_id}' is {record.status}; its content exists once it is completed.",
                           code="video_not_ready")
        name, media_type = ARTIFACTS[variant or "video"]
        path = self.store.folder(record) / name
        if not path.is_file():
            raise NotFound(f"The {variant or 'video'} of '{video_id}' is no longer available.", code="not_found")
        return path, media_type

    # --- creating jobs ---------------------------------------------------------------------------------------
    async def _create(self, body: VideoCreateRequest, upload: bytes | None) -> Video:
        caps = self.runner.capabilities()
        source, param = self._reference_source(body, upload)
        task = Task.IMAGE_TO_VIDEO if source is not None else Task.TEXT_TO_VIDEO
        settings, sized = adapter.plan_video(body, task, caps, self.config.model_name, param)
        reference = None
        if source is not None:
            data = source if isinstance(source, bytes) else await load_image_bytes(source, self.policy, param=param)
            check_byte_limit(len(data), self.policy.max_bytes, param)
            image = await asyncio.to_thread(decode_image, data, max_pixels=self.config.max_image_pixels, param=param)
            caps.check_input_image(*image.size, param=param)
            if not sized:  # the reference's aspect ratio at the model's default pixel count
                width, height = caps.default_size(image.size)
                settings = msgspec.structs.replace(settings, width=width, height=height)
            reference = await asyncio.to_thread(ImageOps.fit, image, (settings.width, settings.height),
                                                Image.Resampling.LANCZOS)
        return await self._store_and_admit(self._new_record(settings), reference)

    @staticmethod
    def _reference_source(body: VideoCreateRequest, upload: bytes | None) -> tuple[bytes | str | None, str]:
        """The input image as uploaded bytes or a URL / data URL, and the parameter that names it."""
        value = body.input_reference
        if upload is not None:
            if value is not None:
                raise InvalidRequest("Send input_reference as a file or as an image_url, not both.",
                                     param="input_reference")
            return upload, "input_reference"
        if isinstance(value, InputReference):
            if value.file_id:
                raise InvalidRequest("input_reference.file_id is not supported (this server has no Files API): "
                                     "upload the image, or give input_reference[image_url].",
                                     param="input_reference[file_id]", code="unsupported_parameter")
            if not value.image_url:
                raise InvalidRequest("input_reference needs an image file or image_url.", param="input_reference")
            return value.image_url, "input_reference[image_url]"
        return value or None, "input_reference"

    def _new_record(self, settings: adapter.VideoSettings, remixed_from: str | None = None) -> VideoRecord:
        return VideoRecord(id=new_video_id(), model=self.config.model_name, status="queued",
                           created_at=int(time.time()), settings=settings, storage="",
                           remixed_from_video_id=remixed_from)

    async def _store_and_admit(self, record: VideoRecord, reference: Image.Image | None) -> Video:
        """Write the job's folder and record, and queue its work; a refusal (429, 503) leaves nothing behind."""
        record.storage = self.store.new_folder()
        try:
            if reference is not None:
                record.bytes = await asyncio.to_thread(self._write_reference, record, reference)
            active = self._admit(record, reference)
            try:
                self.store.insert(record)
            except BaseException:
                active.deleted = True
                self.runner.cancel(active.job)
                raise
        except BaseException:
            await asyncio.to_thread(self.store.remove_folder, record.storage)
            raise
        logger.info("video %s queued (%s, %sx%s, %d frames)", record.id, record.settings.task, record.settings.width,
                    record.settings.height, record.settings.num_frames)
        return self._video(record)

    def _write_reference(self, record: VideoRecord, image: Image.Image) -> int:
        data = encode_image(np.asarray(image), "png")
        (self.store.folder(record) / REFERENCE_FILE).write_bytes(data)
        return len(data)

    async def _stored_reference(self, record: VideoRecord) -> Image.Image | None:
        if not record.settings.has_reference:
            return None
        path = self.store.folder(record) / REFERENCE_FILE
        data = await asyncio.to_thread(path.read_bytes)
        return await asyncio.to_thread(decode_image, data, max_pixels=self.config.max_image_pixels,
                                       param="input_reference")

    def _admit(self, record: VideoRecord, reference: Image.Image | None, *, readmit: bool = False) -> _ActiveJob:
        """Queue the job's work in the runner (QueueFull / ModelNotReady propagate) and drive it to its end."""
        loop = asyncio.get_running_loop()
        request = adapter.to_generation_request(record.settings, reference, request_id=record.id)
        active = _ActiveJob(job=None)

        def on_progress(progress: Progress) -> None:  # on the generation thread
            if progress.step == 0:
                loop.call_soon_threadsafe(self._started, record.id, active)
            else:
                self._set_progress(active, DENOISING_SHARE * progress.step // max(1, progress.total_steps))

        def finalize(result: GenerationResult) -> int:  # on an encoder thread
            return self._write_outputs(record, result, active)

        active.job = self.runner.enqueue(request, on_progress, finalize, readmit=readmit)
        self._active[record.id] = active
        self._spawn(self._drive(record, active))
        return active

    def _started(self, video_id: str, active: _ActiveJob) -> None:
        active.status = "in_progress"
        active.started_at = time.monotonic()
        if not active.deleted:
            self.store.set_status(video_id, "in_progress")

    @staticmethod
    def _set_progress(active: _ActiveJob, value: int) -> None:
        active.progress = max(active.progress, min(99, value))
        active.updated_at = time.monotonic()

    def _write_outputs(self, record: VideoRecord, result: GenerationResult, active: _ActiveJob) -> int:
        """Encode the MP4, the thumbnail (the middle frame) and the spritesheet into the job's folder."""
        frames = result.videos[0]
        folder = self.store.folder(record)
        encoders = {
            "video": lambda: encode_video(frames, record.settings.fps),
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
            self._set_progress(active, DENOISING_SHARE + (100 - DENOISING_SHARE - 1) * (index + 1) // len(encoders))
        return written

    async def _drive(self, record: VideoRecord, active: _ActiveJob) -> None:
        """Await the job's work and record how it ended."""
        ttl = self.config.video_ttl
        try:
            written = await self.runner.wait(active.job)
        except (RequestCancelled, ModelNotReady) as exc:
            if active.deleted:
                logger.info("video %s deleted", record.id)
            elif self._stopping:
                self.store.set_status(record.id, "queued")  # the next start runs it again
                logger.info("video %s stopped by the shutdown; queued for the next start", record.id)
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
                active.status, active.progress = "completed", 100
                logger.info("video %s completed", record.id)
                await self.sweep()  # keep the store within its bounds
        finally:
            self._active.pop(record.id, None)
            if active.deleted:
                await asyncio.to_thread(self.store.remove_folder, record.storage)

    # --- reading jobs ----------------------------------------------------------------------------------------
    def _record(self, video_id: str) -> VideoRecord:
        record = self.store.get(video_id)
        if record is None:
            raise _not_found(video_id)
        return record

    def _video(self, record: VideoRecord) -> Video:
        active = self._active.get(record.id)
        status = record.status
        if active is not None and status not in ("completed", "failed"):
            status = active.status if active.status != "completed" else status
        progress = 100 if status == "completed" else (active.progress if active and status == "in_progress" else 0)
        error = VideoError(code=record.error_code, message=record.error_message or "") if record.error_code else None
        s = record.settings
        return Video(id=record.id, model=record.model, status=status, progress=progress,
                     created_at=record.created_at, completed_at=record.completed_at, expires_at=record.expires_at,
                     prompt=s.prompt, size=s.size, seconds=s.seconds,
                     remixed_from_video_id=record.remixed_from_video_id, error=error, seed=s.seed, fps=s.fps,
                     num_frames=s.num_frames)

    def _poll_after_ms(self, active: _ActiveJob | None) -> int:
        """About a quarter of the time the job still needs, between 0.1 s and 5 s."""
        remaining = self.runner.recent_seconds or 2.0
        if active is not None and active.started_at is not None and active.progress > 0:
            elapsed = time.monotonic() - active.started_at
            remaining = elapsed * (100 - active.progress) / active.progress
        return int(min(5000, max(100, remaining * 1000 / 4)))


def _parse_limit(limit: str | None) -> int:
    if limit is None:
        return 20
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}.", param="limit")
    return int(limit)


def _not_found(video_id: str) -> NotFound:
    return NotFound(f"No video with id '{video_id[:64]}' (it may have been deleted or have expired).",
                    param="video_id", code="video_not_found")

