"""Webhook delivery (openai_dit/jobs/webhooks.py) against the real receiver of tests/services.py and the SDK's verifier.

The outbox is an in-memory fake honouring due times and claim holds, on the sender's clock; retry timing runs on a
fake clock that the tests move, so nothing waits for a real retry delay. Network only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field, replace

import openai
import pytest
from services import webhook_receiver

from openai_dit.jobs import webhooks
from openai_dit.jobs.webhooks import (
    RETRY_DELAYS,
    WebhookEvent,
    WebhookSender,
    check_webhook_config,
    event_body,
    new_event_id,
    parse_secret,
    retry_delay,
    sign,
)

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another key, not the one signed with").decode()


def sdk() -> openai.OpenAI:
    return openai.OpenAI(api_key="x", base_url="http://127.0.0.1:9/v1", max_retries=0)


class FakeClock:
    """Unix time that moves only when told (starts at the real time: the SDK checks timestamps against its own)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@dataclass
class _Row:
    event: WebhookEvent
    due: float
    held_until: float = 0.0
    done: bool = False
    given_up: bool = False


@dataclass(frozen=True)
class Failure:
    event_id: str
    attempts: int
    retry_at: float | None
    error: str
    at: float


@dataclass
class FakeOutbox:
    """The WebhookOutbox protocol in memory (called from worker threads, hence the lock)."""

    clock: object = time.time
    rows: dict[str, _Row] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    claims: list[int] = field(default_factory=list)  # the limit of each claim
    broken_calls: int = 0  # the next this many calls raise, as a store that is down
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return self.clock()  # type: ignore[operator]

    def add(self, *, type: str = "video.completed", video_id: str | None = None, attempts: int = 0) -> WebhookEvent:
        event = WebhookEvent(id=new_event_id(), type=type, video_id=video_id or f"video_{new_event_id()[4:]}",
                             created_at=int(self.now()) - 3, attempts=attempts)
        with self.lock:
            self.rows[event.id] = _Row(event, due=self.now())
        return event

    def _maybe_break(self) -> None:
        if self.broken_calls > 0:
            self.broken_calls -= 1
            raise RuntimeError("database is locked")

    def claim_webhook_events(self, *, limit: int, hold_seconds: float) -> list[WebhookEvent]:
        with self.lock:
            self._maybe_break()
            self.claims.append(limit)
            now = self.now()
            due = [row for row in self.rows.values()
                   if not row.done and not row.given_up and row.due <= now and row.held_until <= now]
            due.sort(key=lambda row: row.due)
            for row in due[:limit]:
                row.held_until = now + hold_seconds
            return [row.event for row in due[:limit]]

    def webhook_delivered(self, event_id: str) -> None:
        with self.lock:
            self._maybe_break()
            self.rows[event_id].done = True
            self.delivered.append(event_id)

    def webhook_failed(self, event_id: str, *, attempts: int, retry_at: float | None, error: str) -> None:
        with self.lock:
            self._maybe_break()
            row = self.rows[event_id]
            self.failures.append(Failure(event_id, attempts, retry_at, error, self.now()))
            row.event = replace(row.event, attempts=attempts)
            row.held_until = 0.0
            if retry_at is None:
                row.given_up = True
            else:
                row.due = retry_at


