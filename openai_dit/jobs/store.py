"""Durable video jobs: their records and the webhook outbox, in SQLite (one server) or PostgreSQL (replicas).

One schema and one code path for both (SQLAlchemy Core; `schema.py`). With `--job-store sqlite` the file is
`<data-dir>/videos.sqlite3` and one server holds the folder at a time (an exclusive lock, released when the process
ends). With `--job-store postgresql://...` replicas share the jobs: each job has an owner (the replica running it)
under a lease it renews; a job whose lease ran out is claimed by another replica (`FOR UPDATE SKIP LOCKED`), or
failed as `server_restarted` once it has started `max_attempts` times. A deletion is announced on a channel
(`NOTIFY`) so that the owner stops the job at its next step. The job's files live in the object store; the record
names their folder (`storage`, random, chosen by the server: a client's id is only ever a SQL parameter).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Connection, and_, case, create_engine, delete, event, false, func, insert, or_, select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from ..errors import StorageUnavailable
from .records import FINISHED, VideoRecord, VideoSettings, is_video_id
from .schema import migrate, videos, webhook_events
from .webhooks import WebhookEvent, new_event_id

__all__ = ["CHANNEL", "DataDirInUse", "JobStore", "JobStoreUnreachable", "Resolved", "job_store_url"]

logger = logging.getLogger("openai_dit.videos")

CHANNEL = "openai_dit_videos"  # NOTIFY payloads: "deleted:<id>", "queued:<id>"
_RESTARTED = ("server_restarted", "The server stopped while this video was being generated; create it again.")


class DataDirInUse(RuntimeError):
    """Another server process holds the data directory."""


class JobStoreUnreachable(RuntimeError):
    """At start-up: the job store cannot be opened (a clear one-line reason, no password in it)."""


def job_store_url(value: str, data_dir: str) -> URL:
    """--job-store as SQLAlchemy's URL: `sqlite` (the data dir's file) or postgresql://... (through psycopg 3)."""
    if value == "sqlite":
        return URL.create("sqlite", database=str(Path(data_dir) / "videos.sqlite3"))
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError("--job-store must be sqlite or a postgresql://user:password@host:port/database URL") from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError("--job-store must be sqlite or a postgresql://user:password@host:port/database URL")
    return url.set(drivername="postgresql+psycopg")


