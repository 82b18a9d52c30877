"""Cancel a handler's work when its client disconnects (ASGI `http.disconnect`) or its time runs out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from litestar import Request

from ..errors import RequestCancelled, RequestTimeout

__all__ = ["cancel_on_disconnect"]

T = TypeVar("T")


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T], timeout: float = 0) -> T:
    """Await `work`; if the client goes away first, or `timeout` seconds pass (0: no limit), cancel it (the runner
    drops or stops the job) and raise RequestCancelled or RequestTimeout (504)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, timeout=timeout or None, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    if not watcher.done() or watcher.cancelled():
        raise RequestTimeout(timeout)
    raise RequestCancelled()
