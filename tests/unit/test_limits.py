"""Limits and malformed input, with a fake engine: the work budget and the video time limit, deep JSON, races between
a download and a delete, paths kept inside their roots despite symlinks, and the small parsing holes."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fakes import IMAGES, VIDEO, FakeEngine, assert_openai_error, png_bytes, serving

from openai_dit.models.devices import default_job_pixels

BUDGET = 64 * 64 * 9 * 2  # two 9-frame 64x64 videos' worth


@pytest.mark.parametrize(("route", "body", "param"), [
    ("/v1/videos", {"prompt": "x", "size": "64x64", "num_frames": 997}, "num_frames"),
    ("/v1/videos", {"prompt": "x", "size": "512x512", "num_frames": 9}, "size"),
    ("/v1/videos", {"prompt": "x", "size": "64x64", "seconds": "20"}, "seconds"),
    ("/generate", {"prompt": "x", "width": 64, "height": 64, "num_frames": 41}, "num_frames"),
])
def test_a_video_over_the_work_budget_is_a_400_before_anything_is_queued(route, body, param):
    engine = FakeEngine(dataclasses.replace(VIDEO, max_job_pixels=BUDGET))
    with serving(engine) as client:
        error = assert_openai_error(client.post(route, json=body), 400, param)
        assert error["code"] == "job_too_large" and f"{BUDGET:,}" in error["message"]
        assert not engine.calls and client.get("/v1/videos").json()["data"] == []
        assert client.post("/v1/videos", json={"prompt": "x", "size": "64x64", "num_frames": 9}).status_code == 200


def test_images_over_the_work_budget_name_n_or_size():
    engine = FakeEngine(dataclasses.replace(IMAGES, max_job_pixels=128 * 128 * 2))
    with serving(engine) as client:
        assert_openai_error(client.post("/v1/images/generations", json={"prompt": "x", "size": "128x128", "n": 3}),
                            400, "n")
        assert_openai_error(client.post("/v1/images/generations", json={"prompt": "x", "size": "256x256"}), 400,
                            "size")
        assert client.post("/v1/images/generations", json={"prompt": "x", "size": "128x128", "n": 2}).status_code \
            == 200


def test_the_default_budget_refuses_997_frames_of_4096x4096_on_the_cpu():
    assert default_job_pixels("cpu") < 4096 * 4096 * 997
    assert default_job_pixels("cpu") >= 1024 * 1024 * 16  # room for ordinary jobs


def test_a_video_over_its_time_limit_fails_with_a_clear_code():
    engine = FakeEngine(VIDEO, step_delay=0.2)
    with serving(engine, video_timeout=0.5) as client:
        job = client.post("/v1/videos", json={"prompt": "x", "size": "64x64", "num_frames": 9,
                                              "num_inference_steps": 50}).json()
        deadline = time.monotonic() + 10
        while (video := client.get(f"/v1/videos/{job['id']}").json())["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert video["status"] == "failed" and video["error"]["code"] == "video_timeout", video
        assert engine.cancelled_calls == 1 and engine.steps_run < 10


@pytest.mark.parametrize("route", ["/generate", "/v1/images/generations", "/v1/videos"])
def test_deeply_nested_json_is_a_400_on_every_json_route(route, caplog):
    engine = FakeEngine(IMAGES if route != "/v1/videos" else VIDEO)
    with serving(engine) as client:
        for body in (b"[" * 200_000 + b"]" * 200_000, b'{"prompt": "x", "svg": ' + b'{"a": ' * 100_000 + b"1" +
                     b"}" * 100_001, b'{"prompt": "x", "cache": ' + b"[" * 200_000):
            response = client.post(route, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 400, response.text[:200]
        assert "Traceback" not in caplog.text and "internal error" not in caplog.text


def test_downloads_racing_deletes_are_never_a_500():
    engine = FakeEngine(VIDEO)
    with serving(engine) as client:
        ids = []
        for _ in range(6):
            ids.append(client.post("/v1/videos", json={"prompt": "x", "size": "64x64", "num_frames": 9}).json()["id"])
        deadline = time.monotonic() + 10
        while any(client.get(f"/v1/videos/{i}").json()["status"] != "completed" for i in ids):
            assert time.monotonic() < deadline
            time.sleep(0.02)

        def hit(n: int) -> int:
            video_id = ids[n % len(ids)]
            kind = n % 4
            if kind == 0:
                return client.delete(f"/v1/videos/{video_id}").status_code
            if kind == 1:
                return client.get(f"/v1/videos/{video_id}").status_code
            variant = ("video", "thumbnail", "spritesheet")[n % 3]
            return client.get(f"/v1/videos/{video_id}/content", params={"variant": variant}).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(hit, range(96)))
        assert set(statuses) <= {200, 404}, statuses


def test_output_paths_and_local_media_stay_inside_their_roots_despite_symlinks(tmp_path):
    outputs, outside, media = tmp_path / "outputs", tmp_path / "outside", tmp_path / "media"
    for folder in (outputs, outside, media):
        folder.mkdir()
    (outputs / "escape").symlink_to(outside)  # planted inside --output-dir
    (outside / "secret.png").write_bytes(png_bytes(32, 32))
    (media / "link.png").symlink_to(outside / "secret.png")  # planted inside --allowed-local-media-path
    (media / "ok.png").write_bytes(png_bytes(32, 32))
    engine = FakeEngine(IMAGES)
    with serving(engine, output_dir=str(outputs), allowed_local_media_path=str(media)) as client:
        body = {"prompt": "x", "width": 64, "height": 64, "num_inference_steps": 1, "output_format": "path"}
        assert_openai_error(client.post("/generate", json={**body, "output_dir": "escape"}), 400, "output_dir")
        assert_openai_error(client.post("/generate", json={**body, "output_dir": "escape/deeper"}), 400,
                            "output_dir")
        assert not list(outside.iterdir())[1:]  # only the planted file: nothing was written outside
        made = client.post("/generate", json={**body, "output_dir": "fine"}).json()
        assert os.path.realpath(made["images"][0]).startswith(str(outputs.resolve()))
        edit = {"prompt": "x", "width": 64, "height": 64, "num_inference_steps": 1}
        assert_openai_error(client.post("/generate", json={**edit, "image_urls": [str(media / "link.png")]}), 400,
                            "image_urls[0]")
        assert client.post("/generate", json={**edit, "image_urls": [str(media / "ok.png")]}).status_code == 200


@pytest.mark.parametrize(("route", "body", "param"), [
    ("/v1/images/generations", {"prompt": "x", "size": "64x64\n"}, "size"),
    ("/v1/videos", {"prompt": "x", "seconds": "4_0"}, "seconds"),
    ("/v1/videos", {"prompt": "x", "seconds": " 4"}, "seconds"),
    ("/v1/videos", {"prompt": "x", "seconds": "1e1"}, "seconds"),
])
def test_the_small_parsing_holes_are_closed(route, body, param):
    engine = FakeEngine(IMAGES if "images" in route else VIDEO)
    with serving(engine) as client:
        assert_openai_error(client.post(route, json=body), 400, param)


def test_concurrent_creations_on_a_small_budget_are_all_answered():
    engine = FakeEngine(VIDEO)
    engine.gate = threading.Event()
    with serving(engine, max_queued_requests=2) as client:
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda _: client.post("/v1/videos", json={
                "prompt": "x", "size": "64x64", "num_frames": 9}).status_code, range(6)))
        engine.gate.set()
        assert set(statuses) <= {200, 429} and 429 in statuses, statuses
