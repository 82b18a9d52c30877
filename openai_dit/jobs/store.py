"""Durable video jobs: records in SQLite, files beside them, in the server's data directory.

Layout: `<data-dir>/videos.sqlite3` and `<data-dir>/videos/<storage>/` with `video.mp4`, `thumbnail.webp`,
`spritesheet.jpg` and `reference.png` (the input image, kept for remixes and resumed jobs). `<storage>` is a random
name chosen by the server and stored in the record: a client's id is only ever a SQL parameter, never a path.
One server holds the directory at a time (an exclusive lock, released when the process ends).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from ..errors import StorageUnavailable
from .records import FINISHED, VideoRecord, VideoSettings, is_video_id

__all__ = ["DataDirInUse", "VideoStore", "storage_errors"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    expires_at INTEGER,
    remixed_from_video_id TEXT,
    error_code TEXT,
    error_message TEXT,
    settings TEXT NOT NULL,
    storage TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS videos_expiry ON videos (expires_at);
"""
class DataDirInUse(RuntimeError):
    """Another server process holds the data directory."""


_COLUMNS = ("seq", "id", "model", "status", "created_at", "completed_at", "expires_at", "remixed_from_video_id",
            "error_code", "error_message", "settings", "storage", "bytes")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM videos"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"  # not expired at the time given


@contextmanager
def storage_errors() -> Iterator[None]:
    """A write the disk or the database refuses (full, read-only, failing) is a StorageUnavailable."""
    try:
        yield
    except (sqlite3.OperationalError, OSError) as exc:
        raise StorageUnavailable.of(exc) from exc


def _record(row: tuple) -> VideoRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["settings"] = msgspec.json.decode(values["settings"], type=VideoSettings)
    return VideoRecord(**values)


