"""The one mapping from exceptions to status codes and OpenAI error bodies (server/errors.py); the domain
exceptions themselves import no web framework."""

import subprocess
import sys

import msgspec
from litestar.exceptions import MethodNotAllowedException, NotFoundException

from openai_dit.errors import (
    EngineLost,
    InvalidRequest,
    ModelLoading,
    QueueFull,
    RequestCancelled,
    ServerDraining,
    ServiceUnavailable,
    UnsupportedTask,
)
from openai_dit.server.errors import map_error


def body(exc: BaseException) -> dict:
    return msgspec.to_builtins(map_error(exc).body)


def test_api_errors_keep_their_status_param_and_code():
    mapped = map_error(InvalidRequest("width must be a multiple of 16", param="width", code="invalid_size"))
    assert mapped.status_code == 400
    assert body(InvalidRequest("width must be a multiple of 16", param="width", code="invalid_size")) == {
        "error": {"message": "width must be a multiple of 16", "type": "invalid_request_error", "param": "width",
                  "code": "invalid_size"}}
    assert body(UnsupportedTask("no video", param="num_frames"))["error"]["code"] == "unsupported_task"
    full = map_error(QueueFull(retry_after_s=7))
    assert (full.status_code, full.headers["Retry-After"]) == (429, "7")


def test_http_errors_and_unknown_exceptions():
    assert map_error(NotFoundException()).status_code == 404
    assert map_error(MethodNotAllowedException()).status_code == 405
    crash = map_error(KeyError("/srv/models/secret.safetensors"))
    assert crash.status_code == 500 and "secret" not in body(KeyError("/srv/models/secret.safetensors"))["error"][
        "message"]
    assert crash.body.error.type == "server_error"


def test_a_gone_client_gets_no_body():
    mapped = map_error(RequestCancelled())
    assert (mapped.status_code, mapped.body) == (499, None)


def test_loading_draining_and_a_lost_engine_are_distinct_503s():
    kinds = [ModelLoading(), ServerDraining(), EngineLost()]
    assert all(isinstance(e, ServiceUnavailable) and map_error(e).status_code == 503 for e in kinds)
    assert len({type(e) for e in kinds}) == 3 and len({e.message for e in kinds}) == 3
    assert all(map_error(e).headers["Retry-After"] for e in kinds)


def test_the_domain_exceptions_import_no_web_framework():
    code = "import sys, openai_dit.errors; print('litestar' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
