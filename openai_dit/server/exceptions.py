"""The app's exception handlers: every error leaves in the OpenAI shape (see `errors.error_response`)."""

from __future__ import annotations

from litestar import Request, Response

from ..errors import ModelNotReady, StorageUnavailable, error_response

__all__ = ["handle_exception", "handle_exception_no_retry"]


def handle_exception(request: Request, exc: Exception) -> Response:
    mapped = error_response(exc)
    return Response(content=mapped.body, status_code=mapped.status_code, headers=mapped.headers,
                    media_type="application/json")


def handle_exception_no_retry(request: Request, exc: Exception) -> Response:
    """For requests that create work (a video job): after a server error the job may exist, so the SDK is told
    not to retry (`x-should-retry: false`), which would create a duplicate. Refusals before admission (429, 503)
    stay retryable, and so does a store that refused the job (nothing was created)."""
    response = handle_exception(request, exc)
    if response.status_code >= 500 and not isinstance(exc, ModelNotReady | StorageUnavailable):
        response.headers["x-should-retry"] = "false"
    return response
