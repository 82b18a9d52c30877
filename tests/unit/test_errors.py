"""The one mapping from exceptions to status codes and OpenAI error bodies."""

from litestar.exceptions import MethodNotAllowedException, NotFoundException

from openai_dit.errors import InvalidRequest, QueueFull, RequestCancelled, UnsupportedTask, error_response


def test_api_errors_keep_their_status_param_and_code():
    mapped = error_response(InvalidRequest("width must be a multiple of 16", param="width", code="invalid_size"))
    assert mapped.status_code == 400
    assert mapped.body == {"error": {"message": "width must be a multiple of 16", "type": "invalid_request_error",
                                     "param": "width", "code": "invalid_size"}}
    assert error_response(UnsupportedTask("no video", param="num_frames")).body["error"]["code"] == "unsupported_task"
    full = error_response(QueueFull(retry_after_s=7))
    assert (full.status_code, full.headers["Retry-After"]) == (429, "7")


def test_http_errors_and_unknown_exceptions():
    assert error_response(NotFoundException()).status_code == 404
    assert error_response(MethodNotAllowedException()).status_code == 405
    crash = error_response(KeyError("/srv/models/secret.safetensors"))
    assert crash.status_code == 500 and "secret" not in crash.body["error"]["message"]
    assert crash.body["error"]["type"] == "server_error"


def test_a_gone_client_gets_no_body():
    mapped = error_response(RequestCancelled())
    assert (mapped.status_code, mapped.body) == (499, None)
