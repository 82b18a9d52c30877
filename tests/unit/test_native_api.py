"""The native API over the real app and runner, with a fake engine: contract, validation and errors."""

from __future__ import annotations

import threading
import time

import pytest
from fakes import TEXT_ONLY, VIDEO, FakeEngine, assert_openai_error, data_uri, decode_png, png_bytes, serving

BODY = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2}


def test_health_model_info_and_docs():
    with serving(FakeEngine()) as client:
        health = client.get("/health")
        assert (health.status_code, health.text) == (200, "OK")
        info = client.get("/get_model_info").json()
        assert {"model_path", "device", "torch_dtype", "enable_cache", "is_loaded"} <= set(info)
        assert info["is_loaded"] is True and info["model_path"] == "fake-model"
        assert info["tasks"] == ["image-edit", "text-to-image"]
        page = client.get("/docs")
        assert page.status_code == 200 and "cdn." not in page.text  # works without internet access
        for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
            assert f"/docs/assets/{asset}" in page.text
            assert client.get(f"/docs/assets/{asset}").status_code == 200
        assert client.get("/docs/assets/..%2F__init__.py").status_code == 404
        assert client.get("/docs/assets/swagger-editor.css").status_code == 404
        schema = client.get("/docs/openapi.json").json()
        assert "/generate" in schema["paths"]


def test_generate_returns_old_response_fields_and_reported_seeds():
    with serving(FakeEngine()) as client:
        response = client.post("/generate", json={**BODY, "num_images": 2, "seed": 7, "include_stats": True})
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["images"]) == 2
        assert decode_png(body["images"][0]).size == (64, 64)
        assert body["seeds"] == [7, 8]
        assert body["inference_start_time"].endswith("Z") and body["inference_end_time"].endswith("Z")
        assert body["time_cost"] >= 0
        assert body["stats"]["seeds"] == [7, 8]
        assert "video" not in body
        assert response.headers["x-request-id"]


def test_random_seed_is_reported_and_reproduces():
    engine = FakeEngine()
    with serving(engine) as client:
        first = client.post("/generate", json=BODY).json()
        seed = first["seeds"][0]
        again = client.post("/generate", json={**BODY, "seed": seed}).json()
        assert again["images"] == first["images"]
        negative = client.post("/generate", json={**BODY, "seed": -1}).json()
        assert negative["seeds"][0] >= 0


def test_defaults_follow_the_old_contract_and_the_model():
    engine = FakeEngine()
    with serving(engine) as client:
        assert client.post("/generate", json={"prompt": "x", "num_inference_steps": 1}).status_code == 200
        request = engine.calls[-1]
        assert (request.width, request.height, request.guidance_scale) == (1024, 1024, 7.5)
        assert request.negative_prompt is None and request.num_outputs == 1
        # With an input image and no size: its aspect ratio at the model's default pixel count.
        edit = {"prompt": "x", "num_inference_steps": 1, "image_urls": [data_uri(png_bytes(40, 30))]}
        assert client.post("/generate", json=edit).status_code == 200
        assert (engine.calls[-1].width, engine.calls[-1].height) == (1184, 880)
        assert client.post("/generate", json={**edit, "width": 512, "height": 256}).status_code == 200
        assert (engine.calls[-1].width, engine.calls[-1].height) == (512, 256)


@pytest.mark.parametrize(("width", "height", "made"), [(724, 1080, (720, 1072)), (72, 100, (64, 96)),
                                                       (64, 4096, (64, 4096)), (1023, 65, (1008, 64))])
