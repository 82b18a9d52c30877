"""The OpenAI error body every error response carries (documented in the OpenAPI schema)."""

from __future__ import annotations

import msgspec

__all__ = ["ErrorBody", "ErrorDetail"]


class ErrorDetail(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(msgspec.Struct, kw_only=True):
    error: ErrorDetail
