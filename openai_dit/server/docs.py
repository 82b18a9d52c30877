"""`/docs`: the interactive OpenAPI page, with Swagger UI served by this server (no CDN), so that it works
on machines without internet access."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from litestar import Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath
from litestar.response import File

__all__ = ["docs_router", "openapi_config"]

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
