"""Webhooks for video jobs: `video.completed` / `video.failed` events delivered as OpenAI delivers them.

Deliveries follow Standard Webhooks, as OpenAI's do, so the `openai` SDK's `client.webhooks.unwrap(body, headers,
secret=...)` verifies them: headers `webhook-id` (the event id, the same on every retry), `webhook-timestamp` (Unix
seconds, fresh on every attempt: receivers refuse one older than 5 minutes) and `webhook-signature: v1,<base64 of
HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the key is the base64 part of the `whsec_...` secret.

Events wait in the job store's outbox (`WebhookOutbox`); `WebhookSender` claims the due ones, delivers them a few at a
time and records the outcome: delivered, or failed with the time of the next try (`RETRY_DELAYS`, about a day in all),
then given up. An event that a stopped server left undelivered stays in the outbox for the next start or another
replica (at least once: a receiver may see an event twice and should deduplicate on `webhook-id`).

Unless private addresses are allowed, deliveries go through the media fetcher's public-only transport: the receiver's
address is resolved and checked when each connection is made.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from ..errors import InvalidRequest
from ..media.fetch import _address_allowed, _PublicOnlyTransport

__all__ = [
    "RETRY_DELAYS",
    "WebhookEvent",
    "WebhookOutbox",
    "WebhookSender",
    "check_webhook_config",
    "event_body",
    "new_event_id",
    "parse_secret",
    "retry_delay",
    "sign",
]

logger = logging.getLogger("openai_dit.webhooks")
_T = TypeVar("_T")

# Seconds to wait after failed attempt 1, 2, ...; a failure after the last one gives the event up (~22.7 h in all).
RETRY_DELAYS: tuple[float, ...] = (1, 5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)

_SECRET_PREFIX = "whsec_"
_HOLD_MARGIN = 30.0  # seconds a claim outlives the delivery timeout (outbox calls, scheduling)
_CLOSE_GRACE = 2.0  # seconds close() waits for deliveries in flight
_MAX_ERROR = 300  # characters of an error kept in the outbox


@dataclass(frozen=True)
class WebhookEvent:
    """One event of the outbox."""

    id: str  # "evt_...": the webhook-id of every delivery of it
    type: str  # "video.completed" | "video.failed"
    video_id: str
    created_at: int  # Unix seconds, when the event happened
    attempts: int  # deliveries tried before this one


class WebhookOutbox(Protocol):
    """What the sender needs of the job store. Blocking methods: the sender calls them in a worker thread."""

    def claim_webhook_events(self, *, limit: int, hold_seconds: float) -> list[WebhookEvent]:
        """Due, undelivered events; each is hidden from other claimers for hold_seconds (a delivery in flight)."""
        ...

    def webhook_delivered(self, event_id: str) -> None:
        """The receiver answered 2xx: the event is done."""
        ...

    def webhook_failed(self, event_id: str, *, attempts: int, retry_at: float | None, error: str) -> None:
        """attempts: tried so far (incl. this one); retry_at: Unix time of the next try, None = given up."""
        ...


def new_event_id() -> str:
    """A fresh event id: "evt_" and 32 hex characters."""
    return "evt_" + uuid.uuid4().hex


def parse_secret(secret: str) -> bytes:
    """The signing key of a `whsec_<base64>` secret (a plain string is its own UTF-8 key, as the SDK reads it)."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    if secret.startswith(_SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(_SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the webhook secret is not valid base64 after 'whsec_'") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("the webhook secret is empty after decoding")
    return key


def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt: webhook-id, webhook-timestamp, webhook-signature and content-type."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": event_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{signature}",
            "content-type": "application/json"}


def event_body(event: WebhookEvent) -> bytes:
    """The payload, as OpenAI sends it: compact UTF-8 JSON."""
    payload = {"id": event.id, "object": "event", "created_at": event.created_at, "type": event.type,
               "data": {"id": event.video_id}}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def retry_delay(attempts: int, delays: Sequence[float] | None = None) -> float | None:
    """Seconds until the next try after `attempts` failed ones (from `delays`, default RETRY_DELAYS); None: give up."""
    table = RETRY_DELAYS if delays is None else delays
    if attempts < 1:
        return float(table[0]) if table else None
    return float(table[attempts - 1]) if attempts <= len(table) else None


def check_webhook_config(url: str | None, secret: str | None, *, allow_private: bool) -> str | None:
    """The problem with `--webhook-url` / `--webhook-secret` found at launch, or None when they are fine (or unset).

    Resolves the host (blocking: call it before the event loop runs); a host that does not resolve now is only
    logged (a passing DNS failure must not keep the server from starting). The secret never appears in a message.
    """
    if not url and not secret:
        return None
    if not url:
        return "--webhook-secret is set but --webhook-url is not: set both, or neither."
    if not secret:
        return "--webhook-url needs --webhook-secret (whsec_...) to sign the deliveries."
    try:
        parse_secret(secret)
    except ValueError as exc:
        return f"--webhook-secret: {exc}."
    bad_url = "--webhook-url must be an http(s) URL with a host name, e.g. https://example.com/webhooks."
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number, a bracketed host that is not an IPv6 address
        return bad_url
    if parts.scheme not in ("http", "https") or not host:
        return bad_url
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:
        return bad_url
    except socket.gaierror:  # perhaps a passing DNS failure: deliveries check (and retry) each time they connect
        logger.warning("--webhook-url: the host %r does not resolve now; deliveries are retried until it does", host)
        return None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not allow_private:
        private = [address for address in addresses if not _address_allowed(address)]
        if private:
            return (f"--webhook-url: the host {host!r} resolves to a private, loopback or link-local address "
                    f"({', '.join(private)}); --allow-private-urls allows it.")
    return None


