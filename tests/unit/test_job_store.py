"""The job store on SQLite and on a real PostgreSQL: migrations, claims under leases, attempts, deletions announced
to the owner, the webhook outbox. Two JobStore objects on one database stand for two replicas."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa
from services import postgres_server

from openai_dit.jobs import schema
from openai_dit.jobs.notify import Listener
from openai_dit.jobs.records import VideoRecord, VideoSettings, new_video_id
from openai_dit.jobs.store import CHANNEL, JobStore, JobStoreUnreachable, job_store_url

SETTINGS = VideoSettings(task="text_to_video", prompt="a boat", width=64, height=64, num_frames=9, fps=8,
                         seconds="1.12", seed=1, num_inference_steps=2)


@pytest.fixture(scope="module")
def cluster():
    with postgres_server() as url:
        yield url


_databases = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty store of each kind (a new database of the module's cluster for PostgreSQL)."""
    if request.param == "sqlite":
        return "sqlite"
    return request.getfixturevalue("cluster").new_database(f"jobs_{next(_databases)}")


def open_store(url: str, data_dir, **kwargs) -> JobStore:
    return JobStore(job_store_url(url, str(data_dir)), data_dir=str(data_dir), **kwargs)


def new_record(**changes) -> VideoRecord:
    values = dict(id=new_video_id(), model="m", status="queued", created_at=int(time.time()), settings=SETTINGS,
                  storage="s" * 32)
    values.update(changes)
    return VideoRecord(**values)


def claim(store: JobStore, owner: str, lease: float = 30.0, attempts: int = 2):
    return store.claim(owner, lease_seconds=lease, max_attempts=attempts, ttl_seconds=60)


def test_migrations_create_what_the_queries_use(store_url, tmp_path):
    store = open_store(store_url, tmp_path)
    try:
        inspector = sa.inspect(store.engine)
        for table in (schema.videos, schema.webhook_events):
            assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.c.keys())
        with store.engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version FROM schema_migrations ORDER BY version")).scalars()
            assert list(versions) == list(range(1, schema.LATEST_VERSION + 1))
    finally:
        store.close()
    open_store(store_url, tmp_path).close()  # a second start migrates nothing


def test_a_first_release_sqlite_file_is_migrated_with_its_jobs(tmp_path):
    db = sqlite3.connect(tmp_path / "videos.sqlite3")
    db.executescript("""
        CREATE TABLE videos (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, model TEXT NOT NULL,
            status TEXT NOT NULL, created_at INTEGER NOT NULL, completed_at INTEGER, expires_at INTEGER,
            remixed_from_video_id TEXT, error_code TEXT, error_message TEXT, settings TEXT NOT NULL,
            storage TEXT NOT NULL, bytes INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX videos_expiry ON videos (expires_at);
        PRAGMA user_version=1;""")
    old_id = new_video_id()
    db.execute("INSERT INTO videos (id, model, status, created_at, settings, storage) VALUES (?, 'm', 'completed', "
               "1, ?, 'x')", (old_id, '{"task":"text_to_video","prompt":"p","width":64,"height":64,"num_frames":9,'
                                      '"fps":8,"seconds":"1","seed":1,"num_inference_steps":2}'))
    db.commit()
    db.close()
    store = open_store("sqlite", tmp_path)
    try:
        record = store.get(old_id)
        assert record is not None and record.status == "completed" and record.attempts == 0
        store.insert(new_record(), owner=None, lease_seconds=0)  # the new columns work
    finally:
        store.close()


