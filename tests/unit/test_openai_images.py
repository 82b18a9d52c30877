"""The OpenAI Images and Models API over the real app and runner, with a fake engine: every field, every refusal."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest
from fakes import IMAGES, INPAINT, TEXT_ONLY, FakeEngine, assert_openai_error, data_uri, png_bytes, serving
from PIL import Image

from openai_dit.protocol.models import IMAGE_MODEL_ALIASES

GEN = {"prompt": "a red fox", "size": "64x64", "num_inference_steps": 2}


def image_of(item: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))


def upload(data: bytes, name: str = "in.png") -> tuple[str, bytes, str]:
    return (name, data, "image/png")


def sse_payloads(text: str) -> list:
    """The `data:` payloads of an SSE body, in order; `[DONE]` kept as a string."""
    payloads = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[len("data: "):]
                payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


# --- generations ---------------------------------------------------------------------------------------------
def test_generation_response_shape_and_echoed_fields():
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        response = client.post("/v1/images/generations", json={**GEN, "n": 3, "seed": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"created", "data", "background", "output_format", "quality", "size", "usage"}
        assert (body["size"], body["output_format"], body["background"], body["quality"]) == \
            ("64x64", "png", "opaque", "auto")
        assert len(body["data"]) == 3 and image_of(body["data"][0]).size == (64, 64)
        usage = body["usage"]
        assert usage["output_tokens"] == 3 * 4 * 4  # 64/16 x 64/16 patches per image
        assert usage["input_tokens_details"] == {"image_tokens": 0, "text_tokens": 3}
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert engine.calls[-1].seeds == [5, 6, 7]


def test_size_auto_is_the_model_default_and_bad_sizes_state_the_constraint():
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        for size in (None, "auto"):
            body = {"prompt": "x", "num_inference_steps": 1, **({"size": size} if size else {})}
            assert client.post("/v1/images/generations", json=body).json()["size"] == "256x128"
        for bad in ("1000x1000", "64x4112", "32x32", "big", "1024*1024", "0x0"):
            error = assert_openai_error(client.post("/v1/images/generations", json={**GEN, "size": bad}), 400,
                                        "size")
            assert "multiples of 16" in error["message"]
        assert "nearest: 1008x1008" in client.post("/v1/images/generations",
                                                   json={**GEN, "size": "1010x1010"}).json()["error"]["message"]
        assert len(engine.calls) == 2  # nothing refused reached the model


@pytest.mark.parametrize(("quality", "steps"), [("low", 2), ("medium", 4), ("high", 8), ("auto", 8),
                                                ("standard", 4), ("hd", 8), (None, 8)])
def test_quality_maps_to_steps(quality, steps):
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        body = {"prompt": "x", "size": "64x64", **({"quality": quality} if quality else {})}
        response = client.post("/v1/images/generations", json=body)
        assert response.status_code == 200, response.text
        assert engine.calls[-1].num_inference_steps == steps
        assert response.json()["quality"] == {"standard": "medium", "hd": "high", None: "auto"}.get(quality, quality)


def test_quality_steps_are_configurable_and_explicit_steps_win():
    engine = FakeEngine(IMAGES)
    with serving(engine, quality_steps="low=3,high=5") as client:
        client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64", "quality": "low"})
        client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64", "quality": "medium"})
        client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64", "quality": "high",
                                                    "num_inference_steps": 1})
        assert [c.num_inference_steps for c in engine.calls] == [3, 4, 1]


def test_output_formats_and_compression():
    with serving(FakeEngine(IMAGES)) as client:
        for fmt, pil in (("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")):
            body = client.post("/v1/images/generations", json={**GEN, "output_format": fmt}).json()
            assert body["output_format"] == fmt and image_of(body["data"][0]).format == pil
        small = client.post("/v1/images/generations", json={**GEN, "output_format": "jpeg", "output_compression": 5,
                                                             "seed": 1}).json()
        large = client.post("/v1/images/generations", json={**GEN, "output_format": "jpeg", "output_compression": 95,
                                                             "seed": 1}).json()
        assert len(small["data"][0]["b64_json"]) < len(large["data"][0]["b64_json"])
        assert client.post("/v1/images/generations", json={**GEN, "output_compression": 100}).status_code == 200
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "output_compression": 50}), 400,
                            "output_compression")
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "output_format": "gif"}), 400,
                            "output_format")
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "output_format": "jpeg",
                                                                         "output_compression": 101}), 400,
                            "output_compression")


def test_url_response_is_served_by_the_server_for_a_bounded_time(monkeypatch):
    import openai_dit.serving.output_store as store_module

    with serving(FakeEngine(IMAGES), image_url_ttl=60) as client:
        body = client.post("/v1/images/generations", json={**GEN, "n": 2, "response_format": "url",
                                                           "output_format": "webp"}).json()
        urls = [item["url"] for item in body["data"]]
        assert all(u.startswith("http://testserver.local/v1/images/files/") and u.endswith(".webp") for u in urls)
        assert "b64_json" not in body["data"][0]
        download = client.get(urls[0])
        assert download.status_code == 200 and download.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(download.content)).size == (64, 64)
        assert_openai_error(client.get("/v1/images/files/nope.png"), 404)
        assert_openai_error(client.get("/v1/images/files/..%2F..%2Fetc%2Fpasswd"), 404)
        later = store_module.time.monotonic() + 61
        monkeypatch.setattr(store_module.time, "monotonic", lambda: later)
        assert_openai_error(client.get(urls[1]), 404)


def test_public_url_sets_the_link_base():
    with serving(FakeEngine(IMAGES), public_url="https://gen.example.com/") as client:
        body = client.post("/v1/images/generations", json={**GEN, "response_format": "url"}).json()
        assert body["data"][0]["url"].startswith("https://gen.example.com/v1/images/files/")


def test_extensions_reach_the_pipeline_and_accepted_openai_fields():
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        response = client.post("/v1/images/generations", json={
            **GEN, "negative_prompt": "blurry", "guidance_scale": 3.5, "seed": 42, "style": "vivid", "user": "u-1",
            "moderation": "low", "background": "opaque", "model": "fake-model", "safety_identifier": "s-1",
            "complexity": "high", "frame_count": 4, "frame_duration_ms": 100, "svg": {"model": "x"}})
        assert response.status_code == 200, response.text
        call = engine.calls[-1]
        assert (call.negative_prompt, call.guidance_scale, call.seed) == ("blurry", 3.5, 42)
        assert client.post("/v1/images/generations", json={**GEN, "background": "auto"}).json()["background"] == \
            "opaque"


@pytest.mark.parametrize(("field", "code"), [("unknown_field", "unknown_parameter"), ("num_inference_step",
                                             "unknown_parameter"), ("lora", "unsupported_parameter"),
                                            ("enable_teacache", "unsupported_parameter")])
def test_a_field_neither_openai_nor_its_peers_define_is_a_400_naming_it(field, code):
    with serving(FakeEngine(IMAGES)) as client:
        for route, send in (("/v1/images/generations", "json"), ("/v1/images/edits", "data")):
            body = {**GEN, field: "1"}
            files = [("image", ("a.png", png_bytes(), "image/png"))] if send == "data" else None
            response = client.post(route, **{send: body}, files=files) if files else client.post(route, json=body)
            error = assert_openai_error(response, 400, field)
            assert error["code"] == code, error
        cache = client.post("/v1/images/generations", json={**GEN, "cache": {"enabled": False, "colour": 1}})
        assert assert_openai_error(cache, 400, "cache.colour")["code"] == "unknown_parameter"


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"size": "64x64"}, 400, "prompt"),
    ({**GEN, "prompt": ""}, 400, "prompt"),
    ({**GEN, "n": 0}, 400, "n"),
    ({**GEN, "n": 11}, 400, "n"),
    ({**GEN, "n": 2.5}, 400, "n"),
    ({**GEN, "quality": "ultra"}, 400, "quality"),
    ({**GEN, "response_format": "file"}, 400, "response_format"),
    ({**GEN, "background": "transparent"}, 400, "background"),
    ({**GEN, "style": "noir"}, 400, "style"),
    ({**GEN, "partial_images": 4}, 400, "partial_images"),
    ({**GEN, "num_inference_steps": 0}, 400, "num_inference_steps"),
    ({**GEN, "true_cfg_scale": 4.0}, 400, "true_cfg_scale"),
    ({**GEN, "cache": {"rdt": 0.2}}, 400, "cache"),
    ({**GEN, "model": "gpt-4o"}, 404, "model"),
    ({**GEN, "model": "sora-2"}, 404, "model"),  # OpenAI's names count on their own routes only
])
def test_bad_generation_requests(body, status, param):
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        assert_openai_error(client.post("/v1/images/generations", json=body), status, param)
        assert engine.calls == []


def test_negative_prompt_refused_where_the_model_has_none():
    with serving(FakeEngine(TEXT_ONLY)) as client:
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "negative_prompt": "x"}), 400,
                            "negative_prompt")


def test_per_request_cache_settings_with_cache_on():
    engine = FakeEngine(IMAGES)
    with serving(engine, cache=True) as client:
        ok = client.post("/v1/images/generations", json={**GEN, "cache": {"rdt": 0.3, "scm": "fast",
                                                                          "max_warmup_steps": 2}})
        assert ok.status_code == 200, ok.text
        assert engine.calls[-1].cache == {"enabled": None, "rdt": 0.3, "max_warmup_steps": 2,
                                          "max_cached_steps": None, "max_continuous_cached_steps": None,
                                          "scm_policy": "fast"}
        off = client.post("/v1/images/generations", json={**GEN, "cache": {"enabled": False}})
        assert off.status_code == 200 and engine.calls[-1].cache["enabled"] is False
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "cache": {"Fn": 1}}), 400)
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "cache": {"rdt": "a"}}), 400)
    with serving(FakeEngine(IMAGES), cache=True, compile=True) as client:
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "cache": {"rdt": 0.3}}), 400, "cache")


def test_queue_full_is_a_429_with_retry_after():
    engine = FakeEngine(IMAGES)
    engine.gate = threading.Event()
    with serving(engine, max_queued_requests=1) as client:
        def post():
            client.post("/v1/images/generations", json=GEN)

        first, second = threading.Thread(target=post), threading.Thread(target=post)
        first.start()
        assert engine.started.wait(5)
        second.start()
        deadline = threading.Event()
        while client.runner.queued < 1 and not deadline.wait(0.01):
            pass
        for body in (GEN, {**GEN, "stream": True}):
            response = client.post("/v1/images/generations", json=body)
            assert_openai_error(response, 429)
            assert int(response.headers["retry-after"]) >= 1
        engine.gate.set()
        first.join(10)
        second.join(10)


# --- streaming -----------------------------------------------------------------------------------------------
def test_stream_sends_partials_then_completed_then_done():
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        response = client.post("/v1/images/generations", json={**GEN, "num_inference_steps": 8, "stream": True,
                                                               "partial_images": 3, "output_format": "webp"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_payloads(response.text)
        assert events[-1] == "[DONE]"
        partials, completed = events[:3], events[3]
        assert [e["type"] for e in partials] == ["image_generation.partial_image"] * 3
        assert [e["partial_image_index"] for e in partials] == [0, 1, 2]
        for event in partials + [completed]:
            assert {"b64_json", "background", "created_at", "output_format", "quality", "size"} <= set(event)
            assert event["output_format"] == "webp" and event["size"] == "64x64"
            assert image_of(event).format == "WEBP"
        assert completed["type"] == "image_generation.completed" and "partial_image_index" not in completed
        assert completed["usage"]["output_tokens"] == 16
        assert "event: image_generation.partial_image" in response.text


def test_stream_without_partials_and_with_several_images():
    with serving(FakeEngine(IMAGES)) as client:
        events = sse_payloads(client.post("/v1/images/generations", json={**GEN, "stream": True}).text)
        assert [e["type"] if isinstance(e, dict) else e for e in events] == ["image_generation.completed", "[DONE]"]
        events = sse_payloads(client.post("/v1/images/generations", json={
            **GEN, "n": 2, "stream": True, "partial_images": 1, "num_inference_steps": 4}).text)
        kinds = [e["type"] if isinstance(e, dict) else e for e in events]
        assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"] * 2 + ["[DONE]"]


def test_an_error_after_the_stream_started_is_an_error_event():
    class Failing(FakeEngine):
        def run_batch(self, requests, cancelled, on_progress=None):
            raise RuntimeError("CUDA out of memory at /secret/path")

    with serving(Failing(IMAGES)) as client:
        response = client.post("/v1/images/generations", json={**GEN, "stream": True})
        assert response.status_code == 200
        events = sse_payloads(response.text)
        assert events[-1] == "[DONE]"
        error = events[0]
        assert error["type"] == "error" and error["error"]["code"] == "internal_error"
        assert "/secret" not in response.text and "CUDA" not in response.text


def test_partial_images_refused_where_the_model_cannot_preview():
    with serving(FakeEngine(TEXT_ONLY)) as client:
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "stream": True, "partial_images": 2}),
                            400, "partial_images")
        assert client.post("/v1/images/generations", json={**GEN, "stream": True, "partial_images": 0}).status_code \
            == 200


# --- edits ---------------------------------------------------------------------------------------------------
def test_edit_accepts_image_and_image_list_and_converts_string_fields():
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        single = client.post("/v1/images/edits", files=[("image", upload(png_bytes(96, 64)))],
                             data={"prompt": "make it blue", "n": "2", "seed": "9", "guidance_scale": "2.5"})
        assert single.status_code == 200, single.text
        assert single.json()["size"] == "96x64" and len(single.json()["data"]) == 2  # auto: the input's size
        assert (engine.calls[-1].seeds, engine.calls[-1].guidance_scale) == ([9, 10], 2.5)
        one_in_list = client.post("/v1/images/edits", files=[("image[]", upload(png_bytes(64, 64)))],
                                  data={"prompt": "x", "num_inference_steps": "1"})
        assert one_in_list.status_code == 200, one_in_list.text
        two = client.post("/v1/images/edits", files=[("image[]", upload(png_bytes(64, 64))),
                                                     ("image[]", upload(png_bytes(80, 80, (0, 0, 255))))],
                          data={"prompt": "x", "size": "128x64", "num_inference_steps": "1"})
        assert two.status_code == 200, two.text
        assert [im.size for im in engine.calls[-1].images] == [(64, 64), (80, 80)]
        assert two.json()["usage"]["input_tokens_details"]["image_tokens"] == 16 + 25
        assert image_of(two.json()["data"][0]).size == (128, 64)
        assert engine.calls[-1].prompt == "x"


def test_edit_size_auto_rounds_the_first_input_to_the_model_multiple():
    with serving(FakeEngine(IMAGES)) as client:
        response = client.post("/v1/images/edits", files=[("image", upload(png_bytes(100, 70)))],
                               data={"prompt": "x", "size": "auto", "num_inference_steps": "1"})
        assert response.json()["size"] == "96x64"


def test_edit_flattened_extra_body_fields_and_booleans():
    engine = FakeEngine(IMAGES)
    with serving(engine, cache=True) as client:
        response = client.post("/v1/images/edits", files=[("image[]", upload(png_bytes(64, 64)))],
                               data={"prompt": "x", "cache[rdt]": "0.25", "cache[enabled]": "true",
                                     "stream": "false", "num_inference_steps": "1"})
        assert response.status_code == 200, response.text
        assert engine.calls[-1].cache["rdt"] == 0.25 and engine.calls[-1].cache["enabled"] is True


def test_edit_streams_with_the_edit_event_names():
    with serving(FakeEngine(IMAGES)) as client:
        response = client.post("/v1/images/edits", files=[("image[]", upload(png_bytes(64, 64)))],
                               data={"prompt": "x", "stream": "true", "partial_images": "1",
                                     "num_inference_steps": "4"})
        kinds = [e["type"] if isinstance(e, dict) else e for e in sse_payloads(response.text)]
        assert kinds == ["image_edit.partial_image", "image_edit.completed", "[DONE]"]


@pytest.mark.parametrize(("files", "data", "param"), [
    ([], {"prompt": "x"}, "image"),
    ([("image[]", upload(png_bytes()))] * 3, {"prompt": "x"}, "image"),
    ([("image", upload(b"not an image"))], {"prompt": "x"}, "image"),
    ([("image", upload(b"GIF89a" + b"\0" * 20))], {"prompt": "x"}, "image"),
    ([("image", upload(png_bytes()))], {}, "prompt"),
    ([("image", upload(png_bytes()))], {"prompt": "x", "n": "two"}, "n"),
    ([("image", upload(png_bytes()))], {"prompt": "x", "stream": "maybe"}, "stream"),
    ([("image", upload(png_bytes()))], {"prompt": "x", "input_fidelity": "max"}, "input_fidelity"),
    ([("image", upload(png_bytes()))], {"prompt": "x", "size": "63x64"}, "size"),
    ([("image", upload(png_bytes())), ("mask", upload(png_bytes(mode="RGBA", color=(0, 0, 0, 0))))],
     {"prompt": "x"}, "mask"),
    ([("image", upload(png_bytes())), ("prompt", upload(b"x"))], {}, "prompt"),
    ([("image", upload(png_bytes()))], {"prompt": "x", "cache[rdt]": "0.1"}, "cache"),
    ([("image", upload(png_bytes()))], {"prompt": "x", "model": "gpt-4o"}, "model"),
])
def test_bad_edits(files, data, param):
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        response = client.post("/v1/images/edits", files=files or None, data=data)
        assert_openai_error(response, 404 if param == "model" else 400, param)
        assert engine.calls == []


def test_edit_image_over_the_pixel_limit_is_refused_before_decoding():
    with serving(FakeEngine(IMAGES), max_image_pixels=64 * 64) as client:
        response = client.post("/v1/images/edits", files=[("image", upload(png_bytes(65, 64)))], data={"prompt": "x"})
        assert assert_openai_error(response, 400, "image")["code"] == "image_too_large"


def test_edit_needs_multipart_and_a_model_that_edits():
    with serving(FakeEngine(IMAGES)) as client:
        assert_openai_error(client.post("/v1/images/edits", json={"prompt": "x"}), 400)
    with serving(FakeEngine(TEXT_ONLY)) as client:
        error = assert_openai_error(client.post("/v1/images/edits", files=[("image", upload(png_bytes()))],
                                                data={"prompt": "x"}), 400, "image")
        assert error["code"] == "unsupported_task"


def test_mask_on_an_inpainting_model():
    engine = FakeEngine(INPAINT)
    mask = Image.new("RGBA", (32, 32), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 16, 32))  # left half transparent: repaint it
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    with serving(engine) as client:
        response = client.post("/v1/images/edits", files=[("image", upload(png_bytes(32, 32))),
                                                          ("mask", upload(buffer.getvalue()))],
                               data={"prompt": "x", "size": "64x64", "num_inference_steps": "1"})
        assert response.status_code == 200, response.text
        sent = engine.calls[-1].mask
        assert sent.mode == "L" and sent.getpixel((0, 0)) == 255 and sent.getpixel((31, 0)) == 0
        no_alpha = client.post("/v1/images/edits", files=[("image", upload(png_bytes(32, 32))),
                                                          ("mask", upload(png_bytes(32, 32)))], data={"prompt": "x"})
        assert assert_openai_error(no_alpha, 400, "mask")["code"] == "invalid_mask"
        wrong_size = client.post("/v1/images/edits", files=[("image", upload(png_bytes(32, 32))),
                                                            ("mask", upload(png_bytes(16, 16, (0, 0, 0, 0), "RGBA")))],
                                 data={"prompt": "x"})
        assert_openai_error(wrong_size, 400, "mask")


# --- variations ----------------------------------------------------------------------------------------------
def test_variations():
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        response = client.post("/v1/images/variations", files=[("image", upload(png_bytes(64, 64)))],
                               data={"n": "2", "size": "64x64", "response_format": "b64_json",
                                     "num_inference_steps": "1"})
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == 2 and engine.calls[-1].prompt == ""
        two = [("image", upload(png_bytes())), ("image", upload(png_bytes()))]
        assert_openai_error(client.post("/v1/images/variations", files=two, data={}), 400, "image")
        assert_openai_error(client.post("/v1/images/variations", files=[("image", upload(png_bytes()))],
                                        data={"n": "11"}), 400, "n")
    with serving(FakeEngine(TEXT_ONLY)) as client:
        assert_openai_error(client.post("/v1/images/variations", files=[("image", upload(png_bytes()))], data={}),
                            400, "image")


# --- models --------------------------------------------------------------------------------------------------
def test_models_list_and_retrieve():
    with serving(FakeEngine(IMAGES), served_model_name="org/fake-1") as client:
        listing = client.get("/v1/models").json()
        assert listing["object"] == "list"
        assert [m["id"] for m in listing["data"]] == ["org/fake-1", *IMAGE_MODEL_ALIASES]  # an image model
        card = client.get("/v1/models/org/fake-1").json()
        assert card["object"] == "model" and card["owned_by"] and isinstance(card["created"], int)
        assert card["capabilities"]["tasks"] == ["image-edit", "text-to-image"]
        assert card["capabilities"]["partial_images"] is True
        assert assert_openai_error(client.get("/v1/models/other"), 404, "model")["code"] == "model_not_found"
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "model": "fake-model"}), 404, "model")
        assert client.post("/v1/images/generations", json={**GEN, "model": "org/fake-1"}).status_code == 200


def test_openai_model_names_are_aliases_unless_turned_off_and_dall_e_defaults_to_links():
    """Open WebUI sends dall-e-2; LangChain's DallEAPIWrapper sends it without response_format and reads .url."""
    with serving(FakeEngine(IMAGES), served_model_name=["org/fake-1", "fake"]) as client:
        for model in ("dall-e-2", "dall-e-3"):
            data = client.post("/v1/images/generations", json={**GEN, "model": model}).json()["data"][0]
            assert data["url"].startswith("http://") and "b64_json" not in data
        for model in ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "fake", None):
            body = {**GEN, "model": model} if model else GEN
            assert "b64_json" in client.post("/v1/images/generations", json=body).json()["data"][0]
        explicit = client.post("/v1/images/generations", json={**GEN, "model": "dall-e-2", "response_format":
                                                                "b64_json"}).json()["data"][0]
        assert "b64_json" in explicit
        assert client.get("/v1/models/dall-e-3").json()["id"] == "dall-e-3"
        assert_openai_error(client.get("/v1/models/sora-2"), 404, "model")  # not a video model
    with serving(FakeEngine(IMAGES), no_openai_model_aliases=True, default_response_format="url") as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["fake-model"]
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "model": "dall-e-2"}), 404, "model")
        assert "url" in client.post("/v1/images/generations", json=GEN).json()["data"][0]  # the operator's default


