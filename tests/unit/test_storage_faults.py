"""Storage faults on a real small filesystem (a tmpfs the test mounts; root only): a full or read-only data directory
never leaves a job stuck, creation is a 507/503 with Retry-After, partial files go, /ready says so, and the outcome
is recorded once the store takes writes again."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from fakes import VIDEO, FakeEngine, assert_openai_error, serving, wait_until

pytestmark = pytest.mark.slow  # mounts filesystems, waits for the readiness probe


@contextmanager
def small_filesystem(size_kb: int = 2048):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = tempfile.mkdtemp(prefix="openai-dit-tmpfs-")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", folder],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        os.rmdir(folder)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield Path(folder)
    finally:
        subprocess.run(["umount", "-l", folder], check=False)
        os.rmdir(folder)


def fill(folder: Path) -> Path:
    """Take every free byte of the filesystem; the filler file, to remove to free them again."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def wait_for(client, video_id: str, statuses=("completed", "failed"), timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while (video := client.get(f"/v1/videos/{video_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, video
        time.sleep(0.02)
    return video


def test_a_full_disk_fails_creation_cleanly_and_a_running_job_as_storage_full():
    with small_filesystem() as folder:
        data_dir = folder / "data"
        engine = FakeEngine(VIDEO)
        engine.gate = threading.Event()
        with serving(engine, data_dir=str(data_dir)) as client:
            job = client.post("/v1/videos", json={"prompt": "a boat", "size": "64x64", "num_frames": 9}).json()
            assert engine.started.wait(5) and client.get("/ready").json() == {"status": "ready"}
            filler = fill(folder)
            refused = client.post("/v1/videos", json={"prompt": "another", "size": "64x64", "num_frames": 9})
            error = assert_openai_error(refused, 507)
            assert error["code"] == "storage_full" and refused.headers["retry-after"]
            assert "x-should-retry" not in refused.headers  # nothing was created: retrying is safe
            # the readiness probe runs every 2 s
            wait_until(lambda: client.get("/ready").json() == {"status": "storage_unavailable"}, timeout=5)
            assert client.get("/ready").status_code == 503
            engine.gate.set()  # the job ends while the disk is full: its files cannot be written
            video = wait_for(client, job["id"])
            assert video["status"] == "failed" and video["error"]["code"] == "storage_full", video
            folders = [p for p in (data_dir / "videos").iterdir() if p.is_dir()]
            assert not [f for d in folders for f in d.iterdir() if f.name.endswith(".part")]  # nothing half-written
            assert len(client.get("/v1/videos").json()["data"]) == 1  # the refused job left nothing behind
            filler.unlink()
            # the retry writes the outcome once the store takes writes
            jobs = client.app.state.services.videos.jobs
            wait_until(lambda: jobs.unrecorded(job["id"]) is None, timeout=5)
            wait_until(lambda: client.get("/ready").json() == {"status": "ready"}, timeout=5)
        with serving(FakeEngine(VIDEO), data_dir=str(data_dir)) as client:  # a restart reads what was recorded
            video = client.get(f"/v1/videos/{job['id']}").json()
            assert video["status"] == "failed" and video["error"]["code"] == "storage_full", video


def test_a_read_only_data_directory_refuses_creation_with_503():
    """The jobs' folder turns read-only under a running server (a read-only bind mount over it)."""
    with small_filesystem() as folder:
        data_dir = folder / "data"
        with serving(FakeEngine(VIDEO), data_dir=str(data_dir)) as client:
            videos = str(data_dir / "videos")
            subprocess.run(["mount", "--bind", videos, videos], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", videos], check=True)
            try:
                refused = client.post("/v1/videos", json={"prompt": "x", "size": "64x64", "num_frames": 9})
                error = assert_openai_error(refused, 503)
                assert error["code"] == "storage_unavailable" and refused.headers["retry-after"]
                wait_until(lambda: client.get("/ready").json() == {"status": "storage_unavailable"}, timeout=5)
                assert client.get("/health").text == "OK"  # the old contract: the model is loaded
            finally:
                subprocess.run(["umount", videos], check=True)