class VideoStore:
    """The job table and the job folders. Thread-safe; every method is short (no file is read here)."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.root = Path(data_dir)
        self.files_root = self.root / "videos"
        self.files_root.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.root / "lock", "w")  # noqa: SIM115 - held for the store's lifetime
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise DataDirInUse(f"{self.root} is in use by another openai-dit server; give each server its own "
                               "--data-dir") from None
        self._db = sqlite3.connect(self.root / "videos.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise RuntimeError(f"{self.root} was written by a newer openai-dit (schema {version})")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        self._mutex = threading.Lock()

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        self._lock_file.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._mutex, storage_errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._mutex, storage_errors():
            return self._db.execute(sql, params).fetchall()

    def writable(self) -> bool:
        """Whether the jobs' folder takes a write now (a probe file written and removed)."""
        probe = self.files_root / ".write-probe"
        try:
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
            return True
        except OSError:
            with contextlib.suppress(OSError):
                probe.unlink(missing_ok=True)
            return False

    # --- files -----------------------------------------------------------------------------------------------
    def folder(self, record: VideoRecord) -> Path:
        return self.files_root / record.storage

    def new_folder(self) -> str:
        storage = secrets.token_hex(16)
        with storage_errors():
            (self.files_root / storage).mkdir()
        return storage

    def remove_folder(self, storage: str) -> None:
        shutil.rmtree(self.files_root / storage, ignore_errors=True)

    def remove_orphan_folders(self) -> int:
        """Folders no record names (left by a crash between writing files and recording them)."""
        known = {row[0] for row in self._query("SELECT storage FROM videos")}
        orphans = [p for p in self.files_root.iterdir() if p.is_dir() and p.name not in known]  # not the probe file
        for path in orphans:
            shutil.rmtree(path, ignore_errors=True)
        return len(orphans)

    # --- records ---------------------------------------------------------------------------------------------
    def insert(self, record: VideoRecord) -> None:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO videos (id, model, status, created_at, remixed_from_video_id, settings, storage, bytes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.model, record.status, record.created_at, record.remixed_from_video_id,
                 msgspec.json.encode(record.settings).decode(), record.storage, record.bytes))
            assert cursor.lastrowid is not None
            record.seq = cursor.lastrowid

    def get(self, video_id: str) -> VideoRecord | None:
        """The live record of `video_id`; None for unknown, malformed or expired ids."""
        if not is_video_id(video_id):
            return None
        rows = self._query(f"{_SELECT} WHERE id = ? AND {_LIVE}", (video_id, int(time.time())))
        return _record(rows[0]) if rows else None

    def page(self, *, after: VideoRecord | None, limit: int, descending: bool) -> tuple[list[VideoRecord], bool]:
        """Up to `limit` live records after `after` in creation order; and whether more follow."""
        now = int(time.time())
        where, params = _LIVE, [now]
        if after is not None:
            where += " AND seq < ?" if descending else " AND seq > ?"
            params.append(after.seq)
        rows = self._query(f"{_SELECT} WHERE {where} ORDER BY seq "
                           f"{'DESC' if descending else 'ASC'} LIMIT ?", (*params, limit + 1))
        return [_record(row) for row in rows[:limit]], len(rows) > limit

    def set_status(self, video_id: str, status: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE videos SET status = ? WHERE id = ? AND status NOT IN (?, ?)",
                       (status, video_id, *FINISHED))

    def finish(self, video_id: str, *, ttl_seconds: int, added_bytes: int = 0, error_code: str | None = None,
               error_message: str | None = None) -> bool:
        """Mark completed (no error) or failed; False when the record is gone (deleted meanwhile)."""
        now = int(time.time())
        status = "failed" if error_code else "completed"
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE videos SET status = ?, completed_at = ?, expires_at = ?, error_code = ?, error_message = ?, "
                "bytes = bytes + ? WHERE id = ?",
                (status, now, now + ttl_seconds, error_code, error_message, added_bytes, video_id))
            return cursor.rowcount == 1

    def delete(self, video_id: str) -> VideoRecord | None:
        """Remove the record (its folder is the caller's to remove); the record, or None if there was none."""
        record = self.get(video_id)
        if record is None:
            return None
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM videos WHERE id = ?", (video_id,)).rowcount
        return record if deleted else None

    def recover(self, *, ttl_seconds: int) -> list[VideoRecord]:
        """After a start: jobs that were running when the last process died failed (they may have caused it);
        queued ones are returned, oldest first, to run again."""
        now = int(time.time())
        with self._transaction() as db:
            db.execute("UPDATE videos SET status = 'failed', completed_at = ?, expires_at = ?, error_code = "
                       "'server_restarted', error_message = 'The server stopped while this video was being "
                       "generated; create it again.' WHERE status = 'in_progress'", (now, now + ttl_seconds))
        rows = self._query(f"{_SELECT} WHERE status = 'queued' ORDER BY seq")
        return [_record(row) for row in rows]

    def remove_expired_and_excess(self, *, max_bytes: int, max_jobs: int) -> list[str]:
        """Delete expired records, then the oldest finished ones while over the bounds. Returns their folders."""
        now = int(time.time())
        removed: list[str] = []
        with self._transaction() as db:
            expired = db.execute("SELECT id, storage FROM videos WHERE expires_at IS NOT NULL AND expires_at <= ?",
                                 (now,)).fetchall()
            total_bytes, total_jobs = db.execute(f"SELECT COALESCE(SUM(bytes), 0), COUNT(*) FROM videos WHERE {_LIVE}",
                                                 (now,)).fetchone()
            victims = list(expired)
            if total_bytes > max_bytes or total_jobs > max_jobs:
                finished = db.execute("SELECT id, storage, bytes FROM videos WHERE status IN (?, ?) AND "
                                      "expires_at > ? ORDER BY seq", (*FINISHED, now)).fetchall()
                for video_id, storage, size in finished:
                    if total_bytes <= max_bytes and total_jobs <= max_jobs:
                        break
                    victims.append((video_id, storage))
                    total_bytes -= size
                    total_jobs -= 1
            for video_id, storage in victims:
                db.execute("DELETE FROM videos WHERE id = ?", (video_id,))
                removed.append(storage)
        return removed