def test_peers_width_and_height_are_a_size_held_to_the_same_rule():
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        body = client.post("/v1/images/generations", json={"prompt": "x", "width": 96, "height": 64}).json()
        assert body["size"] == "96x64" and (engine.calls[-1].width, engine.calls[-1].height) == (96, 64)
        same = client.post("/v1/images/generations", json={"prompt": "x", "size": "96x64", "width": 96, "height": 64})
        assert same.status_code == 200
        assert_openai_error(client.post("/v1/images/generations", json={"prompt": "x", "width": 100, "height": 64}),
                            400, "width")
        assert_openai_error(client.post("/v1/images/generations", json={"prompt": "x", "width": 96}), 400, "height")
        assert_openai_error(client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64", "width": 96,
                                                                         "height": 64}), 400, "size")
        form = client.post("/v1/images/edits", data={"prompt": "x", "width": "64", "height": "96"},
                           files=[("image", upload(png_bytes(40, 30)))])
        assert form.status_code == 200 and form.json()["size"] == "64x96"


def test_edits_take_image_urls_and_vllm_omnis_mask_image():
    engine = FakeEngine(INPAINT)
    mask = png_bytes(32, 32, mode="RGBA", color=(0, 0, 0, 0))
    with serving(engine) as client:
        by_url = client.post("/v1/images/edits", data={"prompt": "x", "url": data_uri(png_bytes(32, 32)),
                                                      "mask_image": data_uri(mask)})
        assert by_url.status_code == 200, by_url.text
        assert engine.calls[-1].images[0].size == (32, 32) and engine.calls[-1].mask is not None
        as_file = client.post("/v1/images/edits", data={"prompt": "x"}, files=[
            ("image", upload(png_bytes(32, 32))), ("mask_image", ("m.png", mask, "image/png"))])
        assert as_file.status_code == 200, as_file.text
        both = client.post("/v1/images/edits", data={"prompt": "x", "mask_image": data_uri(mask)},
                           files=[("image", upload(png_bytes(32, 32))), ("mask", ("m.png", mask, "image/png"))])
        assert_openai_error(both, 400, "mask")
        assert_openai_error(client.post("/v1/images/edits", data={"prompt": "x", "url": "http://127.0.0.1:1/a.png"}),
                            400, "url[0]")  # fetched under the same rules as every image URL


def test_bodies_over_the_limit_are_413():
    big = png_bytes(64, 64) + bytes(40_000)
    with serving(FakeEngine(IMAGES), max_request_body_mb=0.02) as client:
        response = client.post("/v1/images/edits", files=[("image", upload(big))], data={"prompt": "x"})
        assert_openai_error(response, 413)
        assert_openai_error(client.post("/v1/images/generations", json={**GEN, "prompt": "x" * 30_000}), 413)
