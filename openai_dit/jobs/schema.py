"""The job store's tables (SQLAlchemy Core, one schema for SQLite and PostgreSQL) and their versioned migrations.

A migration is a numbered step applied once, in order, inside one transaction, and recorded in `schema_migrations`;
a store written by a newer openai-dit (a version this one does not know) is refused rather than altered. On
PostgreSQL the migration holds an advisory lock, so that replicas starting together migrate once. A SQLite file of
the first release (no `schema_migrations`, `PRAGMA user_version` 1) counts as version 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    inspect,
    select,
    text,
)

__all__ = ["LATEST_VERSION", "SchemaTooNew", "metadata", "migrate", "videos", "webhook_events"]


class SchemaTooNew(RuntimeError):
    """The store was written by a newer openai-dit."""


# The key: BIGINT on PostgreSQL, SQLite's INTEGER PRIMARY KEY (its rowid, never reused with AUTOINCREMENT).
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

# The current shape, for queries. The migrations below are what creates it; tests check that they agree.
videos = Table(
    "videos", metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", Text, nullable=False, unique=True),
    Column("model", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("completed_at", BigInteger),
    Column("expires_at", BigInteger),
    Column("remixed_from_video_id", Text),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("settings", Text, nullable=False),
    Column("storage", Text, nullable=False),
    Column("bytes", BigInteger, nullable=False, server_default="0"),
    # version 2: shared by replicas
    Column("owner", Text),  # the replica that runs it (None: any replica may claim it)
    Column("lease_until", Float),  # Unix time; past it, the owner is presumed dead
    Column("attempts", Integer, nullable=False, server_default="0"),  # times it started running
    Column("progress", Integer, nullable=False, server_default="0"),  # as its owner last reported it
    sqlite_autoincrement=True,
)

webhook_events = Table(
    "webhook_events", metadata,
    Column("id", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("video_id", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),  # also hides an event while a replica delivers it
    Column("delivered_at", Float),
    Column("abandoned_at", Float),
    Column("last_error", Text),
)

_migrations_table = Table(
    "schema_migrations", MetaData(),
    Column("version", Integer, primary_key=True),
    Column("applied_at", BigInteger, nullable=False),
)


def _v1(conn: Connection) -> None:
    """The first release's table (as SQLite files of that release hold it)."""
    v1 = MetaData()
    Table("videos", v1,
          Column("seq", _SEQ, primary_key=True, autoincrement=True),
          Column("id", Text, nullable=False, unique=True),
          Column("model", Text, nullable=False),
          Column("status", Text, nullable=False),
          Column("created_at", BigInteger, nullable=False),
          Column("completed_at", BigInteger),
          Column("expires_at", BigInteger),
          Column("remixed_from_video_id", Text),
          Column("error_code", Text),
          Column("error_message", Text),
          Column("settings", Text, nullable=False),
          Column("storage", Text, nullable=False),
          Column("bytes", BigInteger, nullable=False, server_default="0"),
          Index("videos_expiry", "expires_at"),
          sqlite_autoincrement=True)
    v1.create_all(conn)


def _v2(conn: Connection) -> None:
    """Replicas: the owner and its lease, attempts, progress; the webhook outbox."""
    float_type = "REAL" if conn.dialect.name == "sqlite" else "DOUBLE PRECISION"
    for ddl in ("owner TEXT", f"lease_until {float_type}", "attempts INTEGER NOT NULL DEFAULT 0",
                "progress INTEGER NOT NULL DEFAULT 0"):
        conn.execute(text(f"ALTER TABLE videos ADD COLUMN {ddl}"))
    # A job the first release left running (its server died) has started once: recover() fails it, as then.
    conn.execute(text("UPDATE videos SET attempts = 1 WHERE status = 'in_progress'"))
    conn.execute(text("CREATE INDEX videos_claim ON videos (status, seq)"))
    webhook_events.create(conn)
    conn.execute(text("CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) "
                      "WHERE delivered_at IS NULL AND abandoned_at IS NULL"))


_MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2]
LATEST_VERSION = len(_MIGRATIONS)
_LOCK_KEY = 0x6F61_6964  # the advisory lock of openai-dit's migrations ("oaid")


def _current_version(conn: Connection) -> int:
    tables = set(inspect(conn).get_table_names())
    if "schema_migrations" in tables:
        return conn.execute(select(_migrations_table.c.version).order_by(
            _migrations_table.c.version.desc()).limit(1)).scalar() or 0
    if "videos" in tables:  # the first release's SQLite file
        return 1
    return 0


def migrate(conn: Connection) -> int:
    """Bring the schema to LATEST_VERSION within the caller's transaction; returns the version found."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    found = _current_version(conn)
    if found > LATEST_VERSION:
        raise SchemaTooNew(f"the job store was written by a newer openai-dit (schema {found}; this one knows "
                           f"{LATEST_VERSION})")
    _migrations_table.create(conn, checkfirst=True)
    for version in range(found + 1, LATEST_VERSION + 1):
        _MIGRATIONS[version - 1](conn)
        conn.execute(_migrations_table.insert().values(version=version, applied_at=int(time.time())))
    if found == 1 and not conn.execute(select(_migrations_table.c.version).where(
            _migrations_table.c.version == 1)).first():
        conn.execute(_migrations_table.insert().values(version=1, applied_at=int(time.time())))
    return found
