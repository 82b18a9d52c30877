"""Image references -> bytes: data URIs, raw base64, http(s) URLs under limits, allowed local files.

URLs are fetched with httpx under a total timeout and a byte cap; redirects are followed by hand so every hop
is checked again; private, loopback, link-local and metadata addresses are refused unless the operator allows
them. Local paths are read only below the operator's `--allowed-local-media-path`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from ..errors import InvalidRequest

__all__ = ["MediaPolicy", "check_byte_limit", "load_image_bytes"]

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[\w.-]+)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)
_BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_MAX_REDIRECTS = 5


@dataclass(frozen=True)
class MediaPolicy:
    max_bytes: int = 20 * 1024 * 1024
    fetch_timeout: float = 15.0
    allow_private_urls: bool = False
    allowed_local_path: str | None = None
    # Tests pass a fake transport (httpx.MockTransport); None means the network.
    transport: httpx.AsyncBaseTransport | None = field(default=None, compare=False)


def check_byte_limit(size: int, max_bytes: int, param: str) -> None:
    """An input of `size` bytes over the limit is a 400 naming `param`, whichever way it arrived."""
    if size > max_bytes:
        raise InvalidRequest(f"'{param}' is larger than {max_bytes} bytes.", param=param, code="image_too_large")


def _b64decode(text: str, *, max_bytes: int, param: str) -> bytes:
    check_byte_limit(len(text) * 3 // 4 - 3, max_bytes, param)
    compact = "".join(text.split())
    try:
        if "-" in compact or "_" in compact:
            return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{param}' is not valid base64.", param=param, code="invalid_base64") from None


def _address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global excludes private, loopback, link-local (cloud metadata), shared (CGNAT), reserved and
    # documentation ranges alike.
    return ip.is_global and not ip.is_multicast


async def _public_addresses(host: str, port: int, param: str) -> list[str]:
    """Resolve `host`; every address must be public, or the URL is refused."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise InvalidRequest(f"'{param}': the host could not be resolved.", param=param,
                             code="unreachable_url") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or not all(_address_allowed(address) for address in addresses):
        raise InvalidRequest(f"'{param}': URLs that resolve to private, loopback or link-local addresses are "
                             "not allowed.", param=param, code="forbidden_url")
    return addresses


class _PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Resolves and checks at connect time, then connects to the checked address: a DNS answer that changes
    between the check and the connection (rebinding) cannot reach a private address. TLS still verifies the
    URL's host name."""

    def __init__(self, param: str) -> None:
        self._param = param
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        address = (await _public_addresses(host, port, self._param))[0]
        return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise InvalidRequest(f"'{self._param}': not an http(s) URL.", param=self._param, code="invalid_url")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PublicOnlyTransport(httpx.AsyncHTTPTransport):
    def __init__(self, param: str) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(ssl_context=httpx.create_ssl_context(),
                                                  network_backend=_PublicOnlyBackend(param))


async def _check_host(url: str, policy: MediaPolicy, param: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"'{param}' must be an http(s) URL, a data URI or base64.", param=param,
                             code="invalid_url")
    if not policy.allow_private_urls:
        await _public_addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), param)


async def _fetch(url: str, policy: MediaPolicy, param: str) -> bytes:
    transport = policy.transport
    if transport is None and not policy.allow_private_urls:
        transport = _PublicOnlyTransport(param)
    async with httpx.AsyncClient(follow_redirects=False, timeout=policy.fetch_timeout, trust_env=False,
                                 transport=transport) as client:
        for _ in range(_MAX_REDIRECTS + 1):
            await _check_host(url, policy, param)
            async with client.stream("GET", url, headers={"Accept": "image/*"}) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("location", ""))
                    continue
                if response.status_code != 200:
                    raise InvalidRequest(f"'{param}': fetching the image returned HTTP {response.status_code}.",
                                         param=param, code="fetch_failed")
                declared = response.headers.get("content-length")
                if declared and declared.isascii() and declared.isdigit():
                    check_byte_limit(int(declared), policy.max_bytes, param)
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    check_byte_limit(size, policy.max_bytes, param)
                    chunks.append(chunk)
                return b"".join(chunks)
    raise InvalidRequest(f"'{param}': too many redirects.", param=param, code="fetch_failed")


def _read_local(path: str, policy: MediaPolicy, param: str) -> bytes:
    if not policy.allowed_local_path:
        raise InvalidRequest(f"'{param}': local file paths are not allowed on this server.", param=param,
                             code="forbidden_path")
    root = os.path.realpath(policy.allowed_local_path)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root or not os.path.isfile(real):
        raise InvalidRequest(f"'{param}': no such file under the allowed media folder.", param=param,
                             code="forbidden_path")
    try:  # no symlink followed at the last step, and the file opened is still under the root (no swap)
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        raise InvalidRequest(f"'{param}': no such file under the allowed media folder.", param=param,
                             code="forbidden_path") from None
    with os.fdopen(fd, "rb") as f:
        opened = os.path.realpath(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else real
        if os.path.commonpath([root, opened]) != root:
            raise InvalidRequest(f"'{param}': no such file under the allowed media folder.", param=param,
                                 code="forbidden_path")
        check_byte_limit(os.fstat(fd).st_size, policy.max_bytes, param)
        return f.read(policy.max_bytes + 1)


async def load_image_bytes(reference: str, policy: MediaPolicy, *, param: str) -> bytes:
    """Resolve one image reference to its bytes, or raise a 400 naming `param`."""
    reference = reference.strip()
    match = _DATA_URI.match(reference)
    if match:
        if not match.group("b64"):
            raise InvalidRequest(f"'{param}': only base64 data URIs are supported.", param=param,
                                 code="invalid_data_uri")
        return _b64decode(reference[match.end():], max_bytes=policy.max_bytes, param=param)
    if reference.lower().startswith(("http://", "https://")):
        try:
            return await asyncio.wait_for(_fetch(reference, policy, param), policy.fetch_timeout)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise InvalidRequest(f"'{param}': fetching the image timed out.", param=param,
                                 code="fetch_timeout") from None
        except httpx.HTTPError:
            raise InvalidRequest(f"'{param}': the image could not be fetched.", param=param,
                                 code="fetch_failed") from None
    if len(reference) > 100 and _BASE64_CHARS.match(reference):
        return _b64decode(reference, max_bytes=policy.max_bytes, param=param)
    return await asyncio.to_thread(_read_local, reference, policy, param)
