"""`/docs`: the interactive OpenAPI page, with Swagger UI served by this server (no CDN), so that it works
on machines without internet access."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from http import HTTPStatus
from pathlib import Path
from typing import Any

import msgspec
from litestar import Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Operation, RequestBody
from litestar.params import FromPath
from litestar.response import File

from ..protocol.errors import ErrorBody

__all__ = ["docs_router", "documented", "error_responses", "form_schema", "json_schema", "openapi_config"]

_ERROR_DESCRIPTIONS = {
    400: "Invalid request (the message names the parameter)",
    401: "Missing or incorrect API key",
    404: "Not found",
    409: "Not in a state that allows this (e.g. a video not completed yet)",
    413: "Request body too large",
    429: "At capacity: retry after the Retry-After header's seconds",
    503: "Loading, shutting down, or a lost rank: retry after Retry-After",
    504: "Did not finish within --request-timeout",
}


_EVENTS = {"description": "stream=true: server-sent events `image_generation.partial_image` / "
                          "`image_edit.partial_image` and `.completed` (b64_json and metadata), `error` (the OpenAI "
                          "error body), then `data: [DONE]`."}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The documented error responses of an operation, all in the OpenAI error shape. 401 is on every one: any
    route may need an API key."""
    return {status: ResponseSpec(data_container=ErrorBody, generate_examples=False,
                                 description=_ERROR_DESCRIPTIONS.get(status) or HTTPStatus(status).phrase)
            for status in sorted({401, *statuses})}


def json_schema(struct: type) -> dict[str, Any]:
    """A Struct's JSON schema with every definition inlined (a request body's schema stands alone)."""
    schema = msgspec.json.schema(struct)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return inline(schema)


def _flat_schema(struct: type) -> dict[str, Any]:
    """A Struct's fields that a form can carry: nested objects are left out."""
    schema = json_schema(struct)
    properties = {name: value for name, value in schema["properties"].items() if '"object"' not in
                  msgspec.json.encode(value).decode()}
    return {"type": "object", "properties": properties,
            "required": [name for name in schema.get("required", []) if name in properties]}


def form_schema(struct: type, files: dict[str, bool]) -> dict[str, Any]:
    """A multipart body: the Struct's flat fields as text parts, plus file parts (`files`: name -> required;
    a name ending in [] is a list of files)."""
    schema = _flat_schema(struct)
    for name, required in files.items():
        binary = {"type": "string", "format": "binary"}
        schema["properties"][name] = {"type": "array", "items": binary} if name.endswith("[]") else binary
        if required:
            schema["required"].append(name)
    return schema


def documented(*, body: dict[str, dict[str, Any]] | None = None, event_stream: bool = False) -> type[Operation]:
    """An `operation_class` documenting what Litestar cannot see: the body of a handler that reads it itself
    (`body`: "multipart" / "json" -> schema), and a 200 that may also be a server-sent event stream."""
    media_types = {"multipart": "multipart/form-data", "json": "application/json"}
    request = None
    if body:
        request = RequestBody(required=True, content={media_types[kind]: OpenAPIMediaType(schema=schema)  # type: ignore
                                                      for kind, schema in body.items()})

    @dataclasses.dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            if request is not None:
                self.request_body = request
            ok = (self.responses or {}).get("200")
            if event_stream and isinstance(ok, OpenAPIResponse) and ok.content is not None:
                ok.content["text/event-stream"] = OpenAPIMediaType(schema=_EVENTS)  # type: ignore

    return DocumentedOperation

_ASSETS_PATH = "/docs/assets"
_ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui-standalone-preset.js": "application/javascript",
    "swagger-ui.css": "text/css",
}


@functools.cache
def _assets_dir() -> Path | None:
    """Swagger UI's files from the `swagger-ui-py` package; None where it is not installed (then: the CDN)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.origin:
        return None
    directory = Path(spec.origin).parent / "static"
    return directory if all((directory / name).is_file() for name in _ASSETS) else None


def openapi_config(title: str, version: str) -> OpenAPIConfig:
    local = _assets_dir() is not None
    plugin = SwaggerRenderPlugin(
        path="/",
        js_url=f"{_ASSETS_PATH}/swagger-ui-bundle.js" if local else None,
        standalone_preset_js_url=f"{_ASSETS_PATH}/swagger-ui-standalone-preset.js" if local else None,
        css_url=f"{_ASSETS_PATH}/swagger-ui.css" if local else None,
        favicon="<link rel='icon' href='data:,'>",  # no third-party request for an icon
    )
    return OpenAPIConfig(title=title, version=version, path="/docs", render_plugins=[plugin])


@get(f"{_ASSETS_PATH}/{{name:str}}", include_in_schema=False, cache=3600)
async def _asset(name: FromPath[str]) -> File:
    directory = _assets_dir()
    if directory is None or name not in _ASSETS:  # an allowlist: nothing else of the package is served
        raise NotFoundException()
    return File(directory / name, media_type=_ASSETS[name], content_disposition_type="inline")


def docs_router() -> Router:
    return Router(path="/", route_handlers=[_asset])
