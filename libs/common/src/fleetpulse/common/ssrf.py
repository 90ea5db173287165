"""SSRF guard for outbound requests to user-supplied URLs (webhooks).

A destination is refused when any address its host resolves to is loopback, private,
shared (CGNAT), link-local (169.254.169.254, the cloud metadata service), unique-local,
multicast, unspecified, reserved or otherwise not globally routable, for IPv4 and IPv6,
including IPv4 addresses embedded in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible,
NAT64 ``64:ff9b::/96`` and 6to4 ``2002::/16``).

The check happens inside the HTTP client's resolver (:class:`GuardedResolver`): the client
connects to exactly the addresses that were checked, so a DNS answer that changes between the
check and the connect (DNS rebinding) cannot reach an internal address. IP-literal hosts skip
resolvers in aiohttp, so :func:`check_url` checks those before the request is made.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from fleetpulse.common.errors import FleetPulseError

__all__ = [
    "BlockedDestinationError",
    "GuardedResolver",
    "IPAddress",
    "check_address",
    "check_url",
    "refusal_reason",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_ALLOWED_SCHEMES = ("http", "https")


class BlockedDestinationError(FleetPulseError):
    """The destination is not a public address (or the URL is not http/https)."""

    def __init__(self, destination: str, reason: str) -> None:
        super().__init__(f"refused destination {destination}: {reason}")
        self.destination = destination
        self.reason = reason


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be contacted, or None if it is a public unicast address."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = refusal_reason(embedded)
        return f"ipv4-embedded {reason}" if reason else None
    for name, test in _CLASSES:
        if test(address):
            return name
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(address))
    return None


def _is_shared(address: IPAddress) -> bool:
    return isinstance(address, ipaddress.IPv4Address) and address in _SHARED


def _is_unique_local(address: IPAddress) -> bool:
    return isinstance(address, ipaddress.IPv6Address) and address in ipaddress.IPv6Network(
        "fc00::/7"
    )


_CLASSES: tuple[tuple[str, Any], ...] = (
    ("unspecified", lambda a: a.is_unspecified),
    ("loopback", lambda a: a.is_loopback),
    ("link-local", lambda a: a.is_link_local),
    ("multicast", lambda a: a.is_multicast),
    ("unique-local", _is_unique_local),
    ("shared", _is_shared),
    ("reserved", lambda a: a.is_reserved),
    ("private", lambda a: a.is_private),
    ("not globally routable", lambda a: not a.is_global),
)


def check_address(host: str) -> None:
    """Raise :class:`BlockedDestinationError` if the IP address ``host`` is not public."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    reason = refusal_reason(address)
    if reason is not None:
        raise BlockedDestinationError(host, reason)


def check_url(url: str) -> None:
    """Refuse non-http(s) URLs and URLs whose host is a non-public IP literal.

    Host names are checked when they are resolved, by :class:`GuardedResolver`.
    """
    parts = urlsplit(url)
    if parts.scheme not in _ALLOWED_SCHEMES or not parts.hostname:
        raise BlockedDestinationError(url, "only http(s) URLs with a host are allowed")
    host = parts.hostname
    if _is_ip_literal(host):
        check_address(host)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class GuardedResolver(AbstractResolver):
    """Resolves through ``inner`` and refuses the whole answer if any address is not public.

    aiohttp connects to the addresses this returns, so what was checked is what is connected to.
    """

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                check_address(result["host"])
            except BlockedDestinationError as exc:
                raise BlockedDestinationError(f"{host} ({result['host']})", exc.reason) from None
        return results

    async def close(self) -> None:
        await self._inner.close()
