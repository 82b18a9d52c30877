"""Routes of the OpenAI Videos API: /v1/videos. Thin: parsing and response shapes only."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Stream
from litestar.types import ExceptionHandlersMap

from ..adapters.forms import decode_json
from ..protocol.videos import Video, VideoCreateRequest, VideoDeleted, VideoList, VideoRemixRequest
from ..serving.videos import FILE_FIELDS
from .docs import documented, error_responses, form_schema, json_schema
from .exceptions import handle_exception_no_retry
from .forms import FORM_CONTENT_TYPES, read_body, read_form
from .services import VideosDep

__all__ = ["VideosController"]

_CHUNK = 1024 * 1024


async def _chunks(file) -> AsyncIterator[bytes]:
    """An open file's bytes, read off the event loop; closed at the end or when the client leaves."""
    try:
        while chunk := await asyncio.to_thread(file.read, _CHUNK):
            yield chunk
    finally:
        file.close()

_NO_RETRY: ExceptionHandlersMap = {Exception: handle_exception_no_retry}
_REMIX_DOC = documented(body={"json": json_schema(VideoRemixRequest)})
_CREATE_DOC = documented(body={"multipart": form_schema(VideoCreateRequest, {"input_reference": False}),
                              "json": json_schema(VideoCreateRequest)})


class VideosController(Controller):
    path = "/v1/videos"
    tags = ["openai"]

    @post("", status_code=200, exception_handlers=_NO_RETRY, operation_class=_CREATE_DOC,
          responses=error_responses(400, 404, 413, 429, 503),
          summary="Create a video job (multipart, with an optional input_reference image file, or JSON)")
    async def create(self, request: Request, videos: VideosDep) -> Video:
        content_type, _ = request.content_type
        if content_type in FORM_CONTENT_TYPES:
            form = await read_form(request, FILE_FIELDS, object_fields=FILE_FIELDS,
                                   expected="multipart/form-data or JSON")
            return await videos.create_from_form(form)
        return await videos.create_from_json(decode_json(await read_body(request), VideoCreateRequest))

    @get("", responses=error_responses(400), summary="List video jobs, newest first (after, limit, order)")
    async def list_videos(self, videos: VideosDep, after: FromQuery[str | None] = None,
                          limit: FromQuery[str | None] = None, order: FromQuery[str | None] = None) -> VideoList:
        return await videos.list(after, limit, order)

    @get("/{video_id:str}", responses=error_responses(404),
         summary="A video job; `openai-poll-after-ms` says when to ask again")
    async def retrieve(self, video_id: FromPath[str], videos: VideosDep) -> Response[Video]:
        video, poll_after_ms = await videos.retrieve(video_id)
        headers = {} if poll_after_ms is None else {"openai-poll-after-ms": str(poll_after_ms)}
        return Response(video, headers=headers)

    @delete("/{video_id:str}", status_code=200, responses=error_responses(404),
            summary="Delete a video job; a running one stops at its next step")
    async def delete_video(self, video_id: FromPath[str], videos: VideosDep) -> VideoDeleted:
        return await videos.delete(video_id)

    @get("/{video_id:str}/content", responses=error_responses(400, 404, 409),
         summary="The MP4 (variant=video), a thumbnail (WebP) or a spritesheet (JPEG)")
    async def content(self, video_id: FromPath[str], videos: VideosDep,
                      variant: FromQuery[str | None] = None) -> Stream:
        file, size, media_type = await videos.content(video_id, variant)
        extension = mimetypes.guess_extension(media_type) or ""
        return Stream(_chunks(file), media_type=media_type, headers={
            "Content-Length": str(size), "Content-Disposition": f'inline; filename="{video_id}{extension}"'})

    @post("/{video_id:str}/remix", status_code=200, exception_handlers=_NO_RETRY, operation_class=_REMIX_DOC,
          responses=error_responses(400, 404, 409, 413, 429, 503),
          summary="A new job with a completed video's settings (seed and input image included) and a new prompt")
    async def remix(self, video_id: FromPath[str], request: Request, videos: VideosDep) -> Video:
        body = decode_json(await read_body(request), VideoRemixRequest)
        return await videos.remix(video_id, body.prompt)
