"""Reading a form body (multipart or urlencoded) into text fields and file bytes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile
from litestar.exceptions import InternalServerException

from ..adapters.forms import FormFields, split_form
from ..errors import InvalidRequest, RequestCancelled

logger = logging.getLogger("openai_dit.server")

__all__ = ["FORM_CONTENT_TYPES", "read_body", "read_form"]

FORM_CONTENT_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def read_form(request: Request, file_fields: frozenset[str], *, expected: str,
                    object_fields: frozenset[str] = frozenset()) -> FormFields:
    """The body's parts (its size is bounded by --max-request-body-mb). `expected` describes the body the endpoint
    takes, for the error when it is not a form."""
    content_type, _ = request.content_type
    if content_type not in FORM_CONTENT_TYPES:
        raise InvalidRequest(f"This endpoint takes {expected}.", code="invalid_content_type")
    with _client_transport():
        form = await request.form()
    items: list[tuple[str, Any]] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            items.append((key, await value.read()))  # only the bytes: the client's file name is never used
            await value.close()
        else:
            items.append((key, value))
    return split_form(items, file_fields, object_fields)


async def read_body(request: Request) -> bytes:
    """The whole body (bounded by --max-request-body-mb)."""
    with _client_transport():
        return await request.body()


@contextmanager
def _client_transport() -> Iterator[None]:
    """A client that leaves while its body is read is a client that left (logged once, counted as cancelled), not
    a server error: Litestar reports it as an InternalServerException."""
    try:
        yield
    except InternalServerException as exc:
        if "disconnected" not in str(exc.detail):
            raise
        logger.info("the client left while its request body was being read")
        raise RequestCancelled() from None
