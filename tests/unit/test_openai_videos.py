"""The OpenAI Videos API over the real app, runner and job store, with a fake engine: lifecycle, progress, paging,
delete, content, remix, restarts, expiry, bounds and every refusal."""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from pathlib import Path

import av
import pytest
from fakes import IMAGES, TEXT_ONLY, VIDEO, FakeEngine, assert_openai_error, data_uri, png_bytes, serving, wait_until
from PIL import Image

from openai_dit.jobs.store import DataDirInUse, JobStore, job_store_url


def wait_for(client, video_id: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        video = client.get(f"/v1/videos/{video_id}").json()
        if video["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return video
        time.sleep(0.01)



def create(client, **fields) -> dict:
    response = client.post("/v1/videos", json={"prompt": "a boat", **fields})
    assert response.status_code == 200, response.text
    return response.json()


def job_folders(data_dir: Path) -> list[Path]:
    folder = data_dir / "videos"
    return [p for p in folder.iterdir() if p.is_dir()] if folder.exists() else []


# --- creating and running -------------------------------------------------------------------------------------
def test_create_returns_queued_then_completes_with_every_field():
    with serving(FakeEngine(VIDEO), video_ttl=600) as client:
        video = create(client, seconds="2", size="64x64", seed=7)
        assert video["object"] == "video" and video["status"] == "queued" and video["progress"] == 0
        assert video["id"].startswith("video_") and len(video["id"]) == 38
        assert video["model"] == "fake-model" and video["prompt"] == "a boat" and video["size"] == "64x64"
        assert video["seconds"] == "2" and video["seed"] == 7 and video["fps"] == 8 and video["num_frames"] == 17
        assert video["completed_at"] is None and video["expires_at"] is None and video["error"] is None
        assert video["remixed_from_video_id"] is None and video["created_at"] > 1.7e9
        done = wait_for(client, video["id"])
        assert done["status"] == "completed" and done["progress"] == 100
        assert done["expires_at"] == done["completed_at"] + 600


def test_multipart_without_a_file_is_accepted_as_the_sdk_sends_it():
    engine = FakeEngine(VIDEO)
    with serving(engine) as client:
        response = client.post("/v1/videos", files={"prompt": (None, "a cat"), "seconds": (None, "4"),
                                                    "num_inference_steps": (None, "3"), "fps": (None, "16")})
        assert response.status_code == 200, response.text
        assert wait_for(client, response.json()["id"])["status"] == "completed"
        call = engine.calls[-1]
        assert call.num_frames == 65 and call.num_inference_steps == 3 and not call.images


@pytest.mark.parametrize(("fields", "frames", "seconds"), [
    ({"seconds": "4"}, 33, "4"),            # 4 s x 8 fps = 32 -> 4k+1
    ({"seconds": "2.5"}, 21, "2.5"),        # 20 frames -> 21
    ({"seconds": 4, "fps": 16}, 65, "4"),   # a number, as older clients send it
    ({"seconds": "0.1"}, 5, "0.1"),         # never fewer than one frame step
    ({"num_frames": 13}, 13, "1.62"),
    ({}, 9, "1.12"),                        # the model's default frame count
])
def test_seconds_become_frames_the_model_accepts(fields, frames, seconds):
    engine = FakeEngine(VIDEO)
    with serving(engine) as client:
        video = create(client, **fields)
        assert (video["num_frames"], video["seconds"]) == (frames, seconds)
        wait_for(client, video["id"])
        assert engine.calls[-1].num_frames == frames


def test_progress_moves_through_the_steps_and_polling_is_paced():
    engine = FakeEngine(VIDEO, step_delay=0.03)
    with serving(engine) as client:
        video = create(client, num_inference_steps=10)
        seen, headers = [], []
        while True:
            response = client.get(f"/v1/videos/{video['id']}")
            body = response.json()
            seen.append(body["progress"])
            headers.append(response.headers.get("openai-poll-after-ms"))
            if body["status"] == "completed":
                break
            assert body["status"] in ("queued", "in_progress")
            time.sleep(0.005)
        assert seen == sorted(seen) and seen[-1] == 100
        assert len({p for p in seen if 0 < p < 100}) >= 3, seen
        assert headers[-1] is None and all(100 <= int(h) <= 5000 for h in headers[:-1])


def test_image_to_video_by_upload_by_image_url_and_in_json():
    engine = FakeEngine(VIDEO)
    reference = png_bytes(128, 64, (10, 200, 30))
    with serving(engine) as client:
        uploaded = client.post("/v1/videos", data={"prompt": "x", "size": "64x64"},
                               files={"input_reference": ("ref.png", reference, "image/png")})
        assert uploaded.status_code == 200, uploaded.text
        wait_for(client, uploaded.json()["id"])
        image = engine.calls[-1].images[0]
        assert image.size == (64, 64) and image.getpixel((32, 32)) == (10, 200, 30)  # cover-fitted, not stretched
        by_url = client.post("/v1/videos", files={"prompt": (None, "x"),
                                                  "input_reference[image_url]": (None, data_uri(reference))})
        assert by_url.status_code == 200, by_url.text
        assert by_url.json()["size"] == "96x48"  # no size: the reference's shape at the model's pixel count
        in_json = create(client, input_reference={"image_url": data_uri(reference)}, size="64x64")
        wait_for(client, in_json["id"])
        assert engine.calls[-1].task.value == "image-to-video"


def test_images_and_videos_share_one_queue_in_arrival_order():
    engine = FakeEngine(VIDEO)
    engine.gate = threading.Event()
    with serving(engine) as client:
        first = create(client, prompt="first")
        wait_until(lambda: engine.started.is_set())
        native = threading.Thread(target=lambda: client.post("/generate", json={
            "prompt": "second", "num_frames": 9, "width": 64, "height": 64, "num_inference_steps": 1}))
        native.start()
        wait_until(lambda: client.runner.queued == 1)
        third = create(client, prompt="third", size="80x64")  # shares no call with "first": order only
        engine.gate.set()
        native.join(10)
        wait_for(client, third["id"])
        assert [c.prompt for c in engine.calls] == ["first", "second", "third"]
        assert wait_for(client, first["id"])["status"] == "completed"


# --- refusals ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "status", "param"), [
    ({}, 400, "prompt"),
    ({"prompt": ""}, 400, "prompt"),
    ({"prompt": "x", "size": "100x100"}, 400, "size"),
    ({"prompt": "x", "size": "big"}, 400, "size"),
    ({"prompt": "x", "seconds": "abc"}, 400, "seconds"),
    ({"prompt": "x", "seconds": "0"}, 400, "seconds"),
    ({"prompt": "x", "seconds": "-4"}, 400, "seconds"),
    ({"prompt": "x", "seconds": "nan"}, 400, "seconds"),
    ({"prompt": "x", "seconds": "4", "num_frames": 9}, 400, "num_frames"),
    ({"prompt": "x", "num_frames": 10}, 400, "num_frames"),
    ({"prompt": "x", "seconds": "120", "fps": 60}, 400, "seconds"),
    ({"prompt": "x", "fps": 0}, 400, "fps"),
    ({"prompt": "x", "num_inference_steps": 0}, 400, "num_inference_steps"),
    ({"prompt": "x", "guidance_scale": 5}, 400, "guidance_scale"),  # the fake pipeline takes none
    ({"prompt": "x", "model": "dall-e-3"}, 404, "model"),  # an image model's name on the video route
    ({"prompt": "x", "input_reference": {"file_id": "file-abc"}}, 400, "input_reference[file_id]"),
    ({"prompt": "x", "input_reference": {}}, 400, "input_reference"),
    ({"prompt": "x", "input_reference": "data:image/png;base64,AAAA"}, 400, "input_reference"),
    ({"prompt": "x", "input_reference": {"image_url": "http://127.0.0.1/a.png"}}, 400,
     "input_reference[image_url]"),
])
def test_bad_inputs_are_named_and_create_nothing(body, status, param):
    engine = FakeEngine(VIDEO)
    with serving(engine) as client:
        assert_openai_error(client.post("/v1/videos", json=body), status, param)
        assert client.get("/v1/videos").json()["data"] == [] and not engine.calls


