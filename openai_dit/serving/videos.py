"""Handling of the OpenAI Videos API: checks, input images and the Video objects; jobs run in `video_jobs`.

A job is checked, its input image fetched and decoded, its record written and its work admitted to the runner's
queue (the same queue as image requests, first come first served) before `POST /v1/videos` answers `queued`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import msgspec

from ..adapters import videos as adapter
from ..adapters.forms import FormFields, convert_form
from ..config import ServerConfig
from ..errors import Conflict, InvalidRequest, NotFound
from ..jobs.records import ARTIFACTS, FINISHED, VideoRecord, VideoSettings, new_video_id
from ..jobs.store import JobStore
from ..media import MediaPolicy, load_image_bytes
from ..protocol.videos import InputReference, Video, VideoCreateRequest, VideoDeleted, VideoError, VideoList
from ..runner import Runner
from ..types import Task
from .inputs import checked_image, fit_image
from .job_files import JobFiles
from .video_jobs import VideoJobs

__all__ = ["FILE_FIELDS", "VideosService"]

FILE_FIELDS = frozenset({"input_reference"})
MAX_LIST_LIMIT = 100


class VideosService:
    def __init__(self, runner: Runner, config: ServerConfig, policy: MediaPolicy, store: JobStore,
                 files: JobFiles) -> None:
        self.runner = runner
        self.config = config
        self.policy = policy
        self.store = store
        self.files = files
        self.jobs = VideoJobs(runner, config, store, files)

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
        source = await self._record(video_id)
        if source.status != "completed":
            raise Conflict(f"Video '{video_id}' is {source.status}; only a completed video can be remixed.",
                           code="video_not_ready")
        if source.model != self.config.model_name:
            raise InvalidRequest(f"Video '{video_id}' was made by '{source.model}'; this server serves "
                                 f"'{self.config.model_name}'.", param="video_id", code="model_mismatch")
        self.runner.capabilities()  # 503 while the model loads
        settings = msgspec.structs.replace(source.settings, prompt=prompt)
        record = self._new_record(settings, remixed_from=source.id)
        await self.jobs.submit(record, await self.jobs.reference_of(source))
        return self._video(record)

    async def retrieve(self, video_id: str) -> tuple[Video, int | None]:
        """The Video, and how long a poller should wait before asking again (ms; None once it is finished)."""
        record = await self._record(video_id)
        finished = record.status in FINISHED
        return self._video(record), None if finished else self.jobs.poll_after_ms(record.id)

    async def list(self, after: str | None, limit: str | None, order: str | None) -> VideoList:
        count = _parse_limit(limit)
        if order not in (None, "asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'.", param="order")
        cursor = None
        if after:
            cursor = await asyncio.to_thread(self.store.get, after)
            if cursor is None:
                raise InvalidRequest(f"after: no video with id '{after[:64]}'.", param="after")
        records, has_more = await asyncio.to_thread(self.store.page, after=cursor, limit=count,
                                                    descending=order != "asc")
        data = [self._video(record) for record in records]
        return VideoList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
                         has_more=has_more)

    async def delete(self, video_id: str) -> VideoDeleted:
        """Remove the job; a running one stops at its next step, a queued one leaves the queue."""
        record = await asyncio.to_thread(self.store.delete, video_id)
        if record is None:
            raise _not_found(video_id)
        await self.jobs.forget(record)
        return VideoDeleted(id=record.id)

    async def content(self, video_id: str, variant: str | None) -> tuple[Any, int, str]:
        """A completed video's MP4, thumbnail or spritesheet: the file, opened (so a DELETE that removes it meanwhile
        cannot take it from under the download; a reader with `read(n)` and `close()`), its size and media type. The
        caller closes it."""
        if variant not in (None, *ARTIFACTS):
            raise InvalidRequest(f"variant must be one of {', '.join(ARTIFACTS)}.", param="variant")
        record = await self._record(video_id)
        if record.status != "completed":
            raise Conflict(f"Video '{video_id}' is {record.status}; its content exists once it is completed.",
                           code="video_not_ready")
        opened = await asyncio.to_thread(self.files.open_artifact, record.storage, variant or "video")
        if opened is None:  # deleted or expired meanwhile
            raise NotFound(f"The {variant or 'video'} of '{video_id}' is no longer available.", code="not_found")
        return opened.reader, opened.size, opened.media_type

    # --- creating jobs ---------------------------------------------------------------------------------------
    async def _create(self, body: VideoCreateRequest, upload: bytes | None) -> Video:
        caps = self.runner.capabilities()
        source, param = self._reference_source(body, upload)
        task = Task.IMAGE_TO_VIDEO if source is not None else Task.TEXT_TO_VIDEO
        settings, sized = adapter.plan_video(body, task, caps, self.config.model_names, param)
        reference = None
        if source is not None:
            data = source if isinstance(source, bytes) else await load_image_bytes(source, self.policy, param=param)
            image = await asyncio.to_thread(checked_image, data, policy=self.policy,
                                            max_pixels=self.config.max_image_pixels, param=param, caps=caps)
            if not sized:  # the reference's aspect ratio at the model's default pixel count
                width, height = caps.default_size(image.size)
                settings = msgspec.structs.replace(settings, width=width, height=height)
            reference = await asyncio.to_thread(fit_image, image, (settings.width, settings.height))
        record = self._new_record(settings)
        await self.jobs.submit(record, reference)
        return self._video(record)

    @staticmethod
    def _reference_source(body: VideoCreateRequest, upload: bytes | None) -> tuple[bytes | str | None, str]:
        """The input image as uploaded bytes or a URL / data URL, and the parameter that names it."""
        given = [(name, value) for name, value in (("input_reference", body.input_reference),
                                                    ("image_reference", body.image_reference),
                                                    ("reference_url", body.reference_url)) if value is not None]
        if len(given) + (upload is not None) > 1:
            raise InvalidRequest("Send one input image: an input_reference file or image_url (or vLLM-Omni's "
                                 "image_reference, or SGLang's reference_url).", param=given[-1][0])
        name, value = given[0] if given else ("input_reference", None)
        if upload is not None:
            return upload, "input_reference"
        if name == "reference_url" and isinstance(value, str):
            return value, name
        if isinstance(value, str) and name == "image_reference":  # vLLM-Omni: JSON text in a form field
            try:
                value = msgspec.json.decode(value, type=InputReference)
            except msgspec.MsgspecError:
                raise InvalidRequest("image_reference must be JSON: {\"image_url\": \"...\"}.",
                                     param="image_reference") from None
        if isinstance(value, InputReference):
            if value.file_id:
                raise InvalidRequest(f"{name}.file_id is not supported (this server has no Files API): upload the "
                                     f"image, or give {name}[image_url].", param=f"{name}[file_id]",
                                     code="unsupported_parameter")
            if not value.image_url:
                raise InvalidRequest(f"{name} needs an image file or image_url.", param=name)
            return value.image_url, f"{name}[image_url]"
        return value or None, name

    def _new_record(self, settings: VideoSettings, remixed_from: str | None = None) -> VideoRecord:
        return VideoRecord(id=new_video_id(), model=self.config.model_name, status="queued",
                           created_at=int(time.time()), settings=settings, storage="",
                           remixed_from_video_id=remixed_from)

    # --- reading jobs ----------------------------------------------------------------------------------------
    async def _record(self, video_id: str) -> VideoRecord:
        """The job's record (read off the event loop: the store may be a database across the network)."""
        record = await asyncio.to_thread(self.store.get, video_id)
        if record is None:
            raise _not_found(video_id)
        return self._with_outcome(record)

    def _with_outcome(self, record: VideoRecord) -> VideoRecord:
        """The record as it ended, where the store has not recorded that yet (full or read-only)."""
        outcome = self.jobs.unrecorded(record.id)
        if outcome is None:
            return record
        return dataclasses.replace(record, status=outcome.status, error_code=outcome.error_code,
                                   error_message=outcome.error_message)

    def _video(self, record: VideoRecord) -> Video:
        record = self._with_outcome(record)
        status, progress = record.status, 100 if record.status == "completed" else 0
        live = self.jobs.live(record.id)
        if live is not None and status not in FINISHED:
            status, progress = live.status, live.progress if live.status == "in_progress" else 0
        elif status == "in_progress":  # held by another replica: as it last stored it
            progress = record.progress
        error = VideoError(code=record.error_code, message=record.error_message or "") if record.error_code else None
        s = record.settings
        return Video(id=record.id, model=record.model, status=status, progress=progress,
                     created_at=record.created_at, completed_at=record.completed_at, expires_at=record.expires_at,
                     prompt=s.prompt, size=s.size, seconds=s.seconds,
                     remixed_from_video_id=record.remixed_from_video_id, error=error, seed=s.seed, fps=s.fps,
                     num_frames=s.num_frames)


def _parse_limit(limit: str | None) -> int:
    if limit is None:
        return 20
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= MAX_LIST_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}.", param="limit")
    return int(limit)


def _not_found(video_id: str) -> NotFound:
    return NotFound(f"No video with id '{video_id[:64]}' (it may have been deleted or have expired).",
                    param="video_id", code="video_not_found")

