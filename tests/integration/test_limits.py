"""Connection limits on the real process over real sockets: slow and idle connections are closed in bounded time,
a connection cap refuses cleanly, huge header blocks are refused without growing the process, and normal clients
keep being served throughout."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from .conftest import running_server

pytestmark = pytest.mark.integration

LIMITS = ("--header-timeout", "1.5", "--body-timeout", "2", "--keep-alive-timeout", "1", "--max-connections", "40",
          "--max-header-kb", "16")


@pytest.fixture(scope="module")
def server():
    with running_server("--model-path", "tiny:flux", *LIMITS) as url:
        yield url


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def closed(sock: socket.socket, within: float) -> tuple[bool, bytes]:
    """Whether the server closed `sock` within `within` seconds, and what it sent first."""
    sock.settimeout(0.2)
    deadline, received = time.monotonic() + within, b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def served(url: str) -> bool:
    return httpx.get(f"{url}/v1/models", timeout=10).status_code == 200


def open_files(url: str) -> int:
    import os

    return len(os.listdir(f"/proc/{url.process.pid}/fd"))


def test_slowloris_connections_are_closed_and_others_still_served(server):
    sockets = [connect(server) for _ in range(20)]
    for sock in sockets:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    started = time.monotonic()
    for step in range(6):  # keep trickling header bytes: the deadline runs from the first byte
        assert served(server)
        for sock in sockets:
            try:
                sock.sendall(b"X-Slow-%d: y\r\n" % step)
            except OSError:
                pass
        time.sleep(0.3)
    assert all(closed(sock, 3)[0] for sock in sockets)
    assert time.monotonic() - started < 6
    assert served(server)


def test_idle_connections_are_bounded_and_closed(server):
    baseline = open_files(server)
    sockets = [connect(server) for _ in range(100)]  # more than --max-connections
    time.sleep(0.3)
    refused = sum(1 for sock in sockets[60:] if b"too_many_connections" in closed(sock, 1)[1])
    assert refused > 0  # beyond the cap: a 503 in the OpenAI shape, then closed
    assert all(closed(sock, 3)[0] for sock in sockets[:30])  # the idle ones: closed after --header-timeout
    time.sleep(0.5)
    assert open_files(server) <= baseline + 5
    assert served(server)


def test_a_trickled_body_is_cut_off_with_a_408(server):
    sock = connect(server)
    sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"prompt\": ")
    started = time.monotonic()
    gone, answer = False, b""
    while not gone and time.monotonic() - started < 6:
        try:
            sock.sendall(b" ")
        except OSError:
            break
        gone, chunk = closed(sock, 0.5)
        answer += chunk
    assert (gone or not answer) and time.monotonic() - started < 5
    assert b"408" in answer.split(b"\r\n")[0] and b"body_timeout" in answer
    assert served(server)


def test_huge_header_blocks_are_refused_without_growing_the_process(server):
    def rss() -> int:
        for line in open(f"/proc/{server.process.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    before = rss()
    for _ in range(8):
        sock = connect(server)
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(64):  # 8 MiB of headers
                sock.sendall(b"X-Big: " + b"a" * (128 * 1024) + b"\r\n")
        except OSError:
            pass  # refused and closed midway
        gone, answer = closed(sock, 3)
        assert gone and (not answer or answer.startswith(b"HTTP/1.1 431")), answer[:80]
    assert rss() - before < 32 * 1024 * 1024
    assert served(server)


def test_keep_alive_connections_close_when_idle_and_no_server_header(server):
    with httpx.Client(timeout=10) as client:
        response = client.get(f"{server}/v1/models")
        assert "server" not in response.headers
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    gone, answer = closed(sock, 4)  # answered, then closed after --keep-alive-timeout
    assert answer.startswith(b"HTTP/1.1 200") and gone