def test_a_newer_schema_is_refused(tmp_path):
    open_store("sqlite", tmp_path).close()
    db = sqlite3.connect(tmp_path / "videos.sqlite3")
    db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (schema.LATEST_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(schema.SchemaTooNew, match="newer openai-dit"):
        open_store("sqlite", tmp_path)


def test_claims_leases_and_attempts(store_url, tmp_path):
    a = open_store(store_url, tmp_path / "a", webhooks=True)
    b = a if store_url == "sqlite" else open_store(store_url, tmp_path / "b")
    try:
        first, second = new_record(), new_record()
        a.insert(first, owner="A", lease_seconds=30)
        a.insert(second, owner=None, lease_seconds=0)
        assert a.waiting() == 1
        taken = claim(b, "B")
        assert taken.claimed is not None and taken.claimed.id == second.id and taken.failed == []
        assert claim(b, "B").claimed is None  # the first is A's, under a live lease
        a.started(first.id, "A", lease_seconds=30)
        assert a.renew("A", {first.id: 40}, 30) == set()
        assert b.get(first.id).progress == 40 and b.get(first.id).status == "in_progress"
        a.renew("A", {first.id: 50}, lease_seconds=-1)
        if store_url == "sqlite":  # one server: its own jobs are never taken over (recover() frees a dead one's)
            assert claim(b, "B").claimed is None
            return
        # A dies: its lease runs out, and B takes the job over (attempt 2 of 2) ...
        again = claim(b, "B")
        assert again.claimed is not None and again.claimed.id == first.id and again.claimed.attempts == 1
        assert a.renew("A", {first.id: 60}, 30) == {first.id}  # A (were it alive) learns it lost the job
        b.started(first.id, "B", lease_seconds=30)
        # ... and B dies too: after two starts the job fails as server_restarted, with its webhook event.
        b.renew("B", {first.id: 10}, lease_seconds=-1)
        settled = claim(a, "C")
        assert settled.failed == [first.id]
        failed = a.get(first.id)
        assert failed.status == "failed" and failed.error_code == "server_restarted" and failed.owner is None
        events = a.claim_webhook_events(limit=10, hold_seconds=30)
        assert [(e.type, e.video_id) for e in events] == [("video.failed", first.id)]
    finally:
        a.close()
        if b is not a:
            b.close()


def test_skip_locked_gives_each_replica_its_own_job(cluster, tmp_path):
    url = cluster
    stores = [open_store(url, tmp_path / str(i)) for i in range(4)]
    try:
        with stores[0].engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE videos"))
        records = [new_record() for _ in range(8)]
        for record in records:
            stores[0].insert(record, owner=None, lease_seconds=0)
        claimed: list[str] = []
        lock = threading.Lock()

        def take(store: JobStore, owner: str) -> None:
            while (found := claim(store, owner).claimed) is not None:
                with lock:
                    claimed.append(found.id)

        threads = [threading.Thread(target=take, args=(store, f"r{i}")) for i, store in enumerate(stores)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed) == sorted(r.id for r in records)  # each once
    finally:
        for store in stores:
            store.close()


def test_release_gives_a_job_back_without_counting_an_attempt(store_url, tmp_path):
    store = open_store(store_url, tmp_path)
    try:
        record = new_record()
        store.insert(record, owner="A", lease_seconds=30)
        store.started(record.id, "A", 30)
        store.release(record.id, "A")
        released = store.get(record.id)
        assert released.status == "queued" and released.owner is None and released.attempts == 0
        assert claim(store, "B", attempts=1).claimed.id == record.id
    finally:
        store.close()


def test_sqlite_recovery_fails_running_jobs_and_frees_queued_ones(tmp_path):
    store = open_store("sqlite", tmp_path)
    running, queued = new_record(), new_record()
    store.insert(running, owner="old", lease_seconds=30)
    store.insert(queued, owner="old", lease_seconds=30)
    store.started(running.id, "old", 30)
    store.close()
    store = open_store("sqlite", tmp_path)
    try:
        assert store.recover(ttl_seconds=60, max_attempts=1) == 1
        assert store.get(running.id).error_code == "server_restarted"
        assert store.get(queued.id).owner is None and claim(store, "new").claimed.id == queued.id
    finally:
        store.close()


def test_a_deletion_is_announced_to_the_owner(cluster, tmp_path):
    store = open_store(cluster, tmp_path)
    notices: list[str] = []
    loop = asyncio.new_event_loop()
    listener = Listener(store.dsn, CHANNEL, notices.append, loop)
    listener.start()
    try:
        record = new_record()
        store.insert(record, owner="A", lease_seconds=30)
        unowned = new_record()
        deadline = time.monotonic() + 10
        while not notices and time.monotonic() < deadline:  # the listener is up once it hears anything
            store.insert(new_record(), owner=None, lease_seconds=0)
            loop.run_until_complete(asyncio.sleep(0.2))
        assert store.delete(record.id) is not None
        store.insert(unowned, owner=None, lease_seconds=0)
        deadline = time.monotonic() + 10
        while f"queued:{unowned.id}" not in notices and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.05))
        assert f"deleted:{record.id}" in notices and f"queued:{unowned.id}" in notices
        assert store.delete(record.id) is None
    finally:
        listener.stop()
        loop.close()
        store.close()


def test_webhook_outbox_holds_retries_and_delivers(store_url, tmp_path):
    store = open_store(store_url, tmp_path, webhooks=True)
    try:
        record = new_record()
        store.insert(record, owner="A", lease_seconds=30)
        assert not store.finish(record.id, owner="B", ttl_seconds=60)  # not B's to finish
        assert store.finish(record.id, owner="A", ttl_seconds=60)
        assert not store.finish(record.id, owner="A", ttl_seconds=60)  # one outcome, one event
        (event,) = store.claim_webhook_events(limit=10, hold_seconds=30)
        assert event.type == "video.completed" and event.video_id == record.id and event.attempts == 0
        assert store.claim_webhook_events(limit=10, hold_seconds=30) == []  # held while it is delivered
        store.webhook_failed(event.id, attempts=1, retry_at=time.time() - 1, error="HTTP 500")
        (retry,) = store.claim_webhook_events(limit=10, hold_seconds=30)
        assert retry.id == event.id and retry.attempts == 1
        store.webhook_delivered(event.id)
        assert store.claim_webhook_events(limit=10, hold_seconds=0) == []
        store.remove_old_events(before=time.time() + 1)
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(schema.webhook_events)).scalar() == 0
    finally:
        store.close()


def test_an_unreachable_database_is_a_clear_error(tmp_path):
    with socket_closed_port() as port:
        started = time.monotonic()
        with pytest.raises(JobStoreUnreachable) as caught:
            open_store(f"postgresql://u:secret-pw@127.0.0.1:{port}/db", tmp_path)
    message = str(caught.value)
    assert "postgresql://u:***@127.0.0.1" in message and "secret-pw" not in message
    assert time.monotonic() - started < 15


def test_job_store_urls():
    assert job_store_url("postgresql://u@h/db", "/d").drivername == "postgresql+psycopg"
    assert job_store_url("sqlite", "/d").database == "/d/videos.sqlite3"
    for bad in ("mysql://u@h/db", "nonsense", "sqlite:///x.db"):
        with pytest.raises(ValueError, match="--job-store"):
            job_store_url(bad, "/d")


class socket_closed_port:
    """A port on 127.0.0.1 that nothing listens on (bound, never listening, while in use)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self._sock.close()
