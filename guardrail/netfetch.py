"""Fetch a URL chosen by an untrusted party, without letting it reach what it should not.

Used for ``http(s)`` image URLs when remote images are turned on (``InputLimits(
allow_remote_images=True)``, ``serve --allow-remote-images``). The rules:

- only ``http`` and ``https``; a URL with credentials (``user:pass@``) is refused, and none are
  sent (no proxies or ``.netrc`` from the environment, no cookies between hops);
- every address a host name resolves to is checked *when the connection is made*, on the first
  request and on every redirect: loopback, private, link-local (cloud metadata services such as
  169.254.169.254), shared, multicast, reserved and unspecified addresses are refused unless the
  operator allowed their network (``allowed_networks``). The connection goes to the address
  that was checked, so a second DNS answer cannot swap it (DNS rebinding);
- at most ``max_redirects`` redirects, ``max_bytes`` of body (counted while streaming, the rest
  never read) and ``timeout_s`` for the whole fetch, however slowly the server drips bytes.

Every refusal and failure raises :class:`FetchError`; callers show a fixed message to the
client (so a remote client cannot use the fetcher to map the network) and log the detail.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

__all__ = ["FetchError", "FetchPolicy", "fetch", "address_allowed"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_METADATA = (ipaddress.ip_network("fd00:ec2::254/128"),)  # AWS's IPv6 metadata endpoint (a ULA)


class FetchError(Exception):
    """The URL was refused or could not be fetched; the message is for logs, not clients."""


@dataclass(frozen=True)
class FetchPolicy:
    """Bounds of one fetch. ``allowed_networks`` (CIDR strings) opens non-public networks, e.g.
    an internal image store; public addresses are always allowed."""

    timeout_s: float = 10.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3
    allowed_networks: tuple[str, ...] = ()
    user_agent: str = "guardrail-vl"
    _networks: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_networks", tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)
        )


def address_allowed(address: str, allowed: Sequence[Any] = ()) -> bool:
    """Whether a connection to ``address`` (an IP literal) may be made.

    >>> address_allowed("93.184.215.14"), address_allowed("127.0.0.1"), address_allowed("169.254.169.254")
    (True, False, False)
    >>> address_allowed("::ffff:10.0.0.1"), address_allowed("10.1.2.3", [ipaddress.ip_network("10.0.0.0/8")])
    (False, True)
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed):
        return True
    if any(ip in net for net in _METADATA):
        return False
    return ip.is_global and not ip.is_multicast


def fetch(url: str, policy: FetchPolicy | None = None) -> bytes:
    """GET ``url`` under ``policy`` and return the body; raises :class:`FetchError`."""
    import httpx

    policy = policy or FetchPolicy()
    deadline = time.monotonic() + policy.timeout_s
    transport = _transport(policy)
    try:
        for _ in range(policy.max_redirects + 1):
            _check_url(url)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchError("timed out")
            request = httpx.Request(
                "GET", url,
                headers={"User-Agent": policy.user_agent, "Accept": "image/*", "Accept-Encoding": "identity"},
                extensions={"timeout": httpx.Timeout(remaining).as_dict()},
            )  # fmt: skip
            try:
                response = transport.handle_request(request)
            except FetchError:
                raise
            except Exception as exc:  # noqa: BLE001 - any transport failure is a failed fetch
                raise FetchError(f"cannot fetch: {exc!r}") from None
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(f"redirect {response.status_code} without a Location")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > policy.max_bytes:
                    raise FetchError(f"body of {declared} bytes is over {policy.max_bytes}")
                return _read(response, policy.max_bytes, deadline)
            finally:
                response.close()
        raise FetchError(f"more than {policy.max_redirects} redirects")
    finally:
        transport.close()


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise FetchError(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"scheme {parts.scheme!r} is not http(s)")
    if parts.username is not None or parts.password is not None:
        raise FetchError("URLs with credentials are refused")
    if not parts.hostname:
        raise FetchError("URL without a host")


def _read(response: Any, max_bytes: int, deadline: float) -> bytes:
    chunks, size = [], 0
    for chunk in response.stream:
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"body over {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise FetchError("timed out while reading the body")
        chunks.append(chunk)
    return b"".join(chunks)


def _transport(policy: FetchPolicy) -> Any:
    """An httpx transport whose every TCP connection is checked by :func:`address_allowed`."""
    import httpcore
    import httpx

    class CheckedBackend(httpcore.SyncBackend):
        def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                        local_address: str | None = None, socket_options: Any = None) -> Any:  # fmt: skip
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise FetchError(f"cannot resolve {host!r}: {exc}") from None
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
            refused = [a for a in addresses if not address_allowed(a, policy._networks)]
            if not addresses or refused:
                raise FetchError(f"{host!r} resolves to a refused address {refused[:1]}")
            # connect to the address just checked, never to a fresh resolution of the name
            return super().connect_tcp(addresses[0], port, timeout, local_address, socket_options)

    transport = httpx.HTTPTransport(trust_env=False, retries=0)
    transport._pool = httpcore.ConnectionPool(  # the public transport takes no network backend
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=1,
        network_backend=CheckedBackend(),
    )
    return transport
