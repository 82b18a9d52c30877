"""Several replicas of the real server sharing one PostgreSQL job store and one S3 bucket (moto), as behind a load
balancer: any replica answers any job or link, a dead replica's job runs elsewhere, a DELETE anywhere stops the job
where it runs, and webhooks arrive once, signed, even through a failing receiver."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from services import postgres_server, s3_server, webhook_receiver

from .conftest import ServerURL, client_for, mean_step_seconds, running_server

SECRET = "whsec_" + "c2VjcmV0LW9mLXRoZS10ZXN0cy0xMjM0NTY3ODkw"  # base64 of a 30-byte key
LEASE = 3.0  # seconds: a dead replica's job is taken over within this (plus a poll)
MODEL = ("--model-path", "tiny:wan-t2v")
LONG = {"size": "256x256", "seconds": "4", "extra_body": {"num_inference_steps": 200}}  # runs for many seconds
SHORT = {"size": "64x64", "extra_body": {"num_inference_steps": 2}}


@pytest.fixture(scope="module")
def cluster():
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def bucket():
    with s3_server() as service:
        yield service


_counter = iter(range(1_000_000))


@pytest.fixture
def shared(cluster, bucket, monkeypatch) -> tuple[str, ...]:
    """The flags of a replica: a fresh database of the cluster and a fresh prefix of the bucket (per test); the
    bucket's credentials in the environment the servers inherit."""
    name = f"replicas_{os.getpid()}_{next(_counter)}"
    database = cluster.new_database(name).dsn
    for key, value in bucket.env.items():
        monkeypatch.setenv(key, value)
    return ("--job-store", database, "--object-store", f"s3://{bucket.bucket}/{name}", "--job-lease", str(LEASE))


@contextlib.contextmanager
def replicas(count: int, *args: str) -> Iterator[list[ServerURL]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_server(*MODEL, *args)) for _ in range(count)]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)


def log_of(url: ServerURL) -> str:
    return url.log.read_text(errors="replace")


def test_any_replica_answers_any_job_and_link(shared):
    with replicas(2, *shared) as (a, b):
        client_a, client_b = client_for(a), client_for(b)
        on_a = client_a.videos.create(prompt="made on a", **SHORT)
        on_b = client_b.videos.create(prompt="made on b", **SHORT)
        done = wait_for(lambda: (v := client_b.videos.retrieve(on_a.id)).status == "completed" and v, 60,
                        "the job of A completed, seen from B")
        assert done.progress == 100
        wait_for(lambda: client_a.videos.retrieve(on_b.id).status == "completed", 60, "B's job, seen from A")
        for client in (client_a, client_b):  # listing and paging see both replicas' jobs
            assert [v.id for v in client.videos.list()] == [on_b.id, on_a.id]
            page = client.videos.list(limit=1, order="asc")
            assert [v.id for v in page.data] == [on_a.id] and page.has_more
        mp4 = client_b.videos.download_content(on_a.id).content
        assert mp4[4:8] == b"ftyp" and mp4 == client_a.videos.download_content(on_a.id).content
        thumbnail = client_b.videos.download_content(on_a.id, variant="thumbnail")
        assert thumbnail.content[:4] == b"RIFF"
        remix = client_b.videos.remix(on_a.id, prompt="remixed on b")
        wait_for(lambda: client_a.videos.retrieve(remix.id).status == "completed", 60, "the remix")
        assert client_b.videos.delete(on_a.id).deleted
        with pytest.raises(openai.NotFoundError):
            client_a.videos.retrieve(on_a.id)
        with pytest.raises(openai.NotFoundError):
            client_a.videos.download_content(on_a.id)


def test_a_url_image_made_on_one_replica_downloads_from_another_and_after_a_restart(shared):
    args = ("--model-path", "tiny:flux", *shared)
    with running_server(*args) as a, running_server(*args) as b:
        link = client_for(a).images.generate(prompt="a lighthouse", size="64x64", response_format="url").data[0].url
        assert link.startswith(f"{a}/v1/images/files/")
        from_b = httpx.get(link.replace(a, b), timeout=10)
        assert from_b.status_code == 200 and from_b.headers["content-type"] == "image/png"
        assert from_b.content == httpx.get(link, timeout=10).content
        a.process.terminate()
        a.process.wait(30)
        with running_server(*args) as restarted:
            again = httpx.get(link.replace(a, restarted), timeout=10)
            assert again.status_code == 200 and again.content == from_b.content
        assert httpx.get(link.replace(a, b)[:-10] + "A" * 6 + link[-4:], timeout=10).status_code == 404