def test_refusals_by_content_and_model():
    with serving(FakeEngine(VIDEO)) as client:
        assert_openai_error(client.post("/v1/videos", content=b"{not json", headers={"content-type":
                                                                                    "application/json"}), 400)
        assert_openai_error(client.post("/v1/videos", content=b"prompt", headers={"content-type": "text/plain"}),
                            400)
        both = client.post("/v1/videos", files={"prompt": (None, "x"), "input_reference[image_url]": (None, "u"),
                                                "input_reference": ("a.png", png_bytes(), "image/png")})
        assert_openai_error(both, 400, "input_reference")
        bad_image = client.post("/v1/videos", files={"prompt": (None, "x"),
                                                     "input_reference": ("a.png", b"not an image", "image/png")})
        assert_openai_error(bad_image, 400, "input_reference")
    with serving(FakeEngine(TEXT_ONLY)) as client:
        error = assert_openai_error(client.post("/v1/videos", json={"prompt": "x"}), 400, "input_reference")
        assert error["code"] == "unsupported_task" and "text-to-video" in error["message"]


def test_a_full_queue_is_429_and_leaves_no_job():
    engine = FakeEngine(VIDEO)
    engine.gate = threading.Event()
    with serving(engine, max_queued_requests=1) as client:
        create(client)
        wait_until(lambda: engine.started.is_set())
        create(client)
        refused = client.post("/v1/videos", json={"prompt": "x"})
        assert_openai_error(refused, 429)
        assert "retry-after" in refused.headers
        assert len(client.get("/v1/videos").json()["data"]) == 2
        engine.gate.set()


