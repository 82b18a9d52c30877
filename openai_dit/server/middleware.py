"""What wraps every HTTP request, in front of Litestar's router (so unknown paths are covered too).

`request_context` (outermost): a request id in `x-request-id` and in every log line of the request, HTTP metrics
by route template, and the count of requests in flight (a graceful shutdown waits for it). `api_key_gate`: with
API keys configured, every path but an explicit public list needs one. It decides on the path the router will
route (`routed_path`), never on a URL rebuilt from Host or forwarding headers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import Iterable
from contextvars import ContextVar

from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send
from litestar.utils import normalize_path

from ..errors import AuthenticationFailed
from ..metrics import ServerMetrics
from ..serving.output_store import NAME_PATTERN
from .errors import map_error

__all__ = ["PUBLIC_PATHS", "ApiKeys", "HttpActivity", "RedactQueryFilter", "RequestIdLogFilter", "api_key_gate",
           "is_public", "request_context", "routed_path"]

request_id_var: ContextVar[str] = ContextVar("openai_dit_request_id", default="-")

# Matched against the whole routed path. Everything else needs a key when keys are configured.
PUBLIC_PATHS = frozenset({
    "/health", "/ready", "/readyz", "/health/ready", "/live", "/livez", "/health/live", "/metrics",
    "/docs", "/docs/openapi.json", "/docs/openapi.yaml", "/docs/openapi.yml", "/docs/oauth2-redirect.html",
    "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui-standalone-preset.js",
    "/docs/assets/swagger-ui.css",
    # The playground's static page asks the user for the key and sends it with every API call it makes.
    "/playground", "/playground/playground.js", "/playground/playground.css",
})
# Image links (response_format=url) are capability URLs, as OpenAI's pre-signed links are: 192 random bits,
# expiring; clients fetch them without headers (an <img src>, a plain download).
_PUBLIC_PATTERNS = (re.compile("/v1/images/files/" + NAME_PATTERN),)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def routed_path(scope: Scope) -> str:
    """The path exactly as Litestar's router resolves it (root path removed, slashes normalised)."""
    path = scope["path"]
    if root_path := scope.get("root_path", ""):
        path = path.split(root_path, maxsplit=1)[-1]
    return normalize_path(path)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or any(pattern.fullmatch(path) for pattern in _PUBLIC_PATTERNS)


class ApiKeys:
    """The accepted keys, kept as SHA-256 digests and compared in constant time (all of them, every time)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """Whether `Authorization: Bearer <key>` or `x-api-key: <key>` carries an accepted key."""
        matched = False
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    continue
                value = token
            elif name != b"x-api-key":
                continue
            digest = hashlib.sha256(value.strip()).digest()
            for accepted in self._digests:
                matched |= hmac.compare_digest(digest, accepted)
        return matched


async def _send_error(send: Send, exc: Exception) -> None:
    mapped = map_error(exc)
    body = mapped.encoded()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in mapped.headers.items()]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": mapped.status_code, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


def api_key_gate(app: ASGIApp, keys: ApiKeys) -> ASGIApp:
    """401 (OpenAI shape) for any non-public path without an accepted key; `app` as is without keys."""
    if not keys:
        return app

    async def gate(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(routed_path(scope)) or keys.accepts(scope["headers"]):
            await app(scope, receive, send)
            return
        await _send_error(send, AuthenticationFailed())

    return gate


class HttpActivity:
    """HTTP requests in flight, for the graceful shutdown."""

    def __init__(self) -> None:
        self.in_flight = 0


_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:api[_-]?key|key|token|access[_-]?token|secret|password)=)[^&\s]*", re.I)


class RedactQueryFilter(logging.Filter):
    """uvicorn's access log prints the full path: values of query parameters that look like secrets (`api_key=`,
    `token=`, ...) are replaced with `***` (the key gate never reads them, but a client may still send them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            args = list(record.args)
            args[2] = _SECRET_QUERY.sub(r"\1***", record.args[2])
            record.args = tuple(args)
        return True


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every record: the id of the HTTP request being handled, or '-'."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def request_context(app: ASGIApp, metrics: ServerMetrics, activity: HttpActivity) -> ASGIApp:
    """Request id (scope state, logs, `x-request-id`), HTTP metrics and the in-flight count around `app`. The id
    is always the server's own: it names output files, so a client's value is never used."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500  # a response that never started: the app failed before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        activity.in_flight += 1
        try:
            await app(scope, receive, send_with_id)
        finally:
            activity.in_flight -= 1
            method = scope.get("method", "GET")
            metrics.observe_http(scope.get("path_template") or "unmatched", method if method in _METHODS else
                                 "other", status, time.perf_counter() - started)
            request_id_var.reset(token)

    return middleware
