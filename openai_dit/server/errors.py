"""The ONE mapping from any exception to an HTTP status, the OpenAI error body (`protocol.errors.ErrorBody`) and
headers. Every transport uses it: the app's exception handlers (JSON), server-sent event streams, the middleware."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import msgspec
from litestar.exceptions import HTTPException, ValidationException

from ..errors import APIError, RequestCancelled
from ..protocol.errors import ErrorBody, ErrorDetail

__all__ = ["CLIENT_GONE", "MappedError", "map_error"]

logger = logging.getLogger("openai_dit")

CLIENT_GONE = 499  # nginx's "client closed request", for the access log and the metrics

_HTTP_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
}
_HTTP_MESSAGES = {
    404: "Not found.",
    405: "Method not allowed.",
    413: "Request body too large.",
    415: "Unsupported media type.",
}
_MISSING_FIELD = re.compile(r"required field `([^`]+)`")


@dataclass
class MappedError:
    status_code: int
    body: ErrorBody | None  # None: nobody is listening (the client has gone)
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        return msgspec.json.encode(self.body)


def _body(message: str, error_type: str, param: str | None, code: str | None) -> ErrorBody:
    return ErrorBody(error=ErrorDetail(message=message, type=error_type, param=param, code=code))


def _validation_message(exc: ValidationException) -> tuple[str, str | None]:
    """Litestar's ValidationException (query and path parameters) -> (message naming the field, param)."""
    extra = getattr(exc, "extra", None)
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        first = extra[0]
        message = str(first.get("message") or "Invalid request.")
        param = first.get("key") or None
        if param in (None, "data", "body"):  # an error about the body as a whole: name the field instead
            missing = _MISSING_FIELD.search(message)
            param = missing.group(1) if missing else None
        if param and param not in message:
            message = f"{message} (parameter '{param}')"
        return message, param
    return "Invalid request body.", None


def map_error(exc: BaseException) -> MappedError:
    """Any exception -> (status, OpenAI error body, headers). Unknown exceptions are a generic 500, logged here in
    full (never shown to the client)."""
    if isinstance(exc, RequestCancelled):
        return MappedError(CLIENT_GONE, None)
    if isinstance(exc, APIError):
        return MappedError(exc.status_code, _body(exc.message, exc.error_type, exc.param, exc.code), exc.headers)
    if isinstance(exc, ValidationException):
        message, param = _validation_message(exc)
        return MappedError(400, _body(message, "invalid_request_error", param, "invalid_value"))
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        status = exc.status_code
        message = _HTTP_MESSAGES.get(status) or (exc.detail if isinstance(exc.detail, str) else "Bad request.")
        return MappedError(status, _body(message, _HTTP_TYPES.get(status, "invalid_request_error"), None, None),
                           dict(exc.headers or {}))
    logger.error("internal error", exc_info=exc)
    return MappedError(500, _body("The server had an error while processing your request.", "server_error", None,
                                  "internal_error"))