@contextmanager
def _storage_errors() -> Iterator[None]:
    """A write the database refuses (full, read-only, gone) is a StorageUnavailable."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:  # a driver's error, or no connection free in time
        raise StorageUnavailable.of(getattr(exc, "orig", None) or exc) from exc


def _record(row: Any) -> VideoRecord:
    values = {name: getattr(row, name) for name in _RECORD_COLUMNS}
    values["settings"] = msgspec.json.decode(values["settings"], type=VideoSettings)
    return VideoRecord(**values)


_RECORD_COLUMNS = ("seq", "id", "model", "status", "created_at", "completed_at", "expires_at",
                   "remixed_from_video_id", "error_code", "error_message", "settings", "storage", "bytes", "owner",
                   "attempts", "progress")


@dataclass(frozen=True)
class Resolved:
    """What a claim found: a job to run here, and the jobs it failed (lease lost too often)."""

    claimed: VideoRecord | None
    failed: list[str]


class JobStore:
    """The job table and the webhook outbox. Thread-safe (a connection pool); every method is one short
    transaction. `shared`: other replicas use the same store."""

    def __init__(self, url: URL, *, data_dir: str, webhooks: bool = False) -> None:
        self.url = url
        self.shared = url.get_backend_name() == "postgresql"
        self.webhooks = webhooks  # record an event when a job ends
        self._lock_file = None
        if self.shared:
            self.engine = create_engine(url, pool_size=4, max_overflow=4, pool_timeout=5, pool_pre_ping=True,
                                        pool_recycle=1800,
                                        connect_args={"connect_timeout": 5, "application_name": "openai-dit"})
        else:
            root = Path(data_dir)
            root.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(root / "lock", "w")  # noqa: SIM115 - held for the store's lifetime
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock_file.close()
                raise DataDirInUse(f"{root} is in use by another openai-dit server; give each server its own "
                                   "--data-dir (or share a --job-store postgresql://...)") from None
            self.engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        try:
            with self.engine.begin() as conn:
                migrate(conn)
        except DBAPIError as exc:
            self.close()
            if not self.shared and isinstance(exc.orig, BaseException):  # the data directory's file
                raise exc.orig from None
            raise JobStoreUnreachable(f"{self.describe()}: {_reason(exc)}") from None
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        """The store for logs and messages: no password."""
        url = self.url.difference_update_query(["password", "passfile", "sslpassword"])
        return url.render_as_string(hide_password=True).replace("postgresql+psycopg", "postgresql")

    @property
    def dsn(self) -> str:
        """The libpq connection string of a PostgreSQL store (for LISTEN)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def close(self) -> None:
        self.engine.dispose()
        if self._lock_file is not None:
            self._lock_file.close()

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Connection]:
        """One transaction; on SQLite a writing one takes the write lock at its start (no upgrade deadlocks), a
        reading one does not wait for writers."""
        with _storage_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_write=write)
            with conn.begin():
                yield conn

    def _notify(self, conn: Connection, payload: str) -> None:
        if self.shared:
            conn.execute(select(func.pg_notify(CHANNEL, payload)))

    # --- records ---------------------------------------------------------------------------------------------
    def insert(self, record: VideoRecord, *, owner: str | None, lease_seconds: float) -> None:
        """A new job, queued; owned by `owner` (admitted there) or by nobody (any replica claims it)."""
        with self._transaction() as conn:
            record.seq = conn.execute(insert(videos).values(
                id=record.id, model=record.model, status=record.status, created_at=record.created_at,
                remixed_from_video_id=record.remixed_from_video_id, settings=msgspec.json.encode(
                    record.settings).decode(), storage=record.storage, bytes=record.bytes, owner=owner,
                lease_until=time.time() + lease_seconds if owner else None).returning(videos.c.seq)).scalar_one()
            if owner is None:
                self._notify(conn, f"queued:{record.id}")
        record.owner = owner

    def get(self, video_id: str) -> VideoRecord | None:
        """The live record of `video_id`; None for unknown, malformed or expired ids."""
        if not is_video_id(video_id):
            return None
        with self._transaction(write=False) as conn:
            row = conn.execute(select(videos).where(videos.c.id == video_id, _live(int(time.time())))).first()
        return _record(row) if row else None

    def page(self, *, after: VideoRecord | None, limit: int, descending: bool) -> tuple[list[VideoRecord], bool]:
        """Up to `limit` live records after `after` in creation order; and whether more follow."""
        query = select(videos).where(_live(int(time.time())))
        if after is not None:
            query = query.where(videos.c.seq < after.seq if descending else videos.c.seq > after.seq)
        query = query.order_by(videos.c.seq.desc() if descending else videos.c.seq.asc()).limit(limit + 1)
        with self._transaction(write=False) as conn:
            rows = conn.execute(query).all()
        return [_record(row) for row in rows[:limit]], len(rows) > limit

    def waiting(self) -> int:
        """Queued jobs no replica has claimed."""
        with self._transaction(write=False) as conn:
            return conn.execute(select(func.count()).select_from(videos).where(
                videos.c.status == "queued", videos.c.owner.is_(None))).scalar_one()

    def started(self, video_id: str, owner: str, lease_seconds: float) -> None:
        """The owner started running it: in progress, one more attempt."""
        with self._transaction() as conn:
            conn.execute(update(videos).where(videos.c.id == video_id, videos.c.owner == owner,
                                              videos.c.status.not_in(FINISHED)).values(
                status="in_progress", attempts=videos.c.attempts + 1, progress=0,
                lease_until=time.time() + lease_seconds))

    def release(self, video_id: str, owner: str) -> None:
        """The owner gives it back (a graceful stop): queued, for any replica (or the next start) to claim."""
        with self._transaction() as conn:
            released = conn.execute(update(videos).where(
                videos.c.id == video_id, videos.c.owner == owner, videos.c.status.not_in(FINISHED)).values(
                status="queued", owner=None, lease_until=None, progress=0,  # a stop, not a failed attempt:
                attempts=case((videos.c.status == "in_progress", videos.c.attempts - 1), else_=videos.c.attempts),
            )).rowcount
            if released:
                self._notify(conn, f"queued:{video_id}")

    def renew(self, owner: str, progress: dict[str, int], lease_seconds: float) -> set[str]:
        """Extend the owner's leases of these jobs and store their progress; the ids it no longer owns (deleted,
        or claimed by another replica after the lease ran out)."""
        lost = set()
        until = time.time() + lease_seconds
        with self._transaction() as conn:
            for video_id, value in progress.items():
                if not conn.execute(update(videos).where(
                        videos.c.id == video_id, videos.c.owner == owner, videos.c.status.not_in(FINISHED)).values(
                        lease_until=until, progress=value)).rowcount:
                    lost.add(video_id)
        return lost

    def finish(self, video_id: str, *, owner: str | None, ttl_seconds: int, added_bytes: int = 0,
               error_code: str | None = None, error_message: str | None = None) -> bool:
        """Mark completed (no error) or failed, and record its webhook event; False when the record is gone
        (deleted meanwhile), already finished, or held by another replica now (`owner`'s lease ran out and the job
        was taken over: that replica's outcome counts)."""
        now = int(time.time())
        with self._transaction() as conn:
            finished = conn.execute(update(videos).where(
                videos.c.id == video_id, videos.c.status.not_in(FINISHED),
                or_(videos.c.owner.is_(None), videos.c.owner == owner)).values(
                status="failed" if error_code else "completed", completed_at=now, expires_at=now + ttl_seconds,
                error_code=error_code, error_message=error_message, bytes=videos.c.bytes + added_bytes,
                owner=None, lease_until=None)).rowcount == 1
            if finished:
                self._add_event(conn, video_id, "video.failed" if error_code else "video.completed", now)
        return finished

    def delete(self, video_id: str) -> VideoRecord | None:
        """Remove the record (its files are the caller's to remove) and tell its owner; the record, or None."""
        if not is_video_id(video_id):
            return None
        with self._transaction() as conn:
            row = conn.execute(delete(videos).where(videos.c.id == video_id, _live(int(time.time())))
                               .returning(*videos.c)).first()
            if row is not None and row.owner is not None:
                self._notify(conn, f"deleted:{video_id}")
        return _record(row) if row else None

    def storages(self) -> set[str]:
        """Every folder a record names."""
        with self._transaction(write=False) as conn:
            return set(conn.execute(select(videos.c.storage)).scalars())

    # --- replicas --------------------------------------------------------------------------------------------
    def recover(self, *, ttl_seconds: int, max_attempts: int) -> int:
        """At the start of the only server of a SQLite store: jobs the last process held are released (its leases
        no longer mean anything); those that were running and have had their attempts fail as server_restarted.
        Returns how many failed."""
        assert not self.shared
        now = int(time.time())
        with self._transaction() as conn:
            failed = conn.execute(update(videos).where(
                videos.c.status == "in_progress", videos.c.attempts >= max_attempts).values(
                status="failed", completed_at=now, expires_at=now + ttl_seconds, error_code=_RESTARTED[0],
                error_message=_RESTARTED[1], owner=None, lease_until=None).returning(videos.c.id)).scalars().all()
            for video_id in failed:
                self._add_event(conn, video_id, "video.failed", now)
            conn.execute(update(videos).where(videos.c.status.not_in(FINISHED)).values(
                status="queued", owner=None, lease_until=None, progress=0))
        return len(failed)

    def claim(self, owner: str, *, lease_seconds: float, max_attempts: int, ttl_seconds: int) -> Resolved:
        """Take the oldest job nobody holds (unclaimed, or its owner's lease ran out) for `owner`. Jobs whose lease
        ran out after `max_attempts` starts fail as server_restarted instead."""
        now = time.time()
        # On SQLite this process is the only server (the data directory's lock): recover() freed the last one's
        # jobs, and the leases of its own are not renewed (nobody else could take them over).
        orphaned = and_(videos.c.owner.is_not(None), videos.c.lease_until < now) if self.shared else false()
        with self._transaction() as conn:
            failed = list(conn.execute(update(videos).where(
                orphaned, videos.c.status == "in_progress", videos.c.attempts >= max_attempts).values(
                status="failed", completed_at=int(now), expires_at=int(now) + ttl_seconds,
                error_code=_RESTARTED[0], error_message=_RESTARTED[1], owner=None, lease_until=None)
                .returning(videos.c.id)).scalars())
            for video_id in failed:
                self._add_event(conn, video_id, "video.failed", int(now))
            row = conn.execute(select(videos).where(
                videos.c.status.not_in(FINISHED), or_(videos.c.owner.is_(None), orphaned),
                _live(int(now))).order_by(videos.c.seq).limit(1).with_for_update(skip_locked=True)).first()
            if row is None:
                return Resolved(None, failed)
            conn.execute(update(videos).where(videos.c.seq == row.seq).values(
                owner=owner, lease_until=now + lease_seconds, status="queued", progress=0))
        record = _record(row)
        record.owner, record.status, record.progress = owner, "queued", 0
        return Resolved(record, failed)

    def remove_expired_and_excess(self, *, max_bytes: int, max_jobs: int) -> list[str]:
        """Delete expired records, then the oldest finished ones while over the bounds. Returns their folders."""
        now = int(time.time())
        with self._transaction() as conn:
            victims: list[tuple[int, str]] = [(row.seq, row.storage) for row in conn.execute(select(
                videos.c.seq, videos.c.storage).where(videos.c.expires_at.is_not(None), videos.c.expires_at <= now))]
            total_bytes, total_jobs = conn.execute(select(func.coalesce(func.sum(videos.c.bytes), 0),
                                                          func.count()).where(_live(now))).one()
            if total_bytes > max_bytes or total_jobs > max_jobs:
                finished = conn.execute(select(videos.c.seq, videos.c.storage, videos.c.bytes).where(
                    videos.c.status.in_(FINISHED), videos.c.expires_at > now).order_by(videos.c.seq)).all()
                for seq, storage, size in finished:
                    if total_bytes <= max_bytes and total_jobs <= max_jobs:
                        break
                    victims.append((seq, storage))
                    total_bytes -= size
                    total_jobs -= 1
            if victims:
                conn.execute(delete(videos).where(videos.c.seq.in_([seq for seq, _ in victims])))
        return [storage for _, storage in victims]

    # --- the webhook outbox ----------------------------------------------------------------------------------
    def _add_event(self, conn: Connection, video_id: str, kind: str, created_at: int) -> None:
        if self.webhooks:
            conn.execute(insert(webhook_events).values(id=new_event_id(), type=kind, video_id=video_id,
                                                       created_at=created_at, next_attempt_at=time.time()))

    def claim_webhook_events(self, *, limit: int, hold_seconds: float) -> list[WebhookEvent]:
        """Due, undelivered events; each hidden from other claimers for `hold_seconds` (a delivery in flight)."""
        now = time.time()
        with self._transaction() as conn:
            rows = conn.execute(select(webhook_events).where(
                webhook_events.c.delivered_at.is_(None), webhook_events.c.abandoned_at.is_(None),
                webhook_events.c.next_attempt_at <= now).order_by(webhook_events.c.next_attempt_at).limit(limit)
                .with_for_update(skip_locked=True)).all()
            if rows:
                conn.execute(update(webhook_events).where(webhook_events.c.id.in_([row.id for row in rows]))
                             .values(next_attempt_at=now + hold_seconds))
        return [WebhookEvent(id=row.id, type=row.type, video_id=row.video_id, created_at=row.created_at,
                             attempts=row.attempts) for row in rows]

    def webhook_delivered(self, event_id: str) -> None:
        with self._transaction() as conn:
            conn.execute(update(webhook_events).where(webhook_events.c.id == event_id).values(
                delivered_at=time.time(), attempts=webhook_events.c.attempts + 1, last_error=None))

    def webhook_failed(self, event_id: str, *, attempts: int, retry_at: float | None, error: str) -> None:
        values: dict[str, Any] = {"attempts": attempts, "last_error": error[:500]}
        if retry_at is None:
            values["abandoned_at"] = time.time()
        else:
            values["next_attempt_at"] = retry_at
        with self._transaction() as conn:
            conn.execute(update(webhook_events).where(webhook_events.c.id == event_id).values(**values))

    def remove_old_events(self, before: float) -> None:
        """Delivered or abandoned events older than `before` (Unix time)."""
        with self._transaction() as conn:
            conn.execute(delete(webhook_events).where(or_(webhook_events.c.delivered_at < before,
                                                          webhook_events.c.abandoned_at < before)))


def _live(now: int):
    """Not expired at `now`."""
    return or_(videos.c.expires_at.is_(None), videos.c.expires_at > now)


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_write", True) else "BEGIN")


def _sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions begin as BEGIN IMMEDIATE (the "begin" event)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _reason(exc: SQLAlchemyError) -> str:
    """A driver's error as one line, without the connection string."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    reason = lines[0] if lines else type(orig).__name__
    return reason.replace(os.environ.get("PGPASSWORD", "\0"), "***")