async def until(condition, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def let_slow_answers_end(hooks, delay: float) -> None:
    """Stay until the receiver's delayed answers are written (to a closed connection), before it shuts down: a
    handler left sleeping would print its broken pipe after the test."""
    if hooks.deliveries:
        time.sleep(max(0.0, max(d.received_at for d in hooks.deliveries) + delay + 0.1 - time.time()))


def sender_for(outbox: FakeOutbox, url: str, **kwargs) -> WebhookSender:
    kwargs.setdefault("allow_private", True)  # the receiver is on 127.0.0.1
    kwargs.setdefault("poll_seconds", 0.02)
    return WebhookSender(outbox, url, SECRET, **kwargs)


# --- signing, payload, secrets --------------------------------------------------------------------------------------

def test_event_body_is_openais_payload():
    event = WebhookEvent(id="evt_" + "a" * 32, type="video.failed", video_id="video_123", created_at=1700000000,
                         attempts=2)
    assert event_body(event) == (b'{"id":"evt_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","object":"event",'
                                 b'"created_at":1700000000,"type":"video.failed","data":{"id":"video_123"}}')


def test_new_event_id():
    ids = {new_event_id() for _ in range(100)}
    assert len(ids) == 100 and all(re.fullmatch(r"evt_[0-9a-f]{32}", i) for i in ids)


def test_sign_is_verified_by_the_sdk_and_only_with_the_right_secret():
    event = WebhookEvent(id=new_event_id(), type="video.completed", video_id="video_1", created_at=1, attempts=0)
    body = event_body(event)
    headers = sign(parse_secret(SECRET), event.id, int(time.time()), body)
    assert headers["webhook-id"] == event.id and headers["content-type"] == "application/json"
    assert headers["webhook-signature"].startswith("v1,")
    sdk().webhooks.verify_signature(body, headers, secret=SECRET)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk().webhooks.verify_signature(body, headers, secret=OTHER_SECRET)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk().webhooks.verify_signature(body.replace(b"video_1", b"video_2"), headers, secret=SECRET)
    # A plain (non-whsec) secret is its own key, as the SDK reads it.
    plain = sign(parse_secret("plain secret"), event.id, int(time.time()), body)
    sdk().webhooks.verify_signature(body, plain, secret="plain secret")


def test_parse_secret():
    assert parse_secret(SECRET) == KEY
    assert parse_secret("abc") == b"abc"
    for bad in ("", "whsec_", "whsec_!!!not base64", "whsec_abc"):  # "abc": bad padding, as the SDK would find
        with pytest.raises(ValueError) as info:
            parse_secret(bad)
        assert "secret" in str(info.value)
        if bad[6:]:
            assert bad[6:] not in str(info.value)


def test_retry_delays():
    assert RETRY_DELAYS[:3] == (1, 5, 30)
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [1, 5, 30, 120]
    assert retry_delay(len(RETRY_DELAYS)) == 12 * 3600
    assert retry_delay(len(RETRY_DELAYS) + 1) is None
    assert 20 * 3600 < sum(RETRY_DELAYS) < 26 * 3600  # about a day
    assert retry_delay(2, (0.5, 0.25)) == 0.25 and retry_delay(3, (0.5, 0.25)) is None


# --- launch checks --------------------------------------------------------------------------------------------------

def test_check_webhook_config(caplog):
    assert check_webhook_config(None, None, allow_private=False) is None
    assert check_webhook_config("http://127.0.0.1:9/hook", SECRET, allow_private=True) is None

    message = check_webhook_config(None, SECRET, allow_private=False)
    assert message and "--webhook-url" in message and SECRET not in message
    message = check_webhook_config("https://example.com/hook", None, allow_private=False)
    assert message and "--webhook-secret" in message

    for bad in ("whsec_!!!", "whsec_"):
        message = check_webhook_config("https://example.com/hook", bad, allow_private=False)
        assert message and "--webhook-secret" in message and bad not in message

    for url in ("ftp://example.com/hook", "http:///hook", "example.com/hook", "http://example.com:port/"):
        message = check_webhook_config(url, SECRET, allow_private=True)
        assert message and "http(s)" in message, url

    with caplog.at_level(logging.WARNING, logger="openai_dit.webhooks"):  # a DNS failure now does not stop a start
        assert check_webhook_config("http://nonexistent.invalid/", SECRET, allow_private=True) is None
    assert "does not resolve now" in caplog.text

    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]/hook", "http://10.1.2.3/",
                "http://169.254.169.254/latest"):
        message = check_webhook_config(url, SECRET, allow_private=False)
        assert message and "--webhook-url" in message and "--allow-private-urls" in message, url
        assert SECRET not in message
        assert check_webhook_config(url, SECRET, allow_private=True) is None, url


# --- delivery -------------------------------------------------------------------------------------------------------

def test_delivery_is_unwrapped_by_the_sdk():
    async def scenario(url: str) -> tuple[WebhookEvent, WebhookEvent, WebhookSender, FakeOutbox]:
        outbox = FakeOutbox()
        sender = sender_for(outbox, url, poll_seconds=10)
        await sender.start()
        await until(lambda: outbox.claims, what="the first (empty) claim")
        done = outbox.add(type="video.completed", video_id="video_done")
        failed = outbox.add(type="video.failed", video_id="video_broken")
        sender.wake()  # delivery starts at once, not at the next poll (10 s away)
        await until(lambda: len(outbox.delivered) == 2, timeout=3, what="two deliveries")
        await sender.close()
        return done, failed, sender, outbox

    with webhook_receiver() as hooks:
        done, failed, sender, outbox = asyncio.run(scenario(hooks.url))
    assert sender.delivered == 2 and sender.failed == 0 and not outbox.failures
    by_id = {d.headers["webhook-id"]: d for d in hooks.deliveries}
    assert set(by_id) == {done.id, failed.id}
    for event in (done, failed):
        delivery = by_id[event.id]
        assert delivery.method == "POST" and delivery.path == "/webhook"
        assert delivery.headers["content-type"] == "application/json"
        unwrapped = sdk().webhooks.unwrap(delivery.body, delivery.headers, secret=SECRET)
        assert unwrapped.type == event.type and unwrapped.data.id == event.video_id
        assert delivery.json() == {"id": event.id, "object": "event", "created_at": event.created_at,
                                   "type": event.type, "data": {"id": event.video_id}}
        with pytest.raises(openai.InvalidWebhookSignatureError):
            sdk().webhooks.unwrap(delivery.body, delivery.headers, secret=OTHER_SECRET)


