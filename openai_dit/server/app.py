"""create_app(config, runner): the Litestar application."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State

# Litestar's own CORS middleware (what `cors_config=` installs), used directly to sit in front of the key check.
from litestar.middleware._internal.cors import CORSMiddleware

from .. import __version__, tracing
from ..config import ServerConfig
from ..jobs.store import JobStore, job_store_url
from ..media import MediaPolicy
from ..runner import Runner
from ..serving.images import ImagesService
from ..serving.job_files import JobFiles
from ..serving.native import NativeService
from ..serving.output_store import OutputStore
from ..serving.videos import VideosService
from ..storage import open_object_store
from ..storage.images import ObjectImageStore
from .docs import docs_router, openapi_config
from .exceptions import handle_exception
from .health import HealthController
from .lifecycle import Lifecycle
from .middleware import ApiKeys, HttpActivity, api_key_gate, request_context
from .native import NativeController
from .openai import ImagesController, ModelsController
from .playground import playground_router
from .services import Services
from .videos import VideosController

__all__ = ["cors_config", "create_app"]

logger = logging.getLogger("openai_dit.server")

_MAX_FORM_PARTS = 100  # multipart parts per request: a few images plus every text field, with room to spare


def create_app(config: ServerConfig, runner: Runner, api_keys: list[str] | None = None) -> Litestar:
    """The app serving `runner`. Opens the object store and the video job store (a SQLite one locks the data
    directory); the lifespan starts
    the runner (which loads the model) and the video jobs, and stops them. `api_keys`: default `config.api_keys()`.
    `app.state.services.lifecycle.drain()` is the graceful shutdown (the CLI runs it on SIGTERM)."""
    policy = MediaPolicy(
        max_bytes=int(config.max_image_bytes_mb * 1024 * 1024),
        fetch_timeout=config.fetch_timeout,
        allow_private_urls=config.allow_private_urls,
        allowed_local_path=config.allowed_local_media_path,
    )

    objects = open_object_store(config.object_store, data_dir=config.data_path,
                                endpoint_url=config.object_store_endpoint)
    objects.check()  # ObjectStoreUnreachable: the CLI exits 1
    image_links: OutputStore | ObjectImageStore = OutputStore(
        ttl_seconds=config.image_url_ttl, max_bytes=int(config.image_url_store_mb * 1024 * 1024))
    if objects.shared:  # links any replica answers, surviving restarts
        image_links = ObjectImageStore(objects, config.image_url_ttl, presign=config.presigned_urls)
    jobs = JobStore(job_store_url(config.job_store, config.data_path), data_dir=config.data_path,
                    webhooks=bool(config.webhook_url))  # JobStoreUnreachable, DataDirInUse
    logger.info("video jobs in %s, files in %s", jobs.describe(), objects.description)
    if jobs.shared and not objects.shared:
        logger.warning("--job-store is shared but --object-store is local: other replicas cannot read this one's "
                       "video files (use --object-store s3://bucket/prefix)")

    runner.metrics.watch_model(config.model_name, runner.describe)
    videos = VideosService(runner, config, policy, jobs, JobFiles(objects))
    activity = HttpActivity()
    lifecycle = Lifecycle(runner, videos.jobs, activity, config.shutdown_timeout,
                          image_links if isinstance(image_links, ObjectImageStore) else None)
    services = Services(config=config, runner=runner, native=NativeService(runner, config, policy),
                        images=ImagesService(runner, config, policy, image_links), videos=videos, lifecycle=lifecycle,
                        started_at=int(time.time()))

    traces = tracing.setup(config)  # None unless --otlp-traces-endpoint (or a test's provider)
    runner.trace_with(traces.tracer if traces is not None else None)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await lifecycle.start()
        try:
            yield
        finally:
            await lifecycle.shutdown()
            if traces is not None:
                await traces.close()  # after the last job's spans

    app = Litestar(
        route_handlers=[HealthController, NativeController, ImagesController, VideosController, ModelsController,
                        docs_router(), playground_router()],
        exception_handlers={Exception: handle_exception},
        lifespan=[lifespan],
        plugins=traces.plugins() if traces is not None else [],
        middleware=traces.middleware() if traces is not None else [],
        dependencies=services.dependencies(),
        state=State({"services": services}),
        request_max_body_size=int(config.max_request_body_mb * 1024 * 1024),
        multipart_form_part_limit=_MAX_FORM_PARTS,
        openapi_config=openapi_config("openai-dit", __version__),
        logging_config=None,
        debug=False,
    )
    # In front of the router, so that unknown paths get a request id, metrics and the key check too; CORS in front
    # of the key check, so that preflights (which carry no key) are answered and a 401 carries CORS headers.
    keys = ApiKeys(config.api_keys() if api_keys is None else api_keys)
    handler = api_key_gate(app.asgi_handler, keys)
    if config.cors_origins:
        handler = CORSMiddleware(app=handler, config=cors_config(config.cors_origins))
    app.asgi_handler = request_context(handler, runner.metrics, activity)
    return app


# Headers a browser page may read from the API's answers.
_EXPOSED_HEADERS = ["x-request-id", "retry-after", "openai-poll-after-ms", "x-should-retry"]


def cors_config(origins: list[str]) -> CORSConfig:
    """--allowed-origins as Litestar's CORS settings: those origins (or "*"), the API's methods, any request header
    (the SDKs send their own), no cookies (the API takes keys in headers)."""
    return CORSConfig(allow_origins=origins, allow_methods=["GET", "POST", "DELETE", "OPTIONS"], allow_headers=["*"],
                      expose_headers=_EXPOSED_HEADERS, allow_credentials=False, max_age=600)
