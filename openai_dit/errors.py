"""The exception tree, and the ONE mapping from any exception to an HTTP status and an OpenAI error body."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

__all__ = [
    "APIError",
    "AuthenticationFailed",
    "Conflict",
    "ErrorResponse",
    "InvalidRequest",
    "ModelNotReady",
    "NotFound",
    "QueueFull",
    "RequestCancelled",
    "RequestTimeout",
    "StorageUnavailable",
    "UnsupportedTask",
    "error_response",
]

logger = logging.getLogger("openai_dit")


class APIError(Exception):
    """An error a client is told about. `message` is shown to clients: it never carries internals."""

    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


class InvalidRequest(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class UnsupportedTask(InvalidRequest):
    """The request asks for a task (or input) the served model cannot do."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param, code="unsupported_task")


class NotFound(APIError):
    status_code = 404
    error_type = "not_found_error"


class Conflict(APIError):
    """The resource is not in a state that allows this (e.g. a video not completed yet). Retrying at once would
    not help, so the SDK is told not to."""

    status_code = 409
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message, param=param, code=code, headers={"x-should-retry": "false"})


class AuthenticationFailed(APIError):
    """No API key, or not one of the server's. As OpenAI answers it; the message never repeats the key sent."""

    status_code = 401
    error_type = "invalid_request_error"

    def __init__(self) -> None:
        super().__init__("Missing or incorrect API key. Send it as 'Authorization: Bearer <key>' (or 'x-api-key').",
                         code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


class RequestTimeout(APIError):
    """The request did not finish within the server's --request-timeout; its work was stopped."""

    status_code = 504
    error_type = "timeout_error"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"The request did not finish within the server's time limit of {seconds:g} seconds.",
                         code="request_timeout")


class QueueFull(APIError):
    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("The server is at capacity; retry after a moment.", code="queue_full",
                         headers={"Retry-After": str(retry_after_s)})


class ModelNotReady(APIError):
    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, message: str = "The model is not loaded yet.") -> None:
        super().__init__(message, code="model_not_ready", headers={"Retry-After": "5"})

    @classmethod
    def shutting_down(cls) -> ModelNotReady:
        """The server is draining or stopping: retry elsewhere, or once it is back."""
        return cls("The server is shutting down.")

    @classmethod
    def ranks_lost(cls) -> ModelNotReady:
        """The ranks can no longer work together: the process exits and is restarted."""
        return cls("The server lost one of its ranks and is restarting.")


class StorageUnavailable(APIError):
    """The data directory or database cannot take a write: full (507, `storage_full`) or otherwise failing (503,
    `storage_unavailable`, e.g. read-only). Retryable: the operator frees space, or the store comes back."""

    def __init__(self, full: bool) -> None:
        super().__init__("The server's storage is full; retry later." if full else
                         "The server's storage cannot be written now; retry later.",
                         code="storage_full" if full else "storage_unavailable", headers={"Retry-After": "30"})
        self.status_code = 507 if full else 503
        self.error_type = "server_error" if full else "service_unavailable"

    @classmethod
    def of(cls, exc: BaseException) -> StorageUnavailable:
        """The error a failed write (an OSError, or the database's own error) stands for."""
        if isinstance(exc, StorageUnavailable):
            return exc
        errno_full = getattr(exc, "errno", None) in (28, 122)  # ENOSPC, EDQUOT
        text = str(exc).lower()
        return cls(full=errno_full or "full" in text or "no space" in text)


class RequestCancelled(Exception):
    """The request was cancelled (client gone); nobody is left to answer."""


@dataclass
class ErrorResponse:
    status_code: int
    body: dict | None  # None: nobody is listening (the client has gone)
    headers: dict[str, str] = field(default_factory=dict)


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


def _body(message: str, error_type: str, param: str | None, code: str | None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _validation_message(exc) -> tuple[str, str | None]:
    """Litestar's ValidationException -> (message naming the field, param)."""
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


def error_response(exc: BaseException) -> ErrorResponse:
    """Map any exception to (status, OpenAI error body, headers). Unknown exceptions become a generic 500."""
    from litestar.exceptions import HTTPException, ValidationException

    if isinstance(exc, RequestCancelled):
        return ErrorResponse(499, None)  # nginx's "client closed request", for the access log
    if isinstance(exc, APIError):
        return ErrorResponse(exc.status_code, _body(exc.message, exc.error_type, exc.param, exc.code), exc.headers)
    if isinstance(exc, ValidationException):
        message, param = _validation_message(exc)
        return ErrorResponse(400, _body(message, "invalid_request_error", param, "invalid_value"))
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        status = exc.status_code
        message = _HTTP_MESSAGES.get(status) or (exc.detail if isinstance(exc.detail, str) else "Bad request.")
        return ErrorResponse(status, _body(message, _HTTP_TYPES.get(status, "invalid_request_error"), None, None),
                             dict(exc.headers or {}))
    logger.error("internal error", exc_info=exc)
    return ErrorResponse(500, _body("The server had an error while processing your request.", "server_error",
                                    None, "internal_error"))
