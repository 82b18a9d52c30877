"""Image URLs against real origin servers that misbehave: slow, huge, or redirecting to a private address.

The origin listens on 127.0.0.1, which these tests treat as a public address (everything else on loopback stays
private), so the server's real fetch path runs: DNS check, connect-time check, redirects followed by hand."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fakes import FakeEngine, assert_openai_error, png_bytes, serving

from openai_dit.media import fetch

PUBLIC = "127.0.0.1"
PRIVATE = "127.0.0.2"  # also loopback, but not the address these tests call public


class Origin(BaseHTTPRequestHandler):
    routes: dict = {}
    hits: list = []
    streamed = 0

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        type(self).hits.append(self.path)
        self.routes[self.path](self)


def _slow(handler) -> None:
    time.sleep(4)
    _png(handler)


def _png(handler) -> None:
    data = png_bytes()
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _huge_stream(handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.end_headers()  # no length: the body simply goes on
    block = b"\x00" * 65536
    try:
        for _ in range(200 * 16):  # 200 MiB
            handler.wfile.write(block)
            Origin.streamed += len(block)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _huge_declared(handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.send_header("Content-Length", str(10 * 1024**3))
    handler.end_headers()


def _redirect(location: str):
    def respond(handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return respond


@pytest.fixture
def origins(monkeypatch):
    monkeypatch.setattr(fetch, "_address_allowed", lambda address: address == PUBLIC)
    private = ThreadingHTTPServer((PRIVATE, 0), type("Private", (Origin,), {"routes": {"/secret": _png}, "hits": []}))
    public = ThreadingHTTPServer((PUBLIC, 0), type("Public", (Origin,), {"hits": []}))
    private_url = f"http://{PRIVATE}:{private.server_port}/secret"
    public.RequestHandlerClass.routes = {
        "/ok.png": _png, "/slow.png": _slow, "/huge.png": _huge_stream, "/declared.png": _huge_declared,
        "/to-private": _redirect(private_url), "/to-metadata": _redirect("http://169.254.169.254/latest/meta-data"),
        "/to-ipv6-loopback": _redirect(f"http://[::1]:{private.server_port}/secret"),
        "/loop": _redirect("/loop"),
    }
    Origin.streamed = 0
    for server in (private, public):
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    yield f"http://{PUBLIC}:{public.server_port}", private
    for server in (private, public):
        server.shutdown()
        server.server_close()


def _generate(client, url: str):
    return client.post("/generate", json={"prompt": "p", "image_urls": [url], "width": 64, "height": 64})


def test_a_public_origin_works(origins):
    base, _ = origins
    with serving(FakeEngine()) as client:
        assert _generate(client, f"{base}/ok.png").status_code == 200


@pytest.mark.slow
def test_slow_origin_is_cut_off_at_the_fetch_timeout(origins):
    base, _ = origins
    with serving(FakeEngine(), fetch_timeout=1.0) as client:
        started = time.monotonic()
        error = assert_openai_error(_generate(client, f"{base}/slow.png"), 400, "image_urls[0]")
        assert error["code"] == "fetch_timeout" and time.monotonic() - started < 3


def test_huge_origin_is_read_only_up_to_the_byte_limit(origins):
    base, _ = origins
    with serving(FakeEngine(), max_image_bytes_mb=1.0) as client:
        error = assert_openai_error(_generate(client, f"{base}/huge.png"), 400, "image_urls[0]")
        assert error["code"] == "image_too_large"
        error = assert_openai_error(_generate(client, f"{base}/declared.png"), 400, "image_urls[0]")
        assert error["code"] == "image_too_large"
    time.sleep(0.2)
    assert Origin.streamed < 16 * 1024 * 1024  # of 200 MiB: the fetch stopped right after the limit


@pytest.mark.parametrize("path", ["/to-private", "/to-metadata", "/to-ipv6-loopback"])
def test_redirects_to_private_addresses_are_refused_without_reaching_them(origins, path):
    base, private = origins
    with serving(FakeEngine()) as client:
        error = assert_openai_error(_generate(client, f"{base}{path}"), 400, "image_urls[0]")
    assert error["code"] == "forbidden_url"
    assert private.RequestHandlerClass.hits == []
    assert str(private.server_port) not in error["message"]


def test_redirect_loops_end(origins):
    base, _ = origins
    with serving(FakeEngine()) as client:
        error = assert_openai_error(_generate(client, f"{base}/loop"), 400, "image_urls[0]")
    assert error["code"] == "fetch_failed"
