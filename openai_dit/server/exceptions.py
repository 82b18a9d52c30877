"""The app's exception handlers: every error leaves in the OpenAI shape (see `server.errors.map_error`)."""

from __future__ import annotations

import dataclasses

from litestar import Request, Response

from ..errors import ServiceUnavailable, StorageUnavailable
from .errors import MappedError, map_error

__all__ = ["handle_exception", "handle_exception_no_retry"]


def handle_exception(request: Request, exc: Exception) -> Response:
    return _response(map_error(exc))


def _response(mapped: MappedError) -> Response:
    return Response(content=mapped.body, status_code=mapped.status_code, headers=mapped.headers,
                    media_type="application/json")


def handle_exception_no_retry(request: Request, exc: Exception) -> Response:
    """For requests that create work (a video job): after a server error the job may exist, so the SDK is told
    not to retry (`x-should-retry: false`), which would create a duplicate. Refusals before admission (429, 503)
    stay retryable, and so does a store that refused the job (nothing was created)."""
    mapped = map_error(exc)
    if mapped.status_code >= 500 and not isinstance(exc, ServiceUnavailable | StorageUnavailable):
        mapped = dataclasses.replace(mapped, headers={**mapped.headers, "x-should-retry": "false"})
    return _response(mapped)
