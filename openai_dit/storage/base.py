"""The object store: where job files (videos, thumbnails, spritesheets, reference images) and `response_format=url`
images live, either in the data directory (`--object-store local`) or in an S3-compatible bucket shared by every
replica (`--object-store s3://bucket/prefix`).

Keys are relative paths chosen by the server (`videos/<storage>/video.mp4`, `images/<name>.png`), never a client's
raw string; they are checked all the same (`check_key`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

__all__ = ["ObjectStore", "ObjectStoreUnreachable", "OpenedObject", "check_key", "open_object_store"]

_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"  # no empty, "." or ".." segment, and nothing hidden (".name")
_KEY = re.compile(rf"(?:{_SEGMENT}/)*{_SEGMENT}")
_MAX_KEY = 512
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's bucket naming rules (MinIO's too)
_ACCEPTED = "'local' (the data directory) or 's3://BUCKET' or 's3://BUCKET/PREFIX'"


class ObjectStoreUnreachable(RuntimeError):
    """At start-up: the object store cannot be used (no bucket, access denied, no connection, a folder not
    writable). The message is one line, names the store and the reason, and never carries credentials."""


@dataclass
class OpenedObject:
    """An object opened for reading. `reader` has `.read(n) -> bytes` and `.close()`; both block (callers use
    asyncio.to_thread). `expires_at` (epoch seconds) is the expiry it was stored with, None if none."""

    reader: Any
    size: int
    media_type: str
    expires_at: float | None = None


def check_key(key: str) -> str:
    """`key` itself if it is a safe relative key: segments of `[A-Za-z0-9._-]` separated by single slashes, none
    empty, `.`, `..` or starting with a dot, no leading or trailing slash. Otherwise ValueError."""
    if not isinstance(key, str) or len(key) > _MAX_KEY or not _KEY.fullmatch(key):
        raise ValueError(f"not a valid object key: {key!r}")
    return key


class ObjectStore(ABC):
    """Key -> bytes with a media type, in a folder or a bucket. Every method blocks; every one is thread-safe.

    A write the storage refuses raises StorageUnavailable (errors.py); so does a read that fails for any reason
    other than the object being missing. Keys and prefixes that fail `check_key` raise ValueError.
    """

    shared: bool
    """True when other replicas see the same objects (s3), False for a local folder."""
    description: str
    """For logs, e.g. "local folder /x" or "s3://bucket/prefix" (no secrets)."""

    @abstractmethod
    def check(self) -> None:
        """At start-up: raise ObjectStoreUnreachable when the store cannot be used."""

    @abstractmethod
    def put(self, key: str, data: bytes, media_type: str, *, expires_at: float | None = None) -> None:
        """Store `data` at `key`, replacing what was there, atomically: a reader sees the old object or the new one,
        never half of one. `expires_at` (epoch seconds): from then on `open` answers None."""

    @abstractmethod
    def open(self, key: str) -> OpenedObject | None:
        """The object at `key`, opened (the caller closes its reader); None if missing or past its expiry."""

    def read(self, key: str) -> bytes | None:
        """The whole object at `key`; None if missing or past its expiry."""
        opened = self.open(key)
        if opened is None:
            return None
        try:
            return opened.reader.read()
        finally:
            opened.reader.close()

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object at `key`; a missing one is no error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under `prefix/` (a job's folder); nothing to delete is no error."""

    @abstractmethod
    def children(self, prefix: str, *, older_than: float) -> list[str]:
        """The names of the direct "sub-folders" of `prefix/` whose objects were all last modified at least
        `older_than` seconds ago (sorted): those no replica is writing into now, safe to remove if orphaned."""

    @abstractmethod
    def remove_older_than(self, prefix: str, age_seconds: float) -> int:
        """Delete the objects under `prefix/` last modified at least `age_seconds` ago; how many were deleted."""

    @abstractmethod
    def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A URL that fetches `key` without credentials for `expires_in` seconds (s3); None where there is no such
        thing (local)."""

    @abstractmethod
    def writable(self) -> bool:
        """Whether a small probe write succeeds now (for /ready). Never raises."""


def open_object_store(url: str, *, data_dir: str, endpoint_url: str | None = None) -> ObjectStore:
    """The store `--object-store URL` names: "local" -> the data directory (`endpoint_url` unused);
    "s3://bucket" or "s3://bucket/some/prefix" -> that bucket, under that prefix. Anything else: ValueError."""
    if url == "local":
        from .local import LocalObjectStore

        return LocalObjectStore(data_dir)
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        prefix = prefix.strip("/")
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(f"--object-store {url!r}: {bucket!r} is not a valid bucket name; accepted forms are "
                             f"{_ACCEPTED}")
        if prefix and (len(prefix) > _MAX_KEY // 2 or not _KEY.fullmatch(prefix)):
            raise ValueError(f"--object-store {url!r}: the prefix {prefix!r} may only hold letters, digits, '.', '_', "
                             f"'-' and single '/' (no '.' or '..' segments); accepted forms are {_ACCEPTED}")
        from .s3 import S3ObjectStore

        return S3ObjectStore(bucket, prefix, endpoint_url)
    raise ValueError(f"--object-store {url!r} is not understood; accepted forms are {_ACCEPTED}")
