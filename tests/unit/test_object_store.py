"""The object store (openai_dit/storage): the same behaviour from a local folder and from an S3 bucket (a real moto
server on 127.0.0.1, tests/services.py), S3's start-up checks and failures, and the url images kept in it."""

from __future__ import annotations

import os
import re
import threading
import time

import httpx
import pytest
from services import free_port, s3_server

from openai_dit.errors import StorageUnavailable
from openai_dit.serving.output_store import NAME_PATTERN
from openai_dit.storage import (
    LocalObjectStore,
    ObjectImageStore,
    ObjectStore,
    ObjectStoreUnreachable,
    OpenedObject,
    open_object_store,
)

_BAD_KEYS = ["", "/abs", "../up", "a/../b", "a/./b", "a//b", "a/", ".hidden", "a/.part", "a b", "a\\b", "é",
             "a?b", "x" * 600]


@pytest.fixture(scope="module")
def s3_service():
    with s3_server() as service:
        yield service


@pytest.fixture
def s3_env(s3_service, monkeypatch, tmp_path):
    """boto3's default chain reaches the moto server: its credentials, no config file, no instance metadata."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name, value in s3_service.env.items():
        monkeypatch.setenv(name, value)
    s3_service.reset()
    return s3_service


def _s3_store(service, prefix: str = "replicas/one", **options) -> ObjectStore:
    from openai_dit.storage.s3 import S3ObjectStore

    return S3ObjectStore(service.bucket, prefix, service.endpoint_url, **options)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        built: ObjectStore = LocalObjectStore(tmp_path / "data")
        built.check()  # makes the folder
        return built
    service = request.getfixturevalue("s3_env")
    built = _s3_store(service)
    built.check()
    return built


def _age(store: ObjectStore, key_prefix: str, seconds: float) -> None:
    """Make every file under `key_prefix` (and the folders) `seconds` old: local only (S3 sets LastModified)."""
    assert isinstance(store, LocalObjectStore)
    top = store.root / key_prefix
    when = time.time() - seconds
    for base, _dirs, files in os.walk(top):
        for name in files:
            os.utime(os.path.join(base, name), (when, when))
        os.utime(base, (when, when))


# --- common behaviour --------------------------------------------------------------------------------------------

def test_round_trip_with_media_type_and_size(store):
    data = os.urandom(70_000)
    store.put("videos/abc/video.mp4", data, "video/mp4")
    opened = store.open("videos/abc/video.mp4")
    assert isinstance(opened, OpenedObject)
    try:
        assert (opened.size, opened.media_type, opened.expires_at) == (len(data), "video/mp4", None)
        assert opened.reader.read(10) == data[:10]
        assert opened.reader.read(100_000) == data[10:]
    finally:
        opened.reader.close()
    assert store.read("videos/abc/video.mp4") == data
    store.put("videos/abc/notes.bin", b"{}", "application/json")  # a media type the name does not say
    assert store.open("videos/abc/notes.bin").media_type == "application/json"
    assert store.read("videos/abc/notes.bin") == b"{}"


def test_missing_is_none(store):
    assert store.open("videos/nothing/video.mp4") is None
    assert store.read("videos/nothing/video.mp4") is None
    store.put("videos/abc/video.mp4", b"x", "video/mp4")
    assert store.open("videos/abc") is None  # a folder is no object


def test_overwrite_is_atomic(store):
    first, second = b"a" * 300_000, b"b" * 200_000
    store.put("videos/abc/video.mp4", first, "video/mp4")
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            got = store.read("videos/abc/video.mp4")
            assert got is not None
            seen.add(got)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for index in range(6):
            store.put("videos/abc/video.mp4", (first, second)[index % 2], "video/mp4")
    finally:
        stop.set()
        thread.join(10)
    assert seen <= {first, second}
    assert store.read("videos/abc/video.mp4") == second
    if isinstance(store, LocalObjectStore):  # no partial write left behind
        assert sorted(os.listdir(store.root / "videos" / "abc")) == ["video.mp4"]


def test_expired_is_none(store):
    store.put("images/old.png", b"old", "image/png", expires_at=time.time() - 5)
    store.put("images/new.png", b"new", "image/png", expires_at=time.time() + 3600)
    assert store.open("images/old.png") is None and store.read("images/old.png") is None
    opened = store.open("images/new.png")
    assert opened is not None and opened.expires_at == pytest.approx(time.time() + 3600, abs=5)
    opened.reader.close()
    store.put("images/old.png", b"again", "image/png")  # put again without an expiry: there again, for good
    assert store.read("images/old.png") == b"again"


def test_delete(store):
    store.put("images/a.png", b"x", "image/png", expires_at=time.time() + 60)
    store.put("images/b.png", b"y", "image/png")
    store.delete("images/a.png")
    store.delete("images/a.png")  # gone already: no error
    store.delete("images")  # a folder is no object: nothing happens
    assert store.read("images/a.png") is None and store.read("images/b.png") == b"y"
    if isinstance(store, LocalObjectStore):
        assert os.listdir(store.root / "images") == ["b.png"]  # the sidecar went with it


def test_delete_prefix(store):
    for key in ("videos/a/video.mp4", "videos/a/thumbnail.webp", "videos/a/deep/x.png", "videos/ab/video.mp4"):
        store.put(key, b"x", "application/octet-stream")
    store.delete_prefix("videos/a")
    assert store.read("videos/a/video.mp4") is None and store.read("videos/a/deep/x.png") is None
    assert store.read("videos/ab/video.mp4") == b"x"  # "videos/a" is a folder, not a string prefix
    store.delete_prefix("videos/a")  # nothing left: no error
    store.delete_prefix("videos/never")
    if isinstance(store, LocalObjectStore):
        assert not (store.root / "videos" / "a").exists()


def test_children_older_than(store):
    for key in ("videos/old/video.mp4", "videos/old/sub/x.png", "videos/new/video.mp4", "videos/loose.mp4"):
        store.put(key, b"x", "video/mp4")
    if isinstance(store, LocalObjectStore):
        _age(store, "videos/old", 1000)
        assert store.children("videos", older_than=500) == ["old"]
        os.utime(store.root / "videos" / "old" / "sub" / "x.png")  # one file written now: the folder is in use
        assert store.children("videos", older_than=500) == []
        (store.root / "videos" / "empty").mkdir()  # a folder just made (no file yet) is young too
        assert "empty" not in store.children("videos", older_than=500)
    else:
        assert store.children("videos", older_than=3600) == []
    assert store.children("videos", older_than=0) == (["empty", "new", "old"] if isinstance(store, LocalObjectStore)
                                                      else ["new", "old"])
    assert store.children("nothing", older_than=0) == []


def test_remove_older_than(store):
    for key in ("images/a.png", "images/b.png", "images/c.png"):
        store.put(key, b"x", "image/png", expires_at=time.time() + 60)
    store.put("videos/keep/video.mp4", b"x", "video/mp4")
    assert store.remove_older_than("images", 3600) == 0
    if isinstance(store, LocalObjectStore):
        _age(store, "images", 1000)
        os.utime(store.root / "images" / "c.png")
        assert store.remove_older_than("images", 500) == 2
        assert sorted(os.listdir(store.root / "images")) == [".c.png.meta", "c.png"]  # sidecars go with them
        assert store.read("images/c.png") == b"x"
    assert store.remove_older_than("images", 0) == (1 if isinstance(store, LocalObjectStore) else 3)
    assert store.read("images/a.png") is None and store.read("images/c.png") is None
    assert store.read("videos/keep/video.mp4") == b"x"
    assert store.remove_older_than("nothing", 0) == 0


def test_keys_are_checked(store):
    for key in _BAD_KEYS:
        for call in (lambda k: store.put(k, b"x", "image/png"), store.open, store.read, store.delete,
                     store.delete_prefix,
                     lambda k: store.children(k, older_than=0), lambda k: store.remove_older_than(k, 0),
                     lambda k: store.presigned_url(k, 60)):
            with pytest.raises(ValueError, match="not a valid object key"):
                call(key)


def test_presigned_url(store):
    data = os.urandom(5000)
    store.put("videos/abc/video.mp4", data, "video/mp4")
    url = store.presigned_url("videos/abc/video.mp4", 60)
    if isinstance(store, LocalObjectStore):
        assert url is None
        return
    assert url is not None and url.startswith("http://127.0.0.1:") and "X-Amz-Signature=" in url
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == "video/mp4"


def test_writable(store, tmp_path):
    assert store.writable()
    if isinstance(store, LocalObjectStore):
        assert os.listdir(store.root) == []  # the probe is gone
        assert not LocalObjectStore(tmp_path / "never-made").writable()  # writable() creates nothing


def test_shared_and_description(store, tmp_path):
    if isinstance(store, LocalObjectStore):
        assert not store.shared and store.description == f"local folder {tmp_path / 'data'}"
    else:
        assert store.shared and store.description == "s3://openai-dit-test/replicas/one"


# --- local specifics ---------------------------------------------------------------------------------------------

def test_local_layout_is_the_data_dir(tmp_path):
    store = open_object_store("local", data_dir=str(tmp_path))
    assert isinstance(store, LocalObjectStore)
    store.check()
    store.put("videos/0123abcd/video.mp4", b"mp4", "video/mp4")
    store.put("videos/0123abcd/thumbnail.webp", b"webp", "image/webp")
    assert (tmp_path / "videos" / "0123abcd" / "video.mp4").read_bytes() == b"mp4"
    assert sorted(os.listdir(tmp_path / "videos" / "0123abcd")) == ["thumbnail.webp", "video.mp4"]  # no sidecar
    (tmp_path / "videos" / "0123abcd" / "spritesheet.jpg").write_bytes(b"jpg")  # written by an older server
    assert store.open("videos/0123abcd/spritesheet.jpg").media_type == "image/jpeg"


def test_local_write_failure_is_storage_unavailable(tmp_path):
    (tmp_path / "videos").write_bytes(b"a file where a folder should be")
    store = LocalObjectStore(tmp_path)
    with pytest.raises(StorageUnavailable) as caught:
        store.put("videos/a/video.mp4", b"x", "video/mp4")
    assert caught.value.status_code == 503
    blocked = LocalObjectStore(tmp_path / "videos" / "below-a-file")
    with pytest.raises(ObjectStoreUnreachable, match=r"^local folder .*below-a-file: cannot write there"):
        blocked.check()
    assert not blocked.writable()


# --- S3 specifics ------------------------------------------------------------------------------------------------

def test_open_object_store_forms(tmp_path, s3_env):
    from openai_dit.storage.s3 import S3ObjectStore

    for url, prefix in (("s3://openai-dit-test", ""), ("s3://openai-dit-test/", ""),
                        ("s3://openai-dit-test/a/b/", "a/b")):
        built = open_object_store(url, data_dir=str(tmp_path), endpoint_url=s3_env.endpoint_url)
        assert isinstance(built, S3ObjectStore) and built.prefix == prefix and built.shared
    for url in ("S3://x", "s3://", "s3://UPPER", "s3://ok-bucket/../up", "file:///x", "s3://b_b", "gs://bucket",
                "s3://ok-bucket/a//b", "Local", ""):
        with pytest.raises(ValueError, match=r"--object-store .*accepted forms are 'local'"):
            open_object_store(url, data_dir=str(tmp_path))


def test_s3_without_prefix_and_endpoint_from_the_environment(s3_env):
    from openai_dit.storage.s3 import S3ObjectStore

    store = S3ObjectStore(s3_env.bucket)  # AWS_ENDPOINT_URL_S3 (set by s3_env), path-style
    store.check()
    assert store.description == "s3://openai-dit-test"
    store.put("images/x.png", b"png", "image/png", expires_at=1e10)
    head = s3_env.client().head_object(Bucket=s3_env.bucket, Key="images/x.png")
    assert head["ContentType"] == "image/png" and head["Metadata"] == {"expires-at": "10000000000"}
    assert store.read("images/x.png") == b"png"
    listed = s3_env.client().list_objects_v2(Bucket=s3_env.bucket)
    assert [item["Key"] for item in listed["Contents"]] == ["images/x.png"]  # check()'s probe was removed


def test_s3_prefix_keeps_replicas_apart(s3_env):
    one, two = _s3_store(s3_env, "replicas/one"), _s3_store(s3_env, "/replicas/two/")
    one.put("videos/a/video.mp4", b"1", "video/mp4")
    two.put("videos/a/video.mp4", b"2", "video/mp4")
    assert (one.read("videos/a/video.mp4"), two.read("videos/a/video.mp4")) == (b"1", b"2")
    keys = sorted(item["Key"] for item in s3_env.client().list_objects_v2(Bucket=s3_env.bucket)["Contents"])
    assert keys == ["replicas/one/videos/a/video.mp4", "replicas/two/videos/a/video.mp4"]
    one.delete_prefix("videos")
    assert one.read("videos/a/video.mp4") is None and two.read("videos/a/video.mp4") == b"2"


def test_s3_delete_prefix_in_batches(s3_env, monkeypatch):
    from openai_dit.storage import s3

    monkeypatch.setattr(s3, "_BATCH", 2)  # DeleteObjects' limit is 1000: the same loop, with fewer objects
    store = _s3_store(s3_env)
    for index in range(5):
        store.put(f"videos/big/{index}.png", b"", "image/png")
    store.delete_prefix("videos/big")
    assert s3_env.client().list_objects_v2(Bucket=s3_env.bucket, Prefix="replicas/one/")["KeyCount"] == 0


def test_s3_missing_bucket_is_unreachable(s3_env):
    store = _s3_store(s3_env, "p")
    store.bucket = "no-such-bucket"
    with pytest.raises(ObjectStoreUnreachable, match=r"^s3://openai-dit-test/p: the bucket does not exist$"):
        store.check()
    assert open_object_store("s3://no-such-bucket/p", data_dir="unused",
                             endpoint_url=s3_env.endpoint_url).writable() is False


def test_s3_closed_port_is_unreachable(s3_env):
    from openai_dit.storage.s3 import S3ObjectStore

    endpoint = f"http://127.0.0.1:{free_port()}"
    store = S3ObjectStore("openai-dit-test", "p", endpoint, connect_timeout=1, read_timeout=1, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(ObjectStoreUnreachable) as caught:
        store.check()
    message = str(caught.value)
    assert message.startswith("s3://openai-dit-test/p: cannot connect to the endpoint (http://127.0.0.1:")
    assert "\n" not in message and s3_env.secret_key not in message
    assert not store.writable()
    assert time.monotonic() - started < 10


def test_s3_reasons_name_no_secret(s3_env):
    from botocore.exceptions import ClientError, NoCredentialsError

    store = _s3_store(s3_env, "p")
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "HeadBucket")
    assert store._reason(denied).startswith("access denied (AccessDenied")
    assert store._reason(NoCredentialsError()).startswith("no credentials found")


def test_s3_write_to_a_deleted_bucket_is_storage_unavailable(s3_env, caplog):
    client = s3_env.client()
    client.create_bucket(Bucket="short-lived")
    store = open_object_store("s3://short-lived/p", data_dir="unused", endpoint_url=s3_env.endpoint_url)
    store.check()
    assert store.writable()
    client.delete_bucket(Bucket="short-lived")  # empty: check() and writable() removed their probes
    with pytest.raises(StorageUnavailable) as caught:
        store.put("videos/a/video.mp4", b"x", "video/mp4")
    assert caught.value.status_code == 503 and caught.value.code == "storage_unavailable"
    assert "short-lived" not in caught.value.message and "127.0.0.1" not in caught.value.message
    assert "NoSuchBucket" in caplog.text  # the reason is in the server's log
    with pytest.raises(StorageUnavailable):
        store.open("videos/a/video.mp4")
    with pytest.raises(StorageUnavailable):
        store.delete_prefix("videos/a")
    with pytest.raises(StorageUnavailable):
        store.delete("videos/a/video.mp4")
    assert not store.writable()


# --- url images --------------------------------------------------------------------------------------------------

def test_image_store_put_get(store):
    images = ObjectImageStore(store, ttl_seconds=600)
    name = images.put(b"\x89PNG...", "png", "image/png")
    assert re.fullmatch(NAME_PATTERN, name)
    item = images.get(name)
    assert item is not None and (item.data, item.media_type) == (b"\x89PNG...", "image/png")
    assert item.expires_at - time.monotonic() == pytest.approx(600, abs=5)  # monotonic, as OutputStore's
    assert store.read(f"images/{name}") == b"\x89PNG..."
    assert images.get("x" * 32 + ".png") is None  # a fine name, but never stored
    assert images.get("../" + name) is None and images.get(name + "x") is None
    assert images.size_bytes == 0 and images.url_for(name) is None
    with pytest.raises(ValueError):
        images.put(b"x", "gif", "image/gif")


def test_image_store_expiry_and_sweep(store):
    expired = ObjectImageStore(store, ttl_seconds=-10)  # already past its time when written
    name = expired.put(b"x", "webp", "image/webp")
    assert expired.get(name) is None
    lasting = ObjectImageStore(store, ttl_seconds=3600)
    kept = lasting.put(b"y", "jpeg", "image/jpeg")
    assert lasting.sweep() == 0
    assert ObjectImageStore(store, ttl_seconds=0).sweep() == 2
    assert lasting.get(kept) is None


def test_image_store_presigned(store):
    images = ObjectImageStore(store, ttl_seconds=600, presign=True)
    name = images.put(b"image bytes", "png", "image/png")
    url = images.url_for(name)
    if isinstance(store, LocalObjectStore):
        assert url is None
        return
    assert url is not None and "X-Amz-Expires=600" in url
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200 and response.content == b"image bytes"
    assert images.url_for("not-a-name.png") is None
