"""Reading a form body (multipart or urlencoded) into text fields and file bytes."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile

from ..adapters.forms import FormFields, split_form
from ..errors import InvalidRequest

__all__ = ["FORM_CONTENT_TYPES", "read_form"]

FORM_CONTENT_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def read_form(request: Request, file_fields: frozenset[str], *, expected: str,
                    object_fields: frozenset[str] = frozenset()) -> FormFields:
    """The body's parts (its size is bounded by --max-request-body-mb). `expected` describes the body the endpoint
    takes, for the error when it is not a form."""
    content_type, _ = request.content_type
    if content_type not in FORM_CONTENT_TYPES:
        raise InvalidRequest(f"This endpoint takes {expected}.", code="invalid_content_type")
    form = await request.form()
    items: list[tuple[str, Any]] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            items.append((key, await value.read()))  # only the bytes: the client's file name is never used
            await value.close()
        else:
            items.append((key, value))
    return split_form(items, file_fields, object_fields)