def test_retries_keep_the_id_and_re_sign(caplog):
    clock = FakeClock()
    start = clock.now

    async def scenario(url: str) -> tuple[WebhookEvent, FakeOutbox, WebhookSender]:
        outbox = FakeOutbox(clock=clock)
        event = outbox.add()
        sender = sender_for(outbox, url, clock=clock)
        await sender.start()
        await until(lambda: len(outbox.failures) == 1, what="the first failure")
        await asyncio.sleep(0.1)  # several polls: not due yet on the (still) clock
        assert len(outbox.failures) == 1 and outbox.failures[0].retry_at == start + 1
        clock.now += 1
        await until(lambda: len(outbox.failures) == 2, what="the second failure")
        assert outbox.failures[1].retry_at == clock.now + 5
        clock.now += 5
        await until(lambda: outbox.delivered == [event.id], what="the delivery")
        await asyncio.sleep(0.05)
        await sender.close()
        return event, outbox, sender

    with caplog.at_level(logging.WARNING, logger="openai_dit.webhooks"), webhook_receiver(fail_first=2) as hooks:
        event, outbox, sender = asyncio.run(scenario(hooks.url))
    deliveries = hooks.deliveries
    assert [d.status for d in deliveries] == [500, 500, 200] and len(hooks.succeeded) == 1
    assert {d.headers["webhook-id"] for d in deliveries} == {event.id}
    assert [int(d.headers["webhook-timestamp"]) for d in deliveries] == [start, start + 1, start + 6]
    assert len({d.headers["webhook-signature"] for d in deliveries}) == 3
    assert len({d.body for d in deliveries}) == 1
    for delivery in deliveries:
        sdk().webhooks.verify_signature(delivery.body, delivery.headers, secret=SECRET)
    assert [(f.attempts, f.error, f.retry_at - f.at if f.retry_at else None) for f in outbox.failures] == [
        (1, "HTTP 500", 1), (2, "HTTP 500", 5)]
    assert sender.delivered == 1 and sender.failed == 2

    records = [r for r in caplog.records if r.name == "openai_dit.webhooks"]
    assert len(records) == 2 and all(r.levelno == logging.WARNING for r in records)
    text = "\n".join(r.getMessage() for r in records)
    assert event.id in text and event.video_id in text and "HTTP 500" in text
    assert "next try in 1 s" in text and "next try in 5 s" in text
    assert SECRET not in text and SECRET[6:] not in text and "failing on purpose" not in text


def test_gives_up_after_the_last_delay(caplog):
    async def scenario(url: str, retry_delays) -> tuple[list[WebhookEvent], FakeOutbox, WebhookSender]:
        outbox = FakeOutbox()
        # One event at its last try under the real table; one run through a short table of its own.
        events = [outbox.add(attempts=len(RETRY_DELAYS))]
        sender = sender_for(outbox, url)
        await sender.start()
        await until(lambda: len(outbox.failures) == 1, what="the last failure")
        await sender.close()
        events.append(outbox.add(video_id="video_short"))
        short = sender_for(outbox, url, retry_delays=retry_delays)
        await short.start()
        await until(lambda: len(outbox.failures) == 4, what="the short table's failures")
        await asyncio.sleep(0.1)
        await short.close()
        return events, outbox, short

    with caplog.at_level(logging.WARNING, logger="openai_dit.webhooks"), \
            webhook_receiver(fail_first=100, fail_status=503) as hooks:
        (last, short_event), outbox, short = asyncio.run(scenario(hooks.url, (0.01, 0.01)))
    assert outbox.failures[0].event_id == last.id
    assert (outbox.failures[0].attempts, outbox.failures[0].retry_at) == (len(RETRY_DELAYS) + 1, None)
    assert [(f.attempts, f.retry_at is None) for f in outbox.failures[1:]] == [(1, False), (2, False), (3, True)]
    assert outbox.rows[last.id].given_up and outbox.rows[short_event.id].given_up
    assert len(hooks.deliveries) == 4  # nothing after giving up
    assert short.given_up == 1 and short.failed == 3

    errors = [r for r in caplog.records if r.name == "openai_dit.webhooks" and r.levelno == logging.ERROR]
    assert len(errors) == 2
    for record, event in zip(errors, (last, short_event), strict=True):
        assert event.id in record.getMessage() and event.video_id in record.getMessage()
        assert "giving up" in record.getMessage() and "HTTP 503" in record.getMessage()


