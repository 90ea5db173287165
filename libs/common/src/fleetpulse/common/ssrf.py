"""SSRF guard for outbound requests to user-supplied URLs (webhooks).

A destination is refused when any address its host resolves to is loopback, private,
shared (CGNAT), link-local (169.254.169.254, the cloud metadata service), unique-local,
multicast, unspecified, reserved or otherwise not globally routable, for IPv4 and IPv6,
including IPv4 addresses embedded in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible,
NAT64 ``64:ff9b::/96`` and 6to4 ``2002::/16``).

Two layers, both on the host the HTTP client (aiohttp, which parses URLs with yarl) really uses:

- :func:`webhook_destination` parses a URL exactly as the client will (yarl: IDNA/UTS46, so
  fullwidth digits and ideographic full stops become ASCII) and normalises the host the way a
  browser's URL parser does (WHATWG IPv4: ``127.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``
  are IPv4 literals; a trailing dot is dropped). A URL no client can use (credentials in it, an
  IPv6 zone id, a number that is no IPv4 address) raises :class:`UnusableUrlError`.
  :func:`check_destination` then refuses non-public literals and ``localhost``/``*.localhost``.
  The API runs both at integration create/update; the delivery worker again before each send.
- :class:`GuardedConnector` checks every address the connection is about to be opened to,
  literal or resolved, after aiohttp's own normalisation: what was checked is what is connected
  to, so no parsing difference and no DNS answer that changes between check and connect (DNS
  rebinding) reaches an internal address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from fleetpulse.common.errors import FleetPulseError

__all__ = [
    "BlockedDestinationError",
    "Destination",
    "GuardedConnector",
    "GuardedResolver",
    "IPAddress",
    "UnusableUrlError",
    "check_address",
    "check_destination",
    "check_url",
    "refusal_reason",
    "webhook_destination",
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


class UnusableUrlError(FleetPulseError, ValueError):
    """The URL can never be sent (not http(s), no host, credentials, a malformed IP literal)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"unusable URL: {reason}")
        self.url = url
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


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a URL really goes: ``url`` normalised (send this), its ``host`` as the client
    connects to it (ASCII, no trailing dot) and the ``address`` when that host is an IP literal."""

    url: URL
    host: str
    address: IPAddress | None


_NUMBER = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")
# After IDNA encoding a host name is ASCII letters, digits, '-' and '_' in dot-separated labels;
# anything else ('%', NUL, '\\', spaces) is a parser difference waiting to happen.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_LOCALHOST = ("localhost", ".localhost")


def webhook_destination(url: str) -> Destination:
    """Parse ``url`` as the HTTP client does and normalise its host; :class:`UnusableUrlError`
    if no request could ever be made with it."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise UnusableUrlError(url, f"not a URL ({exc})") from None
    if parsed.scheme not in _ALLOWED_SCHEMES or not parsed.raw_host:
        raise UnusableUrlError(url, "only http(s) URLs with a host are allowed")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise UnusableUrlError(url, "credentials in the URL are not allowed (use headers)")
    host = parsed.raw_host.rstrip(".").lower()
    address = _ip_literal(url, host)
    if address is not None:
        host = str(address)
    elif not _HOST_NAME.fullmatch(host):
        raise UnusableUrlError(url, f"malformed host {parsed.raw_host!r}")
    try:
        normalised = parsed.with_host(host)
    except ValueError as exc:
        raise UnusableUrlError(url, f"malformed host ({exc})") from None
    return Destination(normalised, host, address)


def _ip_literal(url: str, host: str) -> IPAddress | None:
    """The address when ``host`` is an IP literal in any form a URL parser accepts."""
    if ":" in host:
        if "%" in host:
            raise UnusableUrlError(url, "IPv6 zone identifiers are not allowed")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise UnusableUrlError(url, f"malformed IPv6 address {host!r}") from None
    labels = host.split(".")
    if not _NUMBER.match(labels[-1]):
        return None  # a name: WHATWG treats a host as IPv4 only when it ends in a number
    return _whatwg_ipv4(url, labels)


def _whatwg_ipv4(url: str, labels: list[str]) -> ipaddress.IPv4Address:
    """The WHATWG URL Standard's IPv4 parser: 1-4 parts, each decimal, 0x-hex or 0-octal,
    the last filling the remaining bytes (``127.1`` is 127.0.0.1, ``2130706433`` too)."""
    try:
        numbers = [_ipv4_number(label) for label in labels]
    except ValueError:
        raise UnusableUrlError(url, f"{'.'.join(labels)!r} is not an IPv4 address") from None
    if len(numbers) > 4 or any(n > 255 for n in numbers[:-1]):
        raise UnusableUrlError(url, f"{'.'.join(labels)!r} is not an IPv4 address")
    if numbers[-1] >= 256 ** (5 - len(numbers)):
        raise UnusableUrlError(url, f"{'.'.join(labels)!r} is not an IPv4 address")
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number * 256 ** (3 - index)
    return ipaddress.IPv4Address(value)


def _ipv4_number(label: str) -> int:
    if not _NUMBER.match(label):
        raise ValueError(label)
    if label[:2].lower() == "0x":
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8)
    return int(label)


def check_destination(destination: Destination) -> None:
    """Raise :class:`BlockedDestinationError` for a non-public IP literal or a ``localhost``
    name (RFC 6761). Other names are checked on every connect by :class:`GuardedConnector`."""
    if destination.address is not None:
        reason = refusal_reason(destination.address)
        if reason is not None:
            raise BlockedDestinationError(destination.host, reason)
    elif destination.host == _LOCALHOST[0] or destination.host.endswith(_LOCALHOST[1]):
        raise BlockedDestinationError(destination.host, "loopback (localhost name)")


def check_url(url: str) -> URL:
    """Both steps: the normalised URL to send to, or :class:`UnusableUrlError` /
    :class:`BlockedDestinationError`."""
    destination = webhook_destination(url)
    check_destination(destination)
    return destination.url


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that refuses to open a connection to any non-public address.

    aiohttp resolves every host (IP literals included, after its own URL normalisation) through
    ``_resolve_host`` and connects to exactly the addresses returned; checking them here checks
    what is connected to. Cached DNS answers are checked on every use too.
    """

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces=traces)
        return _all_public(host, results)


def _all_public(host: str, results: list[ResolveResult]) -> list[ResolveResult]:
    """``results`` when every address is public; else :class:`BlockedDestinationError`."""
    for result in results:
        try:
            check_address(result["host"])
        except BlockedDestinationError as exc:
            raise BlockedDestinationError(f"{host} ({result['host']})", exc.reason) from None
    return results


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
        return _all_public(host, results)

    async def close(self) -> None:
        await self._inner.close()