def test_any_size_in_range_is_made_as_the_old_server_made_it(width, height, made):
    """The old server's pipelines rounded each side down to their multiple (its flux2_image_edit client asks for
    724x1080); the response says what was made."""
    engine = FakeEngine()
    with serving(engine) as client:
        response = client.post("/generate", json={**BODY, "width": width, "height": height})
        assert response.status_code == 200, response.text
        assert (engine.calls[-1].width, engine.calls[-1].height) == made
        assert (response.json()["width"], response.json()["height"]) == made
        assert decode_png(response.json()["images"][0]).size == made


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"width": 32}, "width"),
        ({"width": 5000}, "width"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 201}, "num_inference_steps"),
        ({"guidance_scale": 35}, "guidance_scale"),
        ({"num_images": 5}, "num_images"),
        ({"fps": 0}, "fps"),
        ({"output_format": "jpeg"}, "output_format"),
        ({"width": "wide"}, "width"),
        ({"prompt": ""}, "prompt"),
        ({"sigmas": [1.0]}, "sigmas"),
        ({"image_urls": ["not an image reference"]}, "image_urls[0]"),
        ({"image_urls": [data_uri(b"not a png")]}, "image_urls[0]"),
        ({"image_urls": ["data:image/png;base64,@@@@"]}, "image_urls[0]"),
        ({"image_urls": [data_uri(png_bytes())] * 3}, "image_urls"),
        ({"image_urls": [data_uri(png_bytes(32, 32)), data_uri(png_bytes(400, 16))]}, "image_urls[1]"),
        ({"output_format": "path"}, "output_format"),
    ],
)
def test_bad_inputs_are_400_naming_the_parameter(patch, param):
    engine = FakeEngine()
    with serving(engine) as client:
        assert_openai_error(client.post("/generate", json={**BODY, **patch}), 400, param)
        assert engine.calls == []


def test_missing_prompt_and_malformed_json():
    with serving(FakeEngine()) as client:
        assert_openai_error(client.post("/generate", json={"width": 64}), 400, "prompt")
        assert_openai_error(client.post("/generate", content=b"{not json",
                                        headers={"content-type": "application/json"}), 400)


def test_unsupported_task_names_task_and_model():
    with serving(FakeEngine(TEXT_ONLY)) as client:
        error = assert_openai_error(client.post("/generate", json={**BODY, "image_urls": [data_uri(png_bytes())]}),
                                    400, "image_urls")
        assert "image-edit" in error["message"] and "fake-model" in error["message"]
        error = assert_openai_error(client.post("/generate", json={**BODY, "num_frames": 9}), 400)
        assert "text-to-video" in error["message"]
        error = assert_openai_error(client.post("/generate", json={**BODY, "true_cfg_scale": 4.0}), 400,
                                    "true_cfg_scale")


def test_video_task_selection_frames_rule_and_mp4():
    import av

    engine = FakeEngine(VIDEO)
    with serving(engine) as client:
        assert_openai_error(client.post("/generate", json={**BODY, "num_frames": 8}), 400, "num_frames")
        assert_openai_error(client.post("/generate", json={**BODY, "num_frames": 9, "num_images": 2}), 400,
                            "num_images")
        response = client.post("/generate", json={**BODY, "num_frames": 9, "fps": 8})
        assert response.status_code == 200, response.text
        assert "images" not in response.json()
        import base64
        import io

        with av.open(io.BytesIO(base64.b64decode(response.json()["video"]))) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == 9 and (frames[0].width, frames[0].height) == (64, 64)
        # A video-only model makes video without num_frames (the model's default frame count).
        assert client.post("/generate", json=BODY).status_code == 200
        assert engine.calls[-1].num_frames == 9
        client.post("/generate", json={**BODY, "image_urls": [data_uri(png_bytes())]})
        assert engine.calls[-1].task.value == "image-to-video"


def test_edit_images_are_decoded_to_rgb_and_passed_in_order():
    engine = FakeEngine()
    with serving(engine) as client:
        refs = [data_uri(png_bytes(40, 30, (0, 0, 0, 0), "RGBA")), data_uri(png_bytes(20, 10, (1, 2, 3)))]
        response = client.post("/generate", json={**BODY, "image_urls": refs})
        assert response.status_code == 200, response.text
        images = engine.calls[-1].images
        assert [im.size for im in images] == [(40, 30), (20, 10)]
        assert all(im.mode == "RGB" for im in images)
        assert images[0].getpixel((0, 0)) == (255, 255, 255)  # transparent -> white, not black


def test_local_paths_refused_unless_under_allowed_folder(tmp_path):
    picture = tmp_path / "in.png"
    picture.write_bytes(png_bytes())
    outside = tmp_path.parent / "outside.png"
    outside.write_bytes(png_bytes())
    with serving(FakeEngine()) as client:
        assert_openai_error(client.post("/generate", json={**BODY, "image_urls": [str(picture)]}), 400,
                            "image_urls[0]")
    with serving(FakeEngine(), allowed_local_media_path=str(tmp_path)) as client:
        assert client.post("/generate", json={**BODY, "image_urls": [str(picture)]}).status_code == 200
        escape = str(tmp_path / ".." / "outside.png")
        error = assert_openai_error(client.post("/generate", json={**BODY, "image_urls": [escape]}), 400)
        assert str(tmp_path) not in error["message"]