# --- failures -----------------------------------------------------------------------------------------------------
def test_a_failed_generation_is_recorded_without_internals():
    engine = FakeEngine(VIDEO)
    engine.fail_with = RuntimeError("CUDA out of memory at 0x7f00deadbeef in /work/secret.py")
    with serving(engine) as client:
        video = wait_for(client, create(client)["id"])
        assert video["status"] == "failed" and video["error"]["code"] == "generation_failed"
        assert "0x7f" not in video["error"]["message"] and "/work" not in video["error"]["message"]
        assert video["completed_at"] is not None
        content = client.get(f"/v1/videos/{video['id']}/content")
        assert_openai_error(content, 409)
        assert content.headers["x-should-retry"] == "false"


def test_a_server_error_after_acceptance_tells_the_sdk_not_to_retry(monkeypatch):
    with serving(FakeEngine(VIDEO)) as client:
        store = client.app.state.services.videos.store

        def broken_insert(record, **_):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "insert", broken_insert)
        response = client.post("/v1/videos", json={"prompt": "x"})
        assert_openai_error(response, 500)
        assert response.headers["x-should-retry"] == "false"
        assert not job_folders(Path(client.app.state.services.config.data_path))


# --- reading, paging, deleting ------------------------------------------------------------------------------------
def test_list_pages_with_after_limit_and_order():
    with serving(FakeEngine(VIDEO)) as client:
        ids = [create(client, prompt=f"p{i}")["id"] for i in range(5)]
        page = client.get("/v1/videos", params={"limit": 2}).json()
        assert page["object"] == "list" and [v["id"] for v in page["data"]] == ids[:2:-1][:2]
        assert page["first_id"] == ids[4] and page["last_id"] == ids[3] and page["has_more"] is True
        rest = client.get("/v1/videos", params={"limit": 10, "after": page["last_id"]}).json()
        assert [v["id"] for v in rest["data"]] == ids[2::-1] and rest["has_more"] is False
        ascending = client.get("/v1/videos", params={"order": "asc", "limit": 3}).json()
        assert [v["id"] for v in ascending["data"]] == ids[:3] and ascending["has_more"] is True
        assert_openai_error(client.get("/v1/videos", params={"limit": 0}), 400, "limit")
        assert_openai_error(client.get("/v1/videos", params={"limit": "x"}), 400, "limit")
        assert_openai_error(client.get("/v1/videos", params={"order": "up"}), 400, "order")
        assert_openai_error(client.get("/v1/videos", params={"after": "video_" + "0" * 32}), 400, "after")


