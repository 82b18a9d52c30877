"""Safe input (decode limits, URL fetching rules) and output encoders."""

from __future__ import annotations

import asyncio
import base64
import io
import socket

import httpx
import numpy as np
import pytest
from fakes import png_bytes
from PIL import Image

from openai_dit.errors import InvalidRequest
from openai_dit.media import MediaPolicy, decode_image, encode_image, encode_video, load_image_bytes


def test_decode_checks_pixels_before_decoding_and_format_allowlist():
    with pytest.raises(InvalidRequest) as exc:
        decode_image(png_bytes(200, 200), max_pixels=100 * 100, param="image")
    assert exc.value.param == "image" and exc.value.code == "image_too_large"
    tiff = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiff, format="TIFF")
    with pytest.raises(InvalidRequest):
        decode_image(tiff.getvalue(), max_pixels=10**6, param="image")
    with pytest.raises(InvalidRequest):
        decode_image(png_bytes()[:40], max_pixels=10**6, param="image")  # truncated


def test_decode_applies_exif_orientation_and_converts_modes():
    buffer = io.BytesIO()
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    decoded = decode_image(buffer.getvalue(), max_pixels=10**6, param="image")
    assert decoded.size == (20, 40) and decoded.mode == "RGB"
    gray = io.BytesIO()
    Image.new("L", (8, 8), 128).save(gray, format="PNG")
    assert decode_image(gray.getvalue(), max_pixels=10**6, param="image").mode == "RGB"


def _policy(handler, **kwargs) -> MediaPolicy:
    return MediaPolicy(transport=httpx.MockTransport(handler), **kwargs)


@pytest.fixture
def fake_dns(monkeypatch):
    """public.test resolves to a public address, internal.test to a private one; nothing real is contacted."""
    table = {"public.test": "93.184.216.34", "internal.test": "10.1.2.3", "meta.test": "169.254.169.254",
             "cgnat.test": "100.64.1.2", "mapped.test": "::ffff:127.0.0.1"}

    async def getaddrinfo(self, host, port, **kwargs):
        if host not in table:
            raise socket.gaierror("unknown")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)


def test_fetch_public_url(fake_dns):
    policy = _policy(lambda request: httpx.Response(200, content=png_bytes()))
    assert asyncio.run(load_image_bytes("https://public.test/a.png", policy, param="p")) == png_bytes()


@pytest.mark.parametrize("url", ["http://internal.test/x", "http://meta.test/latest", "http://cgnat.test/x",
                                 "http://mapped.test/x", "http://127.0.0.1/x",
                                 "http://[::1]/x", "http://localhost/x"])
def test_private_addresses_are_refused(fake_dns, url, monkeypatch):
    calls = []
    policy = _policy(lambda request: calls.append(request) or httpx.Response(200))
    if "127.0.0.1" in url or "::1" in url or "localhost" in url:
        async def loopback(self, host, port, **kwargs):
            address = "::1" if ":" in host else "127.0.0.1"
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

        monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", loopback)
    with pytest.raises(InvalidRequest) as exc:
        asyncio.run(load_image_bytes(url, policy, param="p"))
    assert exc.value.code == "forbidden_url"
    assert calls == []


def test_every_redirect_hop_is_checked_again(fake_dns):
    hops = []

    def handler(request):
        hops.append(request.url.host)
        return httpx.Response(302, headers={"location": "http://internal.test/secret"})

    with pytest.raises(InvalidRequest) as exc:
        asyncio.run(load_image_bytes("https://public.test/a.png", _policy(handler), param="p"))
    assert exc.value.code == "forbidden_url" and hops == ["public.test"]


def test_connections_go_only_to_the_checked_public_address(monkeypatch):
    """DNS rebinding: the address is checked when connecting, and the connection uses that address."""
    from openai_dit.media import fetch

    answers = iter(["93.184.216.34", "10.0.0.7"])  # public first, private on the next lookup

    async def getaddrinfo(self, host, port, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    connected = []

    class Recorder:
        async def connect_tcp(self, host, port, **kwargs):
            connected.append(host)
            raise httpx.ConnectError("stop here")

    backend = fetch._PublicOnlyBackend("p")
    backend._inner = Recorder()
    with pytest.raises(httpx.ConnectError):
        asyncio.run(backend.connect_tcp("rebind.test", 80))
    assert connected == ["93.184.216.34"]
    with pytest.raises(InvalidRequest) as exc:
        asyncio.run(backend.connect_tcp("rebind.test", 80))
    assert exc.value.code == "forbidden_url" and connected == ["93.184.216.34"]


def test_real_fetch_to_loopback_is_refused_at_connect():
    """Without a fake transport: the guarded transport refuses a loopback server outright."""
    with pytest.raises(InvalidRequest) as exc:
        asyncio.run(load_image_bytes("http://127.0.0.1:9/x.png", MediaPolicy(), param="p"))
    assert exc.value.code == "forbidden_url"


def test_private_urls_allowed_when_operator_says_so(fake_dns):
    policy = _policy(lambda request: httpx.Response(200, content=b"ok"), allow_private_urls=True)
    assert asyncio.run(load_image_bytes("http://internal.test/x", policy, param="p")) == b"ok"


def test_byte_cap_and_http_errors(fake_dns):
    big = _policy(lambda request: httpx.Response(200, content=b"x" * 2048), max_bytes=1024)
    with pytest.raises(InvalidRequest) as exc:
        asyncio.run(load_image_bytes("https://public.test/big", big, param="p"))
    assert exc.value.code == "image_too_large"
    missing = _policy(lambda request: httpx.Response(404))
    with pytest.raises(InvalidRequest) as exc:
        asyncio.run(load_image_bytes("https://public.test/none", missing, param="p"))
    assert "404" in exc.value.message


def test_slow_origin_times_out(fake_dns):
    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200)

    with pytest.raises(InvalidRequest) as exc:
        asyncio.run(load_image_bytes("https://public.test/slow", _policy(slow, fetch_timeout=0.2), param="p"))
    assert exc.value.code == "fetch_timeout"


def test_inline_references():
    data = png_bytes()
    encoded = base64.b64encode(data).decode()
    policy = MediaPolicy()
    assert asyncio.run(load_image_bytes(f"data:image/png;base64,{encoded}", policy, param="p")) == data
    assert asyncio.run(load_image_bytes(encoded, policy, param="p")) == data
    too_big = MediaPolicy(max_bytes=10)
    with pytest.raises(InvalidRequest):
        asyncio.run(load_image_bytes(encoded, too_big, param="p"))


def test_image_encoders_round_trip():
    pixels = np.random.default_rng(0).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    png = Image.open(io.BytesIO(encode_image(pixels, "png")))
    assert png.format == "PNG" and np.array_equal(np.asarray(png), pixels)
    for fmt, name in (("jpeg", "JPEG"), ("webp", "WEBP")):
        assert Image.open(io.BytesIO(encode_image(pixels, fmt, quality=80))).format == name


def test_video_encoder_writes_h264_mp4_with_every_frame():
    import av

    frames = np.random.default_rng(0).integers(0, 256, size=(9, 33, 47, 3), dtype=np.uint8)  # odd sizes
    with av.open(io.BytesIO(encode_video(frames, fps=8))) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = list(container.decode(stream))
    assert len(decoded) == 9 and (decoded[0].width, decoded[0].height) == (48, 34)
