"""The test services (tests/services.py) work: PostgreSQL row locks, moto S3 with pre-signed URLs, the webhook receiver.

Each PostgreSQL/S3 test skips only where the service is not installed (see tests/services.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import time

import httpx
import pytest
from services import postgres_server, s3_server, webhook_receiver

pytestmark = pytest.mark.slow  # starts PostgreSQL, an S3 server and a webhook receiver


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def s3():
    with s3_server() as service:
        yield service


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_postgres_skip_locked_between_two_connections(pg_url):
    sa = pytest.importorskip("sqlalchemy")
    assert pg_url.startswith("postgresql+psycopg://") and "@127.0.0.1:" in pg_url
    engine = sa.create_engine(pg_url)
    jobs = sa.Table("jobs", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("status", sa.Text, nullable=False))
    try:
        jobs.metadata.drop_all(engine)
        jobs.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(jobs.insert(), [{"id": 1, "status": "queued"}, {"id": 2, "status": "queued"}])
        claim = (sa.select(jobs.c.id).where(jobs.c.status == "queued").order_by(jobs.c.id).limit(1)
                 .with_for_update(skip_locked=True))
        with engine.connect() as first, engine.connect() as second:
            first_tx, second_tx = first.begin(), second.begin()
            assert first.execute(claim).scalar_one() == 1
            assert second.execute(claim).scalar_one() == 2  # row 1 is locked by `first`: skipped, not waited on
            assert second.execute(claim.where(jobs.c.id == 1)).first() is None
            with pytest.raises(sa.exc.OperationalError, match="could not obtain lock"):
                second.execute(sa.select(jobs.c.id).where(jobs.c.id == 1).with_for_update(nowait=True))
            second_tx.rollback()
            first_tx.commit()
        with engine.connect() as third:
            assert third.execute(claim).scalar_one() == 1  # the locks ended with the transactions
    finally:
        engine.dispose()


def test_postgres_settings_and_privileges(pg_url):
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(pg_url.dsn) as conn:
        settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                                     "('fsync', 'listen_addresses', 'port', 'unix_socket_directories')").fetchall())
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert settings == {"fsync": "off", "listen_addresses": "127.0.0.1", "port": str(pg_url.port),
                            "unix_socket_directories": ""}
        if os.path.exists(f"/proc/{backend}/status"):  # Linux: the backend's real user
            with open(f"/proc/{backend}/status") as status:
                uid = next(int(line.split()[1]) for line in status if line.startswith("Uid:"))
            assert uid != 0  # PostgreSQL refuses root; as root the helper drops to an unprivileged account
            if os.geteuid() != 0:
                assert uid == os.geteuid()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=pg_url.port, user="openai_dit", password="wrong",
                        dbname="openai_dit_test", connect_timeout=5)


def test_postgres_cluster_removed_even_on_failure():
    with pytest.raises(RuntimeError, match="boom"):
        with postgres_server() as url:
            assert url.directory.is_dir() and _port_open(url.port)
            raise RuntimeError("boom")
    assert not url.directory.exists()
    assert not _port_open(url.port)


def test_s3_put_get_presigned_delete(s3):
    client = s3.client()
    client.head_bucket(Bucket=s3.bucket)
    body = os.urandom(4096)
    client.put_object(Bucket=s3.bucket, Key="videos/a/video.mp4", Body=body, ContentType="video/mp4")
    got = client.get_object(Bucket=s3.bucket, Key="videos/a/video.mp4")
    assert got["Body"].read() == body and got["ContentType"] == "video/mp4"

    url = client.generate_presigned_url("get_object", Params={"Bucket": s3.bucket, "Key": "videos/a/video.mp4"},
                                        ExpiresIn=60)
    assert url.startswith(s3.endpoint_url + "/" + s3.bucket + "/") and "X-Amz-Signature=" in url
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200 and response.content == body
    ranged = httpx.get(url, headers={"Range": "bytes=0-9"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == body[:10]

    client.delete_object(Bucket=s3.bucket, Key="videos/a/video.mp4")
    missing = client.generate_presigned_url("get_object", Params={"Bucket": s3.bucket, "Key": "videos/a/video.mp4"})
    assert httpx.get(missing, timeout=10).status_code == 404
    with pytest.raises(client.exceptions.ClientError):
        client.head_bucket(Bucket="no-such-bucket")
    assert set(s3.env) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3"}


def test_s3_reset_leaves_an_empty_bucket(s3):
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="leftover", Body=b"x")
    s3.reset()
    assert client.list_objects_v2(Bucket=s3.bucket)["KeyCount"] == 0


def test_webhook_receiver_fails_the_first_deliveries_then_records():
    with webhook_receiver(fail_first=2) as hooks:
        statuses = [httpx.post(hooks.url, content=b'{"n": %d}' % i, headers={"webhook-id": f"msg_{i}"},
                               timeout=10).status_code for i in range(3)]
        assert statuses == [500, 500, 200]
        deliveries = hooks.wait_for(3)
        assert [d.json()["n"] for d in deliveries] == [0, 1, 2]
        assert [d.headers["webhook-id"] for d in hooks.succeeded] == ["msg_2"]
        assert deliveries[0].method == "POST" and deliveries[0].path == "/webhook"
        with pytest.raises(AssertionError, match="expected 2 successful"):
            hooks.wait_for(2, succeeded=True, timeout=0.2)


def test_webhook_receiver_keeps_exact_bytes_for_signature_checks():
    """What the receiver records verifies with the openai SDK, as a Standard Webhooks receiver would."""
    openai = pytest.importorskip("openai")
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = json.dumps({"id": "evt_1", "object": "event", "created_at": int(time.time()), "type": "video.completed",
                       "data": {"id": "video_1"}}, separators=(",", ":")).encode()
    msg_id, timestamp = "msg_1", str(int(time.time()))
    mac = hmac.new(base64.b64decode(secret[6:]), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "content-type": "application/json",
               "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode()}
    with webhook_receiver() as hooks:
        httpx.post(hooks.url, content=body, headers=headers, timeout=10).raise_for_status()
        (delivery,) = hooks.wait_for(1)
    client = openai.OpenAI(api_key="unused", webhook_secret=secret)
    client.webhooks.verify_signature(delivery.body, delivery.headers)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(delivery.body + b" ", delivery.headers)
