"""GET /playground: one page (HTML, CSS, JavaScript shipped in the package, no build step, no external network)
that uses only the server's public API."""

from __future__ import annotations

from importlib import resources

from litestar import Response, Router, get
from litestar.params import FromPath

from ..errors import NotFound

__all__ = ["playground_router"]

_FILES = {"playground.js": "text/javascript", "playground.css": "text/css"}


def _read(name: str) -> bytes:
    return resources.files("openai_dit.playground").joinpath(name).read_bytes()


@get("/playground", include_in_schema=False)
async def _page() -> Response[bytes]:
    return Response(_read("index.html"), media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


@get("/playground/{name:str}", include_in_schema=False)
async def _asset(name: FromPath[str]) -> Response[bytes]:
    if name not in _FILES:  # a fixed list: a client's name is never a path
        raise NotFound("Not found.")
    return Response(_read(name), media_type=_FILES[name], headers={"Cache-Control": "no-cache"})


def playground_router() -> Router:
    return Router(path="/", route_handlers=[_page, _asset])
