"""Images kept for `response_format=url` in the object store: a drop-in for serving.output_store.OutputStore when
the store is shared, so that a link answered by one replica is served by any other.

Names are OutputStore's (192 random bits, `NAME_PATTERN`); the object is `images/<name>`, stored with its expiry.
Nothing bounds the bytes kept but the time to live: `--image-url-store-mb` does not apply (`size_bytes` is 0), and
`sweep()` deletes what has outlived it.
"""

from __future__ import annotations

import math
import re
import secrets
import time

from ..serving.output_store import NAME_PATTERN, StoredOutput
from .base import ObjectStore

__all__ = ["ObjectImageStore"]

_NAME = re.compile(NAME_PATTERN)
_FOLDER = "images"


class ObjectImageStore:
    """Name -> image bytes with a time to live, in an ObjectStore. Thread-safe; every method blocks.

    With `presign`, `url_for(name)` is a pre-signed URL to the object itself (clients fetch it from the bucket);
    otherwise None, and the server serves the image from `get`."""

    def __init__(self, objects: ObjectStore, ttl_seconds: float, presign: bool = False) -> None:
        self.objects = objects
        self.ttl_seconds = ttl_seconds
        self.presign = presign

    def put(self, data: bytes, extension: str, media_type: str) -> str:
        """Store `data`; returns its name (e.g. `<token>.png`). StorageUnavailable when the store refuses it."""
        name = f"{secrets.token_urlsafe(24)}.{extension}"
        if not _NAME.fullmatch(name):
            raise ValueError(f"not an image extension: {extension!r}")
        self.objects.put(f"{_FOLDER}/{name}", data, media_type, expires_at=time.time() + self.ttl_seconds)
        return name

    def get(self, name: str) -> StoredOutput | None:
        """The image named `name`; None for a name `put` would not give, a missing or an expired one. Its
        `expires_at` is on the time.monotonic() clock, as OutputStore's."""
        if not _NAME.fullmatch(name):
            return None
        opened = self.objects.open(f"{_FOLDER}/{name}")
        if opened is None:
            return None
        try:
            data = opened.reader.read()
        finally:
            opened.reader.close()
        left = self.ttl_seconds if opened.expires_at is None else opened.expires_at - time.time()
        return StoredOutput(data, opened.media_type, time.monotonic() + left)

    def url_for(self, name: str) -> str | None:
        """A pre-signed URL of the image, valid for the time to live (from now), with `presign` and a store that
        signs URLs; else None."""
        if not self.presign or not _NAME.fullmatch(name):
            return None
        return self.objects.presigned_url(f"{_FOLDER}/{name}", max(1, math.ceil(self.ttl_seconds)))

    def sweep(self) -> int:
        """Delete the images older than the time to live; how many."""
        return self.objects.remove_older_than(_FOLDER, self.ttl_seconds)

    @property
    def size_bytes(self) -> int:
        """Always 0: the bucket is not bounded by --image-url-store-mb (only the time to live bounds it)."""
        return 0
