"""API keys: every route of the app needs one unless it is on the public list; the key never leaks."""

from __future__ import annotations

import logging
import re

import pytest
from fakes import FakeEngine, assert_openai_error, png_bytes, serving

from openai_dit.config import ServerConfig
from openai_dit.server.middleware import PUBLIC_PATHS, ApiKeys, RequestIdLogFilter, is_public

KEY = "sk-test-4f1c9a7e2b"
OTHER_KEY = "sk-second-key-77"
WRONG = "sk-wrong-key-00000"

# What must stay reachable without a key; everything else in the route table must not.
EXPECTED_PUBLIC_ROUTES = {"/health", "/ready", "/readyz", "/health/ready", "/live", "/livez", "/health/live",
                          "/metrics", "/docs", "/docs/openapi.json", "/docs/oauth2-redirect.html", "/playground"}


def _concrete(template: str) -> str:
    """A route template with its parameters filled in (any value: the key check comes before the handler)."""
    return re.sub(r"\{(\w+):(\w+)\}", lambda m: "fake-model" if m.group(2) == "path" else "x", template)


@pytest.fixture
def client():
    with serving(FakeEngine(), api_key=[KEY, OTHER_KEY]) as client:
        yield client


def test_every_route_needs_a_key_unless_public(client):
    seen_public = set()
    routes = [(route.path, method) for route in client.app.routes for method in sorted(route.methods)]
    assert len(routes) > 30
    for template, method in routes:
        path = _concrete(template)
        public = is_public(path)
        if public:
            seen_public.add(path)
        anonymous = client.request(method, path)
        wrong = client.request(method, path, headers={"Authorization": f"Bearer {WRONG}"})
        if public:
            assert anonymous.status_code != 401, (method, path)
            continue
        for response in (anonymous, wrong):
            error = assert_openai_error(response, 401)
            assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
            assert response.headers["www-authenticate"] == "Bearer"
            assert WRONG not in response.text
        for headers in ({"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {OTHER_KEY}"},
                        {"x-api-key": KEY}):
            assert client.request(method, path, headers=headers).status_code != 401, (method, path, headers)
    assert seen_public == EXPECTED_PUBLIC_ROUTES


def test_unknown_paths_need_a_key_too(client):
    assert_openai_error(client.get("/v1/nothing-here"), 401)
    assert_openai_error(client.post("/v1/chat/completions", json={}), 401)
    assert client.get("/v1/nothing-here", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404


@pytest.mark.parametrize("path", ["//v1/models", "/v1/models/", "/health/../v1/models", "/health/%2e%2e/v1/models",
                                  "/metrics/../v1/models", "/HEALTH", "/health/x", "/docs/anything",
                                  "/playground/../v1/models", "/v1/images/files/../../v1/models",
                                  "/v1/images/files/short.png"])
def test_the_decision_is_on_the_routed_path(client, path):
    response = client.get(path)
    assert response.status_code == 401, (path, response.status_code)


@pytest.mark.parametrize("headers", [
    {"Host": "127.0.0.1/health"}, {"X-Forwarded-Prefix": "/health"}, {"X-Original-URL": "/health"},
    {"X-Rewrite-URL": "/metrics"}, {"X-Forwarded-Host": "localhost", "X-Forwarded-Uri": "/health"},
    {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY}, {"Authorization": "Bearer "},
    {"api-key": KEY}, {"Cookie": f"api_key={KEY}"},
])
def test_headers_that_look_like_a_way_in_are_not(client, headers):
    assert client.get("/v1/models", headers=headers).status_code == 401


def test_key_in_the_query_string_is_not_accepted(client):
    assert client.get(f"/v1/models?api_key={KEY}").status_code == 401


def test_public_paths_stay_public(client):
    assert client.get("/health").status_code == 200
    assert client.get("/ready").json() == {"status": "ready"}
    assert client.get("/live").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/docs/openapi.json").status_code == 200
    assert client.get("/playground").status_code == 200


def test_image_links_are_capability_urls(client):
    body = {"prompt": "x", "size": "256x256", "response_format": "url"}
    created = client.post("/v1/images/generations", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert created.status_code == 200, created.text
    url = created.json()["data"][0]["url"]
    path = url.split("://", 1)[1].split("/", 1)[1]
    assert client.get("/" + path).status_code == 200  # no key: fetched like an OpenAI pre-signed link


def test_the_key_never_appears_in_logs_errors_or_metrics(client, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RequestIdLogFilter())
    auth = {"Authorization": f"Bearer {KEY}"}
    client.post("/v1/images/generations", json={"prompt": "x", "size": "256x256"}, headers=auth)
    client.post("/v1/images/generations", json={"prompt": "x", "size": "7x7"}, headers=auth)  # a 400
    client.post("/v1/images/edits", files={"image": ("a.png", png_bytes())}, data={"prompt": "p"},
                headers={"x-api-key": KEY})
    client.get("/v1/models", headers={"Authorization": f"Bearer {WRONG}"})
    metrics = client.get("/metrics").text
    for secret in (KEY, WRONG):
        assert secret not in caplog.text
        assert secret not in metrics
    assert 'status="401"' in metrics and 'outcome="unauthorized"' in metrics
    assert KEY not in repr(client.app.state.services.config)


def test_without_keys_the_api_is_open():
    with serving(FakeEngine()) as client:
        assert client.get("/v1/models").status_code == 200


def test_keys_from_flag_environment_and_file(tmp_path, monkeypatch):
    secret_file = tmp_path / "keys"
    secret_file.write_text("file-key-1\n\n  file-key-2  \n")
    monkeypatch.setenv("OPENAI_DIT_API_KEY", "env-key-1, env-key-2")
    config = ServerConfig(api_key=["flag-key"], api_key_file=str(secret_file))
    assert config.api_keys() == ["flag-key", "env-key-1", "env-key-2", "file-key-1", "file-key-2"]
    keys = ApiKeys(config.api_keys())
    assert keys.accepts([(b"authorization", b"Bearer env-key-2")])
    assert keys.accepts([(b"x-api-key", b"file-key-2")])
    assert not keys.accepts([(b"x-api-key", b"file-key-3")])
    assert not keys.accepts([(b"authorization", b"Bearer file-key-1x")])
    assert not ApiKeys([])


def test_public_list_is_explicit_whole_paths():
    assert all(path.startswith("/") and "{" not in path and not path.endswith("/") for path in PUBLIC_PATHS)
    assert not is_public("/health/")  # the routed path is normalised before it is looked up
    assert not is_public("/v1/models")
