"""What clients others wrote send: peers' extension fields on the video route, unknown fields on every route, model
names on the video route, and CORS for browser apps on other origins (with and without API keys)."""

from __future__ import annotations

import json
import time

import pytest
from fakes import IMAGES, VIDEO, FakeEngine, assert_openai_error, data_uri, png_bytes, serving

ORIGIN = "https://ui.example.com"
KEY = "sk-cors-test"


def finished(client, video_id: str) -> dict:
    deadline = time.monotonic() + 10
    while (video := client.get(f"/v1/videos/{video_id}").json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return video


def test_peers_video_fields_mean_what_they_mean_there():
    """vLLM-Omni's clients send width/height as form fields; SGLang's send reference_url; both take n=1."""
    engine = FakeEngine(VIDEO)
    with serving(engine) as client:
        form = client.post("/v1/videos", data={"prompt": "x", "width": "96", "height": "64", "num_frames": "5",
                                               "fps": "12", "n": "1"},
                           files={"input_reference": ("in.png", png_bytes(40, 30), "image/png")})
        assert form.status_code == 200, form.text
        video = finished(client, form.json()["id"])
        assert (video["size"], video["num_frames"], video["fps"]) == ("96x64", 5, 12)
        assert (engine.calls[-1].width, engine.calls[-1].height) == (96, 64)
        for field, value in (("image_reference", json.dumps({"image_url": data_uri(png_bytes(32, 32))})),
                             ("reference_url", data_uri(png_bytes(32, 32)))):
            response = client.post("/v1/videos", data={"prompt": "x", "size": "64x64", field: value})
            assert response.status_code == 200, response.text
            assert finished(client, response.json()["id"])["status"] == "completed"
            assert engine.calls[-1].images and engine.calls[-1].images[0].size == (64, 64)
        as_json = client.post("/v1/videos", json={"prompt": "x", "image_reference": {"image_url": data_uri(
            png_bytes(32, 32))}, "width": 64, "height": 64})
        assert as_json.status_code == 200, as_json.text
        assert client.post("/v1/videos", json={"prompt": "x", "model": "sora-2-pro"}).status_code == 200


@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"width": 100, "height": 64}, "width", "invalid_size"),
    ({"width": 64}, "height", None),
    ({"size": "64x64", "width": 96, "height": 64}, "size", None),
    ({"n": 2}, "n", None),
    ({"image_reference": "not json"}, "image_reference", None),
    ({"reference_url": data_uri(png_bytes()), "image_reference": {"image_url": data_uri(png_bytes())}},
     "reference_url", None),
    ({"generate_sound": True}, "generate_sound", "unsupported_parameter"),
    ({"boundary_ratio": 0.5}, "boundary_ratio", "unsupported_parameter"),
    ({"colour": "red"}, "colour", "unknown_parameter"),
])
def test_bad_peer_fields_on_the_video_route_are_named(fields, param, code):
    with serving(FakeEngine(VIDEO)) as client:
        error = assert_openai_error(client.post("/v1/videos", json={"prompt": "x", **fields}), 400, param)
        assert code is None or error["code"] == code, error
        form = {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in fields.items()}
        assert_openai_error(client.post("/v1/videos", data={"prompt": "x", **form}), 400, param)


@pytest.mark.parametrize(("route", "body"), [
    ("/generate", {"prompt": "x", "width": 64, "height": 64, "num_inference_step": 2}),
    ("/generate", {"prompt": "x", "response_format": "url"}),
    ("/v1/videos/video_0123456789abcdef0123456789abcdef/remix", {"prompt": "x", "seconds": "4"}),
])
def test_unknown_fields_are_400s_on_every_route(route, body):
    engine = FakeEngine(IMAGES)
    with serving(engine) as client:
        field = next(k for k in body if k not in ("prompt", "width", "height"))
        error = assert_openai_error(client.post(route, json=body), 400, field)
        assert error["code"] == "unknown_parameter" and not engine.calls


def test_cors_preflight_and_answers_carry_the_headers_even_with_keys():
    with serving(FakeEngine(IMAGES), allowed_origins=[ORIGIN + ",https://other.example"], api_key=[KEY]) as client:
        preflight = client.options("/v1/images/generations", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-lang"})
        assert preflight.status_code == 204, preflight.text
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        ok = client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"},
                         headers={"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in ok.headers["access-control-expose-headers"]
        denied = client.post("/v1/images/generations", json={"prompt": "x"}, headers={"Origin": ORIGIN})
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == ORIGIN  # readable
        stranger = client.options("/v1/images/generations", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers
        plain = client.post("/v1/images/generations", json={"prompt": "x"},
                            headers={"Origin": "https://evil.example", "Authorization": f"Bearer {KEY}"})
        assert "access-control-allow-origin" not in plain.headers


def test_no_cors_headers_by_default():
    with serving(FakeEngine(IMAGES)) as client:
        response = client.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"},
                               headers={"Origin": ORIGIN})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
        preflight = client.options("/v1/images/generations", headers={"Origin": ORIGIN,
                                                                       "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers
