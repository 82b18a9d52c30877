"""Helpers shared by the SDK compatibility suites (run as scripts: this folder is on sys.path)."""

from __future__ import annotations

import io

import openai
from PIL import Image

__all__ = ["expect_error", "png"]


def png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def expect_error(kind: type[openai.APIStatusError], param: str | None, call) -> None:
    """`call()` must raise the SDK's `kind`, with a message and (when given) the named `param`."""
    try:
        call()
    except kind as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        assert param is None or body.get("param") == param, (param, body)
        assert body.get("message"), body
        return
    raise AssertionError(f"expected {kind.__name__}")
