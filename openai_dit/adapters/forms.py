"""Multipart form fields -> protocol Structs. Pure functions: no I/O.

The openai SDK flattens a multipart body as `key` (scalars, as strings: "4", "true"), `key[]` (each list item,
repeated) and `key[sub]` (each dict entry); OpenWebUI sends `image[]` even for one image. Files are gathered by
their base name (`image` and `image[]` are the same field).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec

from ..errors import InvalidRequest
from ..protocol.extensions import unknown_field

__all__ = ["FormFields", "convert_form", "decode_json", "split_form"]

T = TypeVar("T")

_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,63})(?:\[([A-Za-z0-9_]{0,64})\])?$")
_AT = re.compile(r"at `\$\.([A-Za-z0-9_.\[\]]+)`")
_MISSING = re.compile(r"required field `([^`]+)`")


class FormFields(msgspec.Struct):
    """Text fields as a nested dict, and the files of each file field, in order."""

    fields: dict[str, Any]
    files: dict[str, list[Any]]


def split_form(items: Iterable[tuple[str, Any]], file_fields: frozenset[str],
               object_fields: frozenset[str] = frozenset()) -> FormFields:
    """(key, value) parts -> FormFields. A value is a str, or an upload (anything else) for file fields.
    `object_fields` are file fields that may instead arrive as text (`input_reference[image_url]`)."""
    fields: dict[str, Any] = {}
    files: dict[str, list[Any]] = {}
    for key, value in items:
        match = _KEY.match(key)
        if not match:
            raise InvalidRequest(f"Unexpected form field '{key[:80]}'.", param=key[:80])
        name, sub = match.group(1), match.group(2)
        if name in file_fields and not (isinstance(value, str) and name in object_fields):
            if isinstance(value, str):
                raise InvalidRequest(f"'{name}' must be sent as a file.", param=name)
            files.setdefault(name, []).append(value)
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"'{name}' must be a text field, not a file.", param=name)
        if sub is None:
            if name in fields:
                raise InvalidRequest(f"'{name}' was sent more than once.", param=name)
            fields[name] = value
        elif sub == "":
            existing = fields.setdefault(name, [])
            if not isinstance(existing, list):
                raise InvalidRequest(f"'{name}' was sent both as a value and as a list.", param=name)
            existing.append(value)
        else:
            existing = fields.setdefault(name, {})
            if not isinstance(existing, dict):
                raise InvalidRequest(f"'{name}' was sent both as a value and as an object.", param=name)
            existing[sub] = value
    return FormFields(fields=fields, files=files)


_UNKNOWN = re.compile(r"unknown field `([^`]*)`")


def _invalid(exc: msgspec.ValidationError) -> InvalidRequest:
    message = str(exc)
    unknown = _UNKNOWN.search(message)
    if unknown:
        within = _AT.search(message)  # a nested object's field: name it by its path
        return unknown_field(f"{within.group(1)}.{unknown.group(1)}" if within else unknown.group(1))
    found = _AT.search(message) or _MISSING.search(message)
    param = found.group(1) if found else None
    where = f" (parameter '{param}')" if param else ""
    return InvalidRequest(f"{message.split(' - at ')[0]}{where}.", param=param, code="invalid_value")


def convert_form(fields: dict[str, Any], cls: type[T]) -> T:
    """Strings converted to the Struct's types ("4" -> 4, "true" -> True) and validated; errors name the field."""
    try:
        return msgspec.convert(fields, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None


def decode_json(body: bytes, cls: type[T]) -> T:
    """A JSON body validated as `cls`; errors name the field, as for forms."""
    try:
        return msgspec.json.decode(body, type=cls)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except msgspec.DecodeError:
        raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None
    except RecursionError:
        raise InvalidRequest("The body's JSON is nested too deeply.", code="invalid_json") from None
