"""Routes of the old cache-dit server: /get_model_info, /generate, /flush_cache (/health: see `health`)."""

from __future__ import annotations

from litestar import Controller, Request, get, post

from ..adapters.forms import decode_json
from ..protocol.native import FlushCacheResponse, GenerateRequest, GenerateResponse, ModelInfoResponse
from .disconnect import cancel_on_disconnect
from .docs import documented, error_responses, json_schema
from .forms import read_body
from .services import ConfigDep, NativeDep

__all__ = ["NativeController"]


class NativeController(Controller):
    tags = ["native"]

    @get("/get_model_info", responses=error_responses(), summary="The served model, its tasks and settings")
    async def get_model_info(self, native: NativeDep) -> ModelInfoResponse:
        return native.model_info()

    @post("/generate", status_code=200, responses=error_responses(400, 404, 413, 429, 503, 504),
          operation_class=documented(body={"json": json_schema(GenerateRequest)}),
          summary="Generate images or a video (the old cache-dit contract)")
    async def generate(self, request: Request, native: NativeDep, config: ConfigDep) -> GenerateResponse:
        body = decode_json(await read_body(request), GenerateRequest)
        work = native.generate(body, request.state.request_id)
        return await cancel_on_disconnect(request, work, config.request_timeout)

    @post("/flush_cache", status_code=200, responses=error_responses(503),
          summary="Release cache-dit's cached state and free memory")
    async def flush_cache(self, native: NativeDep) -> FlushCacheResponse:
        return await native.flush_cache()
