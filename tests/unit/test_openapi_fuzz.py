"""Schemathesis over the server's own OpenAPI document: generated requests for every operation (valid and
invalid bodies, multipart uploads included) never get a 5xx, and every response matches the documented status
codes, content types, headers and schemas. The app runs in a real uvicorn server with an API key, on the fake
engine (what is under test is the HTTP layer). CI runs a fixed (derandomized) set;
`OPENAI_DIT_FUZZ_EXAMPLES=500 OPENAI_DIT_FUZZ_RANDOM=1` explores further."""

from __future__ import annotations

import collections
import os
import socket
import tempfile
import threading
import time

import httpx
import msgspec
import pytest
import schemathesis
import uvicorn
from fakes import IMAGES, FakeEngine
from hypothesis import HealthCheck, settings

from openai_dit.config import ServerConfig
from openai_dit.runner import Runner
from openai_dit.server import create_app

pytestmark = pytest.mark.slow  # hundreds of generated requests

KEY = "sk-fuzz"
EXAMPLES = int(os.environ.get("OPENAI_DIT_FUZZ_EXAMPLES", "60"))
RANDOM = bool(os.environ.get("OPENAI_DIT_FUZZ_RANDOM"))
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance, schemathesis.checks.response_schema_conformance,
          schemathesis.checks.response_headers_conformance]
CASES: collections.Counter = collections.Counter()


def _make_app(data_dir: str):
    config = ServerConfig(model_path="fake-model", data_dir=data_dir, max_image_bytes_mb=1.0)
    runner = Runner(lambda: FakeEngine(IMAGES), max_queued=64, max_batch_size=4)
    return create_app(config, runner, [KEY]), runner


def _document() -> dict:
    """The app's OpenAPI document, built without starting it (the fixture's server serves the same)."""
    with tempfile.TemporaryDirectory(prefix="openai-dit-fuzz-") as data_dir:
        app, _ = _make_app(data_dir)
        app.state.services.videos.jobs.store.close()
        return app.openapi_schema.to_schema()


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def server_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="openai-dit-fuzz-") as data_dir:
        app, runner = _make_app(data_dir)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not (server.started and runner.ready):
            assert time.monotonic() < deadline, "the fuzzing server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(30)
    print(f"\nschemathesis: {sum(CASES.values())} generated cases over {len(CASES)} operations")


def test_the_server_serves_this_document(server_url):
    served = httpx.get(f"{server_url}/docs/openapi.json").json()
    assert served == msgspec.json.decode(msgspec.json.encode(DOCUMENT))
    assert len(served["paths"]) >= 20


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_and_responses_match_the_schema(case, server_url):
    case.call_and_validate(base_url=server_url, headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS)
    CASES[case.operation.label] += 1
