"""Images kept for `response_format=url`: in memory, for a bounded time and a bounded number of bytes."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["NAME_PATTERN", "OutputStore", "StoredOutput"]

NAME_PATTERN = r"[A-Za-z0-9_-]{32}\.(?:png|jpeg|webp)"  # what `put` names an item (192 random bits)
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class StoredOutput:
    data: bytes
    media_type: str
    expires_at: float


class OutputStore:
    """Name -> bytes with a time to live. Names are random (unguessable, 192 bits) and never touch a path.
    When a new item does not fit, the oldest items go first, expired or not."""

    def __init__(self, ttl_seconds: float, max_bytes: int) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, StoredOutput] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, data: bytes, extension: str, media_type: str) -> str:
        """Store `data`; returns its name (e.g. `<token>.png`)."""
        name = f"{secrets.token_urlsafe(24)}.{extension}"
        with self._lock:
            self._evict(now=time.monotonic(), room_for=len(data))
            self._items[name] = StoredOutput(data, media_type, time.monotonic() + self.ttl_seconds)
            self._bytes += len(data)
        return name

    def url_for(self, name: str) -> str | None:
        """A link other than this server's /v1/images/files/<name>: none (ObjectImageStore may pre-sign one)."""
        return None

    def get(self, name: str) -> StoredOutput | None:
        if not _NAME.fullmatch(name):
            return None
        with self._lock:
            item = self._items.get(name)
            if item is None or item.expires_at <= time.monotonic():
                return None
            return item

    def _evict(self, now: float, room_for: int) -> None:
        while self._items:
            name, item = next(iter(self._items.items()))
            if item.expires_at > now and self._bytes + room_for <= self.max_bytes:
                return
            del self._items[name]
            self._bytes -= len(item.data)

    @property
    def size_bytes(self) -> int:
        return self._bytes