def test_path_output_only_under_operator_folder(tmp_path):
    with serving(FakeEngine(), output_dir=str(tmp_path)) as client:
        body = client.post("/generate", json={**BODY, "output_format": "path", "output_dir": "run1"}).json()
        saved = body["images"][0]
        assert saved.startswith(str(tmp_path / "run1")) and saved.endswith(".png")
        for bad in ("/etc", "../up", "a/../../b", "~root"):
            assert_openai_error(client.post("/generate", json={**BODY, "output_format": "path", "output_dir": bad}),
                                400, "output_dir")


def test_404_405_413_in_openai_shape():
    with serving(FakeEngine(), max_request_body_mb=0.01) as client:
        assert_openai_error(client.get("/nope"), 404)
        assert_openai_error(client.get("/generate"), 405)
        big = {**BODY, "prompt": "x" * 20_000}
        assert_openai_error(client.post("/generate", json=big), 413)


def test_flush_cache_runs_on_the_engine():
    engine = FakeEngine()
    with serving(engine) as client:
        response = client.post("/flush_cache")
        assert response.status_code == 200
        assert response.json() == {"message": "Cache flushed successfully"}
        assert engine.flushes == 1


def test_503_until_the_model_is_loaded():
    from litestar.testing import TestClient

    from openai_dit.config import ServerConfig
    from openai_dit.runner import Runner
    from openai_dit.server import create_app

    loaded = threading.Event()

    def slow_engine():
        loaded.wait(10)
        return FakeEngine()

    runner = Runner(slow_engine)
    with TestClient(create_app(ServerConfig(model_path="fake"), runner)) as client:
        health = client.get("/health")
        assert (health.status_code, health.text) == (503, "Model not loaded")
        assert_openai_error(client.post("/generate", json=BODY), 503)
        assert client.get("/get_model_info").json()["is_loaded"] is False
        loaded.set()
        deadline = time.monotonic() + 5
        while not runner.ready and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.get("/health").status_code == 200


def test_queue_full_is_429_with_retry_after():
    engine = FakeEngine()
    engine.gate = threading.Event()
    with serving(engine, max_queued_requests=1) as client:
        results = []
        threads = [threading.Thread(target=lambda: results.append(client.post("/generate", json=BODY)))
                   for _ in range(2)]
        threads[0].start()
        assert engine.started.wait(5)  # first request running, holding the gate
        threads[1].start()
        deadline = time.monotonic() + 5
        while client.runner.queued < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        rejected = client.post("/generate", json=BODY)
        assert_openai_error(rejected, 429)
        assert int(rejected.headers["retry-after"]) >= 1
        engine.gate.set()
        for thread in threads:
            thread.join(10)
        assert [r.status_code for r in results] == [200, 200]


def test_engine_failure_is_a_generic_500_and_the_server_keeps_serving():
    class Failing(FakeEngine):
        def run_batch(self, requests, cancelled, on_progress=None):
            if requests[0].prompt == "fail":
                raise RuntimeError("CUDA error at /opt/secret/kernel.cu:42 (0x7f00deadbeef)")
            return super().run_batch(requests, cancelled, on_progress)

    with serving(Failing()) as client:
        error = assert_openai_error(client.post("/generate", json={**BODY, "prompt": "fail"}), 500)
        assert "secret" not in error["message"] and "CUDA" not in error["message"]
        assert client.post("/generate", json=BODY).status_code == 200


def test_image_urls_fetched_over_http_only_when_private_addresses_are_allowed():
    import http.server

    payload = png_bytes(24, 16)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", "/pic.png")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=origin.serve_forever, args=(0.02,), daemon=True).start()
    url = f"http://127.0.0.1:{origin.server_address[1]}"
    try:
        engine = FakeEngine()
        with serving(engine) as client:
            error = assert_openai_error(client.post("/generate", json={**BODY, "image_urls": [f"{url}/pic.png"]}),
                                        400, "image_urls[0]")
            assert error["code"] == "forbidden_url" and "127.0.0.1" not in error["message"]
        with serving(engine, allow_private_urls=True) as client:
            response = client.post("/generate", json={**BODY, "image_urls": [f"{url}/hop"]})
            assert response.status_code == 200, response.text
            assert engine.calls[-1].images[0].size == (24, 16)
    finally:
        origin.shutdown()
