"""Server-sent events: a stream's events framed as `event:`/`data:` lines, `: ping` comments while nothing happens
(so that proxies keep a queued request open), an `error` event (the OpenAI error body) if the work fails after
the status line went out, and `data: [DONE]` at the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec

from ..errors import RequestCancelled
from ..protocol.images import ImageStreamEvent
from .errors import map_error

__all__ = ["SSE_DONE", "SSE_PING", "server_sent_events"]

SSE_PING = b": ping\n\n"
SSE_DONE = b"data: [DONE]\n\n"
HEARTBEAT_SECONDS = 15.0


def _frame(kind: str, payload: bytes) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"


async def server_sent_events(events: AsyncIterator[ImageStreamEvent],
                             heartbeat: float = HEARTBEAT_SECONDS) -> AsyncIterator[bytes]:
    pending: asyncio.Future | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=heartbeat)
            if not done:
                yield SSE_PING
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                break
            finally:
                pending = None
            yield _frame(event.type, msgspec.json.encode(event))
        yield SSE_DONE
    except RequestCancelled:
        return
    except Exception as exc:  # noqa: BLE001 - the status line is sent: report in the stream, end cleanly
        body = map_error(exc).body
        yield _frame("error", msgspec.json.encode({"type": "error", "error": body.error if body else None}))
        yield SSE_DONE
    finally:
        if pending is not None:  # the client left mid-stream: the work stops
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