@pytest.mark.parametrize("video_id", ["video_" + "0" * 32, "nope", "..", "video_../../etc"])
def test_unknown_or_malformed_ids_are_404(video_id):
    with serving(FakeEngine(VIDEO)) as client:
        for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/content")):
            assert_openai_error(client.request(method, f"/v1/videos/{video_id}{path}"), 404)


def test_delete_stops_a_running_job_within_one_step_and_removes_its_files():
    engine = FakeEngine(VIDEO, step_delay=0.05)
    with serving(engine) as client:
        data_dir = Path(client.app.state.services.config.data_path)
        video = create(client, num_inference_steps=100)
        wait_until(lambda: engine.steps_run >= 2)
        deleted = client.delete(f"/v1/videos/{video['id']}")
        steps_at_delete = engine.steps_run
        assert deleted.status_code == 200
        assert deleted.json() == {"id": video["id"], "object": "video.deleted", "deleted": True}
        wait_until(lambda: engine.cancelled_calls == 1)
        assert engine.steps_run <= steps_at_delete + 1
        assert_openai_error(client.get(f"/v1/videos/{video['id']}"), 404)
        wait_until(lambda: not job_folders(data_dir))
        assert_openai_error(client.delete(f"/v1/videos/{video['id']}"), 404)


def test_delete_of_a_queued_job_means_it_never_runs():
    engine = FakeEngine(VIDEO)
    engine.gate = threading.Event()
    with serving(engine) as client:
        running = create(client, prompt="running")
        wait_until(lambda: engine.started.is_set())
        queued = create(client, prompt="queued")
        assert client.delete(f"/v1/videos/{queued['id']}").status_code == 200
        engine.gate.set()
        assert wait_for(client, running["id"])["status"] == "completed"
        assert [c.prompt for c in engine.calls] == ["running"]


def test_content_variants():
    with serving(FakeEngine(VIDEO)) as client:
        video = wait_for(client, create(client, size="64x64", num_frames=13)["id"])
        mp4 = client.get(f"/v1/videos/{video['id']}/content")
        assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
        with av.open(io.BytesIO(mp4.content)) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == 13 and (frames[0].width, frames[0].height) == (64, 64)
        assert client.get(f"/v1/videos/{video['id']}/content", params={"variant": "video"}).content == mp4.content
        thumb = client.get(f"/v1/videos/{video['id']}/content", params={"variant": "thumbnail"})
        assert thumb.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(thumb.content)).size == (64, 64)
        sheet = client.get(f"/v1/videos/{video['id']}/content", params={"variant": "spritesheet"})
        assert sheet.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(sheet.content)).size == (4 * 64, 4 * 64)  # 13 frames: a 4x4 grid
        assert_openai_error(client.get(f"/v1/videos/{video['id']}/content", params={"variant": "gif"}), 400,
                            "variant")


def test_content_of_an_unfinished_job_is_409_without_retries():
    engine = FakeEngine(VIDEO)
    engine.gate = threading.Event()
    with serving(engine) as client:
        video = create(client)
        response = client.get(f"/v1/videos/{video['id']}/content")
        error = assert_openai_error(response, 409)
        assert error["code"] == "video_not_ready" and response.headers["x-should-retry"] == "false"
        assert_openai_error(client.post(f"/v1/videos/{video['id']}/remix", json={"prompt": "y"}), 409)
        engine.gate.set()


