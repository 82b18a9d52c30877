"""Routes of the OpenAI API: /v1/images/* and /v1/models. Thin: parsing and response shapes only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Stream

from ..adapters.forms import FormFields, decode_json
from ..config import ServerConfig
from ..errors import NotFound
from ..protocol.images import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImagesResponse,
    ImageStreamEvent,
    ImageVariationRequest,
)
from ..protocol.models import ModelCard, ModelList
from ..runner import Runner
from ..serving.images import FILE_FIELDS, TEXT_OR_FILE_FIELDS
from .disconnect import cancel_on_disconnect
from .docs import documented, error_responses, form_schema, json_schema
from .events import server_sent_events
from .forms import read_body, read_form
from .services import ConfigDep, ImagesDep, RunnerDep, StartedAt

__all__ = ["ImagesController", "ModelsController"]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_GENERATION_ERRORS = error_responses(400, 404, 413, 429, 503, 504)
_GENERATION_DOC = documented(body={"json": json_schema(ImageGenerationRequest)}, event_stream=True)
_EDIT_DOC = documented(body={"multipart": form_schema(ImageEditRequest, {"image": False, "image[]": False,
                                                                         "mask": False})}, event_stream=True)
_VARIATION_DOC = documented(body={"multipart": form_schema(ImageVariationRequest, {"image": True})})


def _base_url(request: Request, config: ServerConfig) -> str:
    return (config.public_url or str(request.base_url)).rstrip("/")


async def _read_form(request: Request) -> FormFields:
    return await read_form(request, FILE_FIELDS, object_fields=TEXT_OR_FILE_FIELDS,
                           expected="multipart/form-data (image files as 'image' or 'image[]')")


async def _answer(request: Request, config: ServerConfig,
                  work: Awaitable[ImagesResponse | AsyncIterator[ImageStreamEvent]]) -> Response | Stream:
    """The work's JSON response or SSE stream, cancelled if the client leaves or --request-timeout passes."""
    result = await cancel_on_disconnect(request, work, config.request_timeout)
    if isinstance(result, ImagesResponse):
        return Response(result, status_code=200)
    return Stream(server_sent_events(result), media_type="text/event-stream", headers=_SSE_HEADERS)


class ImagesController(Controller):
    path = "/v1/images"
    tags = ["openai"]

    @post("/generations", status_code=200, responses=_GENERATION_ERRORS, operation_class=_GENERATION_DOC,
          summary="Create images from a prompt (JSON; stream=true for SSE)")
    async def generations(self, request: Request, images: ImagesDep, config: ConfigDep) -> Response:
        body = decode_json(await read_body(request), ImageGenerationRequest)
        work = images.generate(body, request_id=request.state.request_id, base_url=_base_url(request, config))
        return await _answer(request, config, work)

    @post("/edits", status_code=200, responses=_GENERATION_ERRORS, operation_class=_EDIT_DOC,
          summary="Edit one or several images (multipart: image or image[], prompt)")
    async def edits(self, request: Request, images: ImagesDep, config: ConfigDep) -> Response:
        form = await _read_form(request)
        work = images.edit(form, request_id=request.state.request_id, base_url=_base_url(request, config))
        return await _answer(request, config, work)

    @post("/variations", status_code=200, responses=_GENERATION_ERRORS, operation_class=_VARIATION_DOC,
          summary="Variations of one image (multipart: image)")
    async def variations(self, request: Request, images: ImagesDep, config: ConfigDep) -> Response:
        form = await _read_form(request)
        work = images.variation(form, request_id=request.state.request_id,
                                      base_url=_base_url(request, config))
        return await _answer(request, config, work)

    @get("/files/{name:str}", responses=error_responses(404),
         summary="An image returned as a link (response_format=url), while it lasts")
    async def file(self, name: FromPath[str], images: ImagesDep) -> Response[bytes]:
        item = await asyncio.to_thread(images.store.get, name)  # a bucket's object, or memory
        if item is None:
            raise NotFound("This image link does not exist or has expired.", code="not_found")
        max_age = max(0, int(item.expires_at - time.monotonic()))
        return Response(item.data, media_type=item.media_type,
                        headers={"Cache-Control": f"private, max-age={max_age}"})


class ModelsController(Controller):
    path = "/v1/models"
    tags = ["openai"]

    @staticmethod
    def _cards(runner: Runner, config: ServerConfig, created: int) -> list[ModelCard]:
        """A card per name a client can send: the served names, then OpenAI's names for the routes it serves."""
        caps = runner.loaded_capabilities
        routes: tuple[str, ...] = ("images", "videos")
        if caps is not None:
            routes = tuple(route for route, video in (("images", False), ("videos", True))
                           if any(task.is_video == video for task in caps.tasks))
        described = caps.to_dict() if caps is not None else None
        return [ModelCard(id=name, created=created, capabilities=described)
                for name in config.model_names.listed(routes)]

    @get("", responses=error_responses(), summary="The served model, under each name a client can send")
    async def list_models(self, runner: RunnerDep, config: ConfigDep, started_at: StartedAt) -> ModelList:
        return ModelList(data=self._cards(runner, config, started_at))

    @get("/{model_id:path}", responses=error_responses(404), summary="The served model by one of its names")
    async def retrieve_model(self, model_id: FromPath[str], runner: RunnerDep, config: ConfigDep,
                             started_at: StartedAt) -> ModelCard:
        name = model_id.lstrip("/")  # an empty id never routes here
        card = next((card for card in self._cards(runner, config, started_at) if card.id == name), None)
        if card is None:
            raise NotFound(f"The model '{name[:200]}' does not exist; this server serves "
                           f"'{config.model_name}'.", param="model", code="model_not_found")
        return card
