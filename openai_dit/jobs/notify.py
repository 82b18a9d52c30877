"""Announcements between replicas of a PostgreSQL job store (LISTEN / NOTIFY): a job deleted (its owner stops it
at the next step) or queued for anyone (a free replica claims it now rather than at its next poll).

One daemon thread holds a connection that listens; each announcement goes to the event loop through
`call_soon_threadsafe`. A lost connection is retried every few seconds; meanwhile the lease renewals and the polls
still notice deletions and queued jobs, only later.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

__all__ = ["Listener"]

logger = logging.getLogger("openai_dit.videos")

_RETRY_SECONDS = 3.0


class Listener:
    def __init__(self, dsn: str, channel: str, on_notice: Callable[[str], None],
                 loop: asyncio.AbstractEventLoop) -> None:
        self._dsn, self._channel, self._on_notice, self._loop = dsn, channel, on_notice, loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-store-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        import psycopg

        failing = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    if failing:
                        logger.info("job store: listening for other replicas' announcements again")
                    failing = False
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            self._loop.call_soon_threadsafe(self._on_notice, notice.payload)
            except Exception as exc:  # noqa: BLE001 - retried; renewals and polls cover the gap
                if not failing:
                    logger.warning("job store: not listening to other replicas (%s); retrying", type(exc).__name__)
                failing = True
                self._stop.wait(_RETRY_SECONDS)