def _describe(exc: BaseException, timeout: float) -> str:
    """A short, secret-free reason for a failed attempt."""
    if isinstance(exc, InvalidRequest):  # from the public-only transport, at connect time
        if exc.code == "forbidden_url":
            return "refused: the address is not public (--allow-private-urls allows it)"
        if exc.code == "unreachable_url":
            return "the host could not be resolved"
        return f"refused: {exc.code or 'invalid_url'}"
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)):
        return f"{type(exc).__name__} (timeout {timeout:g} s)"
    return type(exc).__name__


class WebhookSender:
    """Delivers the outbox's due events to one URL, `concurrency` at a time, until closed."""

    def __init__(self, outbox: WebhookOutbox, url: str, secret: str, *, allow_private: bool, timeout: float = 10.0,
                 poll_seconds: float = 1.0, concurrency: int = 4, clock: Callable[[], float] = time.time,
                 retry_delays: Sequence[float] | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._outbox = outbox
        self._url = url
        self._key = parse_secret(secret)
        self._allow_private = allow_private
        self._timeout = timeout
        self._poll_seconds = poll_seconds
        self._concurrency = concurrency
        self._clock = clock
        self._retry_delays = retry_delays
        self._hold_seconds = timeout + _HOLD_MARGIN
        self._client: httpx.AsyncClient | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._deliveries: dict[asyncio.Task[None], WebhookEvent] = {}
        self._wake = asyncio.Event()
        self._closing = False
        self._saturated = False  # the last claim filled every free slot: more may be due
        self._outbox_failing = False
        self.delivered = 0  # deliveries answered 2xx
        self.failed = 0  # attempts that failed (given-up ones included)
        self.given_up = 0  # events given up

    async def start(self) -> None:
        """Start the delivery loop (once)."""
        if self._loop_task is not None:
            return
        transport = None if self._allow_private else _PublicOnlyTransport("webhook_url")
        self._client = httpx.AsyncClient(follow_redirects=False, timeout=self._timeout, trust_env=False,
                                         transport=transport)
        self._closing = False
        self._loop_task = asyncio.create_task(self._run(), name="webhook-sender")

    def wake(self) -> None:
        """An event was just recorded: claim now rather than at the next poll. Call it on the event loop."""
        self._wake.set()

    async def close(self) -> None:
        """Stop claiming, give deliveries in flight a moment, then close the client. Undelivered events stay."""
        self._closing = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        if self._deliveries:
            _, pending = await asyncio.wait(set(self._deliveries), timeout=_CLOSE_GRACE)
            interrupted = [self._deliveries[task] for task in pending]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for event in interrupted:  # due again at once (for the next start or another replica), not held
                await self._outbox_call(self._outbox.webhook_failed, event.id, attempts=event.attempts,
                                        retry_at=self._clock(), error="interrupted by a shutdown")
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- the loop -----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                await self._claim_and_spawn()
            except Exception:  # a bug, not the store (that is _outbox_call's): keep delivering
                logger.exception("webhook sender: unexpected error; continuing")
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
            except asyncio.TimeoutError:
                pass

    async def _claim_and_spawn(self) -> None:
        free = self._concurrency - len(self._deliveries)
        if free <= 0:
            return
        events = await self._outbox_call(self._outbox.claim_webhook_events, limit=free,
                                         hold_seconds=self._hold_seconds) or []
        self._saturated = len(events) >= free
        for event in events[:free]:
            task = asyncio.create_task(self._deliver(event), name=f"webhook-{event.id}")
            self._deliveries[task] = event
            task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._deliveries.pop(task, None)
        if self._saturated:
            self._wake.set()  # a slot is free and more events may be due

    async def _outbox_call(self, method: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T | None:
        """Call a blocking outbox method in a thread; a failure is logged once per streak and yields None."""
        try:
            result = await asyncio.to_thread(method, *args, **kwargs)
        except Exception as exc:  # the store is down or failing: retried at the next poll
            if not self._outbox_failing:
                self._outbox_failing = True
                logger.warning("webhook outbox unavailable (%s: %s); retrying", type(exc).__name__, exc)
            return None
        if self._outbox_failing:
            self._outbox_failing = False
            logger.info("webhook outbox available again")
        return result

    async def _post(self, body: bytes, headers: dict[str, str]) -> int:
        assert self._client is not None
        async with self._client.stream("POST", self._url, content=body, headers=headers) as response:
            return response.status_code  # the body is never read

    async def _deliver(self, event: WebhookEvent) -> None:
        attempts = event.attempts + 1
        body = event_body(event)
        headers = sign(self._key, event.id, int(self._clock()), body)
        try:
            status = await asyncio.wait_for(self._post(body, headers), self._timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # network error, timeout, an address refused by the public-only transport
            reason = _describe(exc, self._timeout)
        else:
            if 200 <= status < 300:
                self.delivered += 1
                await self._outbox_call(self._outbox.webhook_delivered, event.id)
                return
            reason = f"HTTP {status}"
        self.failed += 1
        delay = retry_delay(attempts, self._retry_delays)
        retry_at = None if delay is None else self._clock() + delay
        if delay is None:
            self.given_up += 1
            logger.error("webhook %s (%s, video %s) failed %d times, last: %s; giving up", event.id, event.type,
                         event.video_id, attempts, reason)
        else:
            logger.warning("webhook %s (%s, video %s) attempt %d failed: %s; next try in %g s", event.id,
                           event.type, event.video_id, attempts, reason, delay)
        await self._outbox_call(self._outbox.webhook_failed, event.id, attempts=attempts, retry_at=retry_at,
                                error=reason[:_MAX_ERROR])
