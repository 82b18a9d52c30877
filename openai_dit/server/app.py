"""create_app(config, runner): the Litestar application."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..config import ServerConfig
from ..media import MediaPolicy
from ..runner import Runner
from ..serving.images import ImagesService
from ..serving.native import NativeService
from ..serving.output_store import OutputStore
from ..serving.video_store import VideoStore
from ..serving.videos import VideosService
from .docs import docs_router, openapi_config
from .exceptions import handle_exception
from .native import NativeController
from .openai import ImagesController, ModelsController
from .playground import playground_router
from .videos import VideosController

__all__ = ["create_app"]

logger = logging.getLogger("openai_dit.server")

_MAX_FORM_PARTS = 100  # multipart parts per request: a few images plus every text field, with room to spare


def _request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Give every HTTP request an id (`request.state.request_id`) and echo it in `x-request-id`."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware


def create_app(config: ServerConfig, runner: Runner) -> Litestar:
    """The app serving `runner`. Opens (and locks) the video job store in the data directory; the lifespan starts
    the runner (which loads the model) and the video jobs, and stops them."""
    policy = MediaPolicy(
        max_bytes=int(config.max_image_bytes_mb * 1024 * 1024),
        fetch_timeout=config.fetch_timeout,
        allow_private_urls=config.allow_private_urls,
        allowed_local_path=config.allowed_local_media_path,
    )

    store = OutputStore(ttl_seconds=config.image_url_ttl, max_bytes=int(config.image_url_store_mb * 1024 * 1024))

    videos = VideosService(runner, config, policy, VideoStore(config.data_path))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runner.start()
        await videos.jobs.start()
        try:
            yield
        finally:
            videos.jobs.begin_shutdown()
            await asyncio.to_thread(runner.stop, 30)
            await videos.jobs.close()

    return Litestar(
        route_handlers=[NativeController, ImagesController, VideosController, ModelsController, docs_router(),
                        playground_router()],
        exception_handlers={Exception: handle_exception},
        middleware=[_request_id_middleware],
        lifespan=[lifespan],
        state=State({
            "runner": runner,
            "config": config,
            "started_at": int(time.time()),
            "native": NativeService(runner, config, policy),
            "images": ImagesService(runner, config, policy, store),
            "videos": videos,
        }),
        request_max_body_size=int(config.max_request_body_mb * 1024 * 1024),
        multipart_form_part_limit=_MAX_FORM_PARTS,
        openapi_config=openapi_config("openai-dit", __version__),
        logging_config=None,
        debug=False,
    )