def test_remix_reuses_the_settings_seed_and_reference_with_a_new_prompt():
    engine = FakeEngine(VIDEO)
    with serving(engine) as client:
        source = client.post("/v1/videos", data={"prompt": "a cat", "size": "64x64", "seconds": "2", "seed": "11"},
                             files={"input_reference": ("r.png", png_bytes(64, 64, (1, 2, 3)), "image/png")}).json()
        wait_for(client, source["id"])
        remix = client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "a dog"})
        assert remix.status_code == 200, remix.text
        body = remix.json()
        assert body["remixed_from_video_id"] == source["id"] and body["prompt"] == "a dog"
        assert (body["size"], body["seconds"], body["seed"]) == ("64x64", "2", 11)
        wait_for(client, body["id"])
        first, second = engine.calls
        assert second.prompt == "a dog" and second.seed == first.seed == 11
        assert second.num_frames == first.num_frames and second.images[0].getpixel((0, 0)) == (1, 2, 3)
        assert_openai_error(client.post(f"/v1/videos/{source['id']}/remix", json={}), 400, "prompt")
        assert_openai_error(client.post("/v1/videos/video_" + "1" * 32 + "/remix", json={"prompt": "x"}), 404)
        for reference in (Path(client.app.state.services.config.data_path) / "videos").glob("*/reference.png"):
            reference.unlink()  # an input image lost from the disk: a clear 404, not a server error
        lost = client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "a bird"})
        assert assert_openai_error(lost, 404)["code"] == "reference_missing"


# --- durability -----------------------------------------------------------------------------------------------------
def test_a_restart_keeps_completed_jobs_and_runs_queued_ones(tmp_path):
    engine = FakeEngine(VIDEO)
    with serving(engine, data_dir=str(tmp_path)) as client:
        done = wait_for(client, create(client, prompt="done")["id"])
        content = client.get(f"/v1/videos/{done['id']}/content").content
        engine.gate = threading.Event()
        interrupted = create(client, prompt="interrupted")
        wait_until(lambda: len(engine.calls) == 2)
        waiting = create(client, prompt="waiting")
    # The graceful stop put the running job back in the queue; nothing failed.
    engine = FakeEngine(VIDEO)
    with serving(engine, data_dir=str(tmp_path)) as client:
        assert client.get(f"/v1/videos/{done['id']}").json()["status"] == "completed"
        assert client.get(f"/v1/videos/{done['id']}/content").content == content
        assert wait_for(client, interrupted["id"])["status"] == "completed"
        assert wait_for(client, waiting["id"])["status"] == "completed"
        assert [c.prompt for c in engine.calls] == ["interrupted", "waiting"]


def test_jobs_running_when_the_process_died_are_failed_on_start(tmp_path):
    engine = FakeEngine(VIDEO)
    with serving(engine, data_dir=str(tmp_path)) as client:
        video = wait_for(client, create(client)["id"])
    with sqlite3.connect(tmp_path / "videos.sqlite3") as db:  # as a crash mid-generation leaves it
        db.execute("UPDATE videos SET status = 'in_progress', completed_at = NULL, expires_at = NULL")
    (tmp_path / "videos" / "0123abcd").mkdir()  # and a folder whose record was never written
    with serving(FakeEngine(VIDEO), data_dir=str(tmp_path)) as client:
        failed = client.get(f"/v1/videos/{video['id']}").json()
        assert failed["status"] == "failed" and failed["error"]["code"] == "server_restarted"
        assert not (tmp_path / "videos" / "0123abcd").exists()


