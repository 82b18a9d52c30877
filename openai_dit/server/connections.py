"""Connection limits under uvicorn: what a client may hold before a request is even routed.

uvicorn alone keeps a connection that sends nothing, sends its headers a byte at a time, or trickles its body, for
as long as the client likes (its keep-alive timeout covers only the time between requests), and its httptools
parser takes header blocks of any size. `guarded_protocol(limits)` is uvicorn's h11 protocol with limits on all of
that: at most `max_connections` open connections (beyond them a 503 in the OpenAI shape, then close), the request
line and headers within `header_timeout` seconds of the first byte (or of the connection, for one that sends
nothing), headers of at most `max_header_bytes` (h11's bound; beyond it a 431), and the body within
`body_timeout` seconds of the headers (then a 408 if no response has started, and close). Idle keep-alive
connections close after uvicorn's own `timeout_keep_alive`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import h11
import msgspec
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionLimits", "guarded_protocol"]

logger = logging.getLogger("openai_dit.connections")


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float  # 0: none
    max_header_bytes: int


def _error(status: int, reason: bytes, message: str, code: str, extra: list[tuple[bytes, bytes]]) -> bytes:
    """A complete HTTP/1.1 response in the OpenAI error shape, for answering below the ASGI app."""
    body = msgspec.json.encode({"error": {"message": message, "type": "invalid_request_error" if status < 500 else
                                          "service_unavailable", "param": None, "code": code}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), *extra]
    head = b"HTTP/1.1 %d %s\r\n" % (status, reason) + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return head + b"\r\n" + body


_TOO_MANY = _error(503, b"Service Unavailable", "The server has too many open connections; retry shortly.",
                   "too_many_connections", [(b"retry-after", b"1")])
_HEADERS_TOO_LARGE = _error(431, b"Request Header Fields Too Large", "The request's headers are too large.",
                            "headers_too_large", [])
_MALFORMED = _error(400, b"Bad Request", "The request is not valid HTTP/1.1.", "invalid_http", [])
_BODY_TIMEOUT = _error(408, b"Request Timeout", "The request body did not arrive in time.", "body_timeout", [])


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    class GuardedH11Protocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _phase: str | None = None  # None: waiting for the request's headers; "body": for its body

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                logger.warning("refused a connection: %d open (--max-connections)", len(self.connections) - 1)
                transport.write(_TOO_MANY)
                transport.close()
                return
            self._arm(limits.header_timeout, None)  # a connection that sends nothing is not kept

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE and self._timer is None:
                self._arm(limits.header_timeout, None)  # the next request on a kept-alive connection
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow()

        def _follow(self) -> None:
            """Move the timer on as the request goes from headers to body to done."""
            state = self.conn.their_state
            if state is h11.SEND_BODY and self._phase != "body":
                self._disarm()
                if limits.body_timeout:
                    self._arm(limits.body_timeout, "body")
            elif state is not h11.SEND_BODY and state is not h11.IDLE:
                self._disarm()

        def _arm(self, seconds: float, phase: str | None) -> None:
            self._disarm()
            self._phase = phase
            self._timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._phase = None, None

        def _expired(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            if self._phase == "body":
                logger.info("closed a connection: its body did not arrive within %g s", limits.body_timeout)
                if self.cycle is None or not self.cycle.response_started:
                    self.transport.write(_BODY_TIMEOUT)
                if self.cycle is not None:
                    self.cycle.disconnected = True
                    self.cycle.message_event.set()
            else:
                logger.info("closed a connection: no complete request within %g s", limits.header_timeout)
            self.transport.close()

        def send_400_response(self, msg: str) -> None:
            """h11 refused the request: headers over the limit (431) or not HTTP (400); one line in the log."""
            too_large = len(self.conn.trailing_data[0]) >= limits.max_header_bytes
            self.transport.write(_HEADERS_TOO_LARGE if too_large else _MALFORMED)
            self.transport.close()

    return GuardedH11Protocol
