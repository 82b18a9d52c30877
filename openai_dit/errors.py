"""The exception tree of the server: errors a client is told about (APIError and its kinds) and the rest. No web
framework here: `server/errors.py` maps every exception to a status and the OpenAI error body."""

from __future__ import annotations

__all__ = [
    "APIError",
    "AuthenticationFailed",
    "Conflict",
    "EngineLost",
    "InvalidRequest",
    "ModelLoading",
    "NotFound",
    "QueueFull",
    "RequestCancelled",
    "RequestTimeout",
    "ServerDraining",
    "ServiceUnavailable",
    "StorageUnavailable",
    "UnsupportedTask",
]


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


class ServiceUnavailable(APIError):
    """The server cannot take work now (503, retryable): see the three cases below."""

    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="model_not_ready", headers={"Retry-After": "5"})


class ModelLoading(ServiceUnavailable):
    """The model is still loading."""

    def __init__(self) -> None:
        super().__init__("The model is not loaded yet.")


class ServerDraining(ServiceUnavailable):
    """The server is draining or stopping: retry elsewhere, or once it is back."""

    def __init__(self) -> None:
        super().__init__("The server is shutting down.")


class EngineLost(ServiceUnavailable):
    """The engine can no longer work (a rank was lost, or the model failed to load): the process exits and is
    restarted."""

    def __init__(self) -> None:
        super().__init__("The server lost one of its ranks and is restarting.")


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