def test_jobs_expire_and_their_files_go(tmp_path):
    with serving(FakeEngine(VIDEO), data_dir=str(tmp_path), video_ttl=1) as client:
        video = wait_for(client, create(client)["id"])
        assert video["expires_at"] - video["completed_at"] == 1
        wait_until(lambda: client.get(f"/v1/videos/{video['id']}").status_code == 404, timeout=5)
        assert client.get("/v1/videos").json()["data"] == []
        wait_until(lambda: not job_folders(tmp_path), timeout=5)


def test_the_store_is_bounded_oldest_finished_first(tmp_path):
    with serving(FakeEngine(VIDEO), data_dir=str(tmp_path), max_video_jobs=2) as client:
        ids = [wait_for(client, create(client)["id"])["id"] for _ in range(3)]
        assert [v["id"] for v in client.get("/v1/videos").json()["data"]] == ids[:0:-1]
        # The evicted record goes with the outcome's write; its folder right after, off the event loop.
        wait_until(lambda: len(job_folders(tmp_path)) == 2, timeout=5)


def sqlite_store(data_dir: Path) -> JobStore:
    return JobStore(job_store_url("sqlite", str(data_dir)), data_dir=str(data_dir))


def test_one_server_per_data_directory(tmp_path):
    store = sqlite_store(tmp_path)
    with pytest.raises(DataDirInUse):
        sqlite_store(tmp_path)
    store.close()
    sqlite_store(tmp_path).close()


def test_image_models_list_no_videos_but_refuse_creation():
    with serving(FakeEngine(IMAGES)) as client:
        assert client.get("/v1/videos").json() == {"object": "list", "data": [], "first_id": None, "last_id": None,
                                                  "has_more": False}
        assert_openai_error(client.post("/v1/videos", json={"prompt": "x"}), 400, "input_reference")


@pytest.mark.parametrize("limit", ["\u00b3", "\u0663", "0", "101", "-1", "1.5"])
def test_list_limit_that_is_not_plain_digits_is_a_400(limit):  # found by schemathesis: '³'.isdigit() is True
    with serving(FakeEngine(VIDEO)) as client:
        assert_openai_error(client.get("/v1/videos", params={"limit": limit}), 400, "limit")


# --- webhooks (one server, its SQLite outbox) -------------------------------------------------------------------

WEBHOOK_SECRET = "whsec_" + "dGhlLXNlY3JldC1vZi10aGUtdW5pdC10ZXN0cw=="


def test_webhooks_announce_completed_and_failed_jobs_and_survive_a_restart(tmp_path):
    import openai
    from services import webhook_receiver

    sdk = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1", max_retries=0)
    engine = FakeEngine(VIDEO)
    with webhook_receiver(fail_first=100) as down:  # a receiver that keeps failing: the events stay in the outbox
        options = dict(data_dir=str(tmp_path), webhook_secret=WEBHOOK_SECRET, allow_private_urls=True)
        with serving(engine, webhook_url=down.url, **options) as client:
            done = create(client)
            wait_until(lambda: client.get(f"/v1/videos/{done['id']}").json()["status"] == "completed")
            engine.fail_with = RuntimeError("boom")
            failed = create(client)
            wait_until(lambda: client.get(f"/v1/videos/{failed['id']}").json()["status"] == "failed")
            down.wait_for(2)
            assert all(d.status == 500 for d in down.deliveries)
    with webhook_receiver() as receiver, serving(engine, webhook_url=receiver.url, **options):
        deliveries = receiver.wait_for(2, succeeded=True)  # delivered by the next start (retry after 1 s)
        events = sorted((sdk.webhooks.unwrap(d.body, d.headers, secret=WEBHOOK_SECRET) for d in deliveries),
                        key=lambda e: e.type)
        assert [(e.type, e.data.id) for e in events] == [("video.completed", done["id"]),
                                                         ("video.failed", failed["id"])]
        time.sleep(1.5)
        assert len(receiver.deliveries) == 2  # once each
