"""Video jobs across real server processes: what a restart keeps, and what a crash leaves."""

from __future__ import annotations

import time

from .conftest import client_for, running_server


def test_completed_jobs_survive_a_crash_and_running_ones_fail_clearly(tmp_path):
    args = ("--model-path", "tiny:wan-t2v", "--data-dir", str(tmp_path))
    with running_server(*args) as url:
        client = client_for(url)
        done = client.videos.create_and_poll(prompt="kept", size="64x64", extra_body={"num_inference_steps": 2})
        mp4 = client.videos.download_content(done.id).content
        running = client.videos.create(prompt="cut short", size="256x256", seconds="4",
                                       extra_body={"num_inference_steps": 200})
        while client.videos.retrieve(running.id).progress == 0:
            time.sleep(0.02)
        url.process.kill()  # no shutdown: as a crash or an OOM kill leaves it
        url.process.wait(30)
    with running_server(*args) as url:
        client = client_for(url)
        assert client.videos.retrieve(done.id).status == "completed"
        assert client.videos.download_content(done.id).content == mp4
        failed = client.videos.retrieve(running.id)
        assert failed.status == "failed" and failed.error.code == "server_restarted", failed
        assert {v.id for v in client.videos.list()} == {done.id, running.id}
