"""The control channel: rank 0 sends each work item to the other ranks over TCP.

Rank 0 listens on the rendezvous address's interface (MASTER_ADDR: loopback on one machine, the cluster interface
across nodes), never on every interface, and accepts only connections that present a random token handed out
over the process group. Messages flow one way, rank 0 to the others, from rank 0's generation thread only, so
nothing (no keep-alive) can interleave with a running call. Idle ranks wait on a socket, not on a collective,
so an idle launch never hits a collective timeout. A peer's socket closing means that rank died: rank 0's
monitor threads report it at once, and a rank whose rank 0 is gone exits.
"""

from __future__ import annotations

import logging
import os
import pickle
import secrets
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import torch.distributed as dist

__all__ = ["ControlClient", "ControlServer", "open_control_channel"]

logger = logging.getLogger("openai_dit.ranks")

_HEADER = struct.Struct("!Q")
_HANDSHAKE = struct.Struct("!64sI")  # the token (hex) and the connecting rank: no pickle before authentication
_HANDSHAKE_TIMEOUT = 120.0


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ConnectionError("the control channel closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _receive(sock: socket.socket) -> bytes:
    (size,) = _HEADER.unpack(_receive_exactly(sock, _HEADER.size))
    return _receive_exactly(sock, size)


def _bind_address() -> str:
    """This node's address on the route to the rendezvous (MASTER_ADDR): loopback for a local launch, the cluster
    interface otherwise. Never every interface."""
    host = os.environ.get("MASTER_ADDR", "127.0.0.1")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # no packet is sent
            probe.connect((host, int(os.environ.get("MASTER_PORT", "29500"))))
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


class ControlServer:
    """Rank 0's side: one connection per other rank."""

    def __init__(self, peers: dict[int, socket.socket], on_peer_lost: Callable[[int], None] | None) -> None:
        self._peers = peers
        self._closing = False
        self.on_peer_lost = on_peer_lost
        for rank, sock in peers.items():
            threading.Thread(target=self._monitor, args=(rank, sock), name=f"openai-dit-rank{rank}-monitor",
                             daemon=True).start()

    def _monitor(self, rank: int, sock: socket.socket) -> None:
        """The other ranks never write after the handshake: a read returns only when the rank is gone."""
        try:
            sock.recv(1)
        except OSError:
            pass
        if not self._closing:
            logger.error("rank %d disconnected: it died or was killed", rank)
            if self.on_peer_lost is not None:
                self.on_peer_lost(rank)

    def send(self, message: Any) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        for sock in self._peers.values():
            _send(sock, payload)

    def close(self) -> None:
        self._closing = True
        for sock in self._peers.values():
            sock.close()


class ControlClient:
    """The other ranks' side."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def receive(self) -> Any:
        """The next message (blocks while idle); ConnectionError once rank 0 is gone."""
        return pickle.loads(_receive(self._sock))  # noqa: S301 - only rank 0, authenticated by token, writes here

    def close(self) -> None:
        self._sock.close()


def open_control_channel(rank: int, world_size: int, group) -> ControlServer | ControlClient:
    """Set the channel up on every rank (a collective: call it at the same point on all ranks)."""
    if rank == 0:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((_bind_address(), 0))
        listener.listen(world_size)
        address: list[tuple | None] = [(*listener.getsockname(), secrets.token_hex(32))]
    else:
        listener, address = None, [None]
    dist.broadcast_object_list(address, src=0, group=group)
    assert address[0] is not None
    host, port, token = address[0]
    if listener is None:
        sock = socket.create_connection((host, port), timeout=_HANDSHAKE_TIMEOUT)
        sock.sendall(_HANDSHAKE.pack(token.encode(), rank))
        sock.settimeout(None)
        return ControlClient(sock)
    peers: dict[int, socket.socket] = {}
    listener.settimeout(_HANDSHAKE_TIMEOUT)
    try:
        while len(peers) < world_size - 1:
            sock, _ = listener.accept()
            sock.settimeout(_HANDSHAKE_TIMEOUT)
            try:
                presented, peer_rank = _HANDSHAKE.unpack(_receive_exactly(sock, _HANDSHAKE.size))
            except (OSError, ConnectionError):  # not one of ours, or too slow
                sock.close()
                continue
            if not secrets.compare_digest(presented, token.encode()) or not 0 < peer_rank < world_size \
                    or peer_rank in peers:
                sock.close()
                continue
            sock.settimeout(None)
            peers[peer_rank] = sock
    finally:
        listener.close()
    return ControlServer(peers, on_peer_lost=None)