def test_slow_receiver_holds_no_more_than_the_concurrency():
    async def scenario(url: str) -> tuple[FakeOutbox, WebhookSender]:
        outbox = FakeOutbox()
        for _ in range(3):
            outbox.add()
        sender = sender_for(outbox, url, concurrency=2, poll_seconds=10)
        await sender.start()
        await until(lambda: len(outbox.delivered) == 3, timeout=5, what="three deliveries")
        await sender.close()
        return outbox, sender

    delay = 0.5
    with webhook_receiver(delay=delay) as hooks:
        outbox, sender = asyncio.run(scenario(hooks.url))
    arrivals = sorted(d.received_at for d in hooks.deliveries)
    arrivals = [at - arrivals[0] for at in arrivals]
    assert len(arrivals) == 3 and outbox.claims[0] == 2 and max(outbox.claims) <= 2
    assert arrivals[1] < delay * 0.6  # the first two at once, neither waiting for the other
    assert arrivals[2] >= delay * 0.9  # the third only once a slot is free: the bound holds
    # ...and soon then: a delivery's end wakes the loop (the next poll is 10 s away).
    assert arrivals[2] < delay * 3
    assert sender.delivered == 3


def test_timeout_is_a_failure():
    async def scenario(url: str) -> tuple[float, FakeOutbox]:
        outbox = FakeOutbox()
        outbox.add()
        sender = sender_for(outbox, url, timeout=0.2)
        began = time.monotonic()
        await sender.start()
        await until(lambda: outbox.failures, what="the failure")
        took = time.monotonic() - began
        await sender.close()
        return took, outbox

    with webhook_receiver(delay=0.8) as hooks:
        took, outbox = asyncio.run(scenario(hooks.url))
        let_slow_answers_end(hooks, 0.8)
    assert took < 0.7 and "timeout" in outbox.failures[0].error.lower()
    assert outbox.failures[0].retry_at is not None


def test_private_address_refused_without_allow_private():
    async def scenario(url: str) -> tuple[FakeOutbox, WebhookSender]:
        outbox = FakeOutbox()
        outbox.add()
        sender = sender_for(outbox, url, allow_private=False)
        await sender.start()
        await until(lambda: outbox.failures, what="the failure")
        await sender.close()
        return outbox, sender

    with webhook_receiver() as hooks:
        outbox, sender = asyncio.run(scenario(hooks.url))
        time.sleep(0.05)
        assert hooks.deliveries == []
    failure = outbox.failures[0]
    assert failure.attempts == 1 and failure.retry_at is not None and "refused" in failure.error
    assert "--allow-private-urls" in failure.error and sender.delivered == 0 and sender.failed == 1


def test_failing_outbox_is_logged_once_and_retried(caplog):
    async def scenario(url: str) -> FakeOutbox:
        outbox = FakeOutbox(broken_calls=5)
        event = outbox.add()
        sender = sender_for(outbox, url, poll_seconds=0.01)
        await sender.start()
        await until(lambda: outbox.delivered == [event.id], what="the delivery")
        await sender.close()
        return outbox

    with caplog.at_level(logging.INFO, logger="openai_dit.webhooks"), webhook_receiver() as hooks:
        outbox = asyncio.run(scenario(hooks.url))
    assert len(hooks.succeeded) == 1 and outbox.broken_calls == 0
    records = [r for r in caplog.records if r.name == "openai_dit.webhooks"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "RuntimeError" in warnings[0].getMessage()
    assert any("available again" in r.getMessage() for r in records)


def test_close_leaves_undelivered_events_and_closes_quickly(monkeypatch):
    monkeypatch.setattr(webhooks, "_CLOSE_GRACE", 0.3)  # the grace for deliveries in flight (2 s in service)

    async def scenario(url: str) -> tuple[float, FakeOutbox]:
        outbox = FakeOutbox()
        outbox.add()
        sender = sender_for(outbox, url, timeout=30)
        await sender.start()
        await until(lambda: outbox.claims, what="a claim")
        await asyncio.sleep(0.1)  # the delivery is in flight, the receiver is slow
        began = time.monotonic()
        await sender.close()
        return time.monotonic() - began, outbox

    with webhook_receiver(delay=1.2) as hooks:
        took, outbox = asyncio.run(scenario(hooks.url))
        assert len(hooks.deliveries) == 1
        let_slow_answers_end(hooks, 1.2)
    assert 0.25 < took < 1.0
    assert not outbox.delivered  # still in the outbox, due at once (not held): the next start delivers it
    (released,) = outbox.failures  # the attempt does not count, and the hold is lifted
    assert released.attempts == 0 and released.retry_at is not None and released.retry_at <= released.at
    assert json.loads(hooks.deliveries[0].body)["object"] == "event"