def test_presigned_links_point_at_the_bucket(shared, bucket):
    with running_server("--model-path", "tiny:flux", *shared, "--presigned-urls") as a:
        link = client_for(a).images.generate(prompt="x", size="64x64", response_format="url").data[0].url
        assert link.startswith(bucket.endpoint_url) and "Signature=" in link
        assert httpx.get(link, timeout=10).content[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_killed_replicas_job_runs_on_a_survivor_within_the_lease(shared):
    with replicas(2, *shared) as (a, b):
        client_a, client_b = client_for(a), client_for(b)
        job = client_a.videos.create(prompt="survives its replica", **{**LONG, "extra_body": {
            "num_inference_steps": 30}})
        wait_for(lambda: client_b.videos.retrieve(job.id).status == "in_progress", 30, "started on A")
        assert f"video {job.id} queued" in log_of(a)
        a.process.kill()  # kill -9: no shutdown, no release
        killed_at = time.monotonic()
        wait_for(lambda: f"video {job.id} claimed (attempt 2)" in log_of(b), LEASE + 10, "claimed by B")
        assert time.monotonic() - killed_at < LEASE + 5
        done = wait_for(lambda: (v := client_b.videos.retrieve(job.id)).status in ("completed", "failed") and v,
                        120, "finished on B")
        assert done.status == "completed", done.error
        assert client_b.videos.download_content(job.id).content[4:8] == b"ftyp"


def test_a_busy_replica_leaves_jobs_to_a_free_one_and_a_stopping_one_gives_its_jobs_back(shared):
    with replicas(2, *shared, "--shutdown-timeout", "1") as (a, b):
        client_a, client_b = client_for(a), client_for(b)
        running = client_a.videos.create(prompt="long", **{**LONG, "extra_body": {"num_inference_steps": 40}})
        wait_for(lambda: client_a.videos.retrieve(running.id).status == "in_progress", 30, "started on A")
        spare = client_a.videos.create(prompt="for b", **SHORT)  # A's pipeline is busy: B, idle, claims it at once
        wait_for(lambda: client_b.videos.retrieve(spare.id).status == "completed", 30, "the spare job, on B")
        assert f"video {spare.id} claimed" in log_of(b) and client_a.videos.retrieve(running.id).progress < 90
        a.process.terminate()  # SIGTERM: A gives its running job back; B runs it
        assert a.process.wait(30) == 0
        for job in (running,):
            done = wait_for(lambda job=job: (v := client_b.videos.retrieve(job.id)).status in ("completed", "failed")
                            and v, 120, "given back and finished on B")
            assert done.status == "completed", done.error
            assert f"video {job.id} claimed" in log_of(b)


def test_a_job_whose_replicas_keep_dying_fails_as_server_restarted(shared):
    with replicas(1, *shared, "--job-attempts", "1") as (a,):
        job = client_for(a).videos.create(prompt="dies", **LONG)
        wait_for(lambda: client_for(a).videos.retrieve(job.id).status == "in_progress", 30, "started")
        a.process.kill()
        with running_server(*MODEL, *shared, "--job-attempts", "1") as b:
            failed = wait_for(lambda: (v := client_for(b).videos.retrieve(job.id)).status == "failed" and v,
                              LEASE + 10, "failed after its lease")
            assert failed.error.code == "server_restarted"


def test_a_delete_on_one_replica_stops_the_job_running_on_another(shared):
    with replicas(2, *shared) as (a, b):
        client_a, client_b = client_for(a), client_for(b)
        job = client_a.videos.create(prompt="stopped from b", **LONG)
        wait_for(lambda: client_b.videos.retrieve(job.id).progress > 0, 60, "progress seen from B")
        assert client_b.videos.delete(job.id).deleted
        deleted_at = time.monotonic()
        wait_for(lambda: f"video {job.id} deleted" in log_of(a), 5, "A stopped the job")
        stopped_after = time.monotonic() - deleted_at
        step = mean_step_seconds(a)
        # At its next step (announced at once), not at a lease renewal: one step, plus the log line's way here.
        assert stopped_after < step + 0.5, (stopped_after, step)
        # A's pipeline is free again: a new job starts there at once.
        nxt = client_a.videos.create(prompt="next", **SHORT)
        wait_for(lambda: client_a.videos.retrieve(nxt.id).status == "completed", 30, "the next job")


def test_webhooks_arrive_once_signed_even_when_the_receiver_fails_twice(shared):
    with webhook_receiver(fail_first=2) as receiver, \
            replicas(2, *shared, "--webhook-url", receiver.url, "--webhook-secret", SECRET,
                     "--allow-private-urls") as (a, b):
        job = client_for(a).videos.create(prompt="announced", **SHORT)
        deliveries = receiver.wait_for(3, timeout=30)
        assert [d.status for d in deliveries] == [500, 500, 200]
        assert len({d.headers["webhook-id"] for d in deliveries}) == 1
        sdk = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1", max_retries=0)
        event = sdk.webhooks.unwrap(deliveries[-1].body, deliveries[-1].headers, secret=SECRET)
        assert event.type == "video.completed" and event.data.id == job.id
        assert deliveries[-1].json()["object"] == "event"
        time.sleep(3)  # nothing more arrives: each event once
        assert len(receiver.deliveries) == 3


def test_bad_replica_configuration_fails_at_start_with_a_clear_message(tmp_path, bucket, monkeypatch):
    for key, value in bucket.env.items():
        monkeypatch.setenv(key, value)
    cases = [
        (["--job-store", "postgresql://u:pw-never-shown@127.0.0.1:9/db"], 1, "cannot start: postgresql://u:***@"),
        (["--object-store", "s3://no-such-bucket/x"], 1, "the bucket does not exist"),
        (["--job-store", "mysql://u@h/db"], 2, "--job-store must be sqlite or a postgresql://"),
        (["--webhook-url", "http://127.0.0.1:9/hook", "--webhook-secret", SECRET], 2, "--allow-private-urls"),
        (["--webhook-url", "https://example.com/hook"], 2, "--webhook-secret"),
    ]
    for args, code, message in cases:
        done = subprocess.run([sys.executable, "-m", "openai_dit", "serve", *MODEL, "--port", "0", "--data-dir",
                               str(tmp_path), *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == code and message in done.stderr, (args, done.returncode, done.stderr[-2000:])
        assert "pw-never-shown" not in done.stderr and "Traceback" not in done.stderr
