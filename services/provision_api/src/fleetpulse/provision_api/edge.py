"""ASGI middleware at the API's edge, before anything parses a request or checks a token.

- :class:`ForwardedSource`: the client address is the right-most ``X-Forwarded-For`` hop that is
  not a trusted proxy (the address the load balancer saw), never the left-most, which the client
  writes. With ``*`` only the immediate peer (the load balancer) is trusted.
- :class:`RequestLimits`: bodies larger than the route's limit answer 413 (by ``Content-Length``
  before reading, or as soon as the streamed bytes pass it), and a source with too many requests
  in flight answers 429, so a flood of large unauthenticated bodies cannot take the memory.
  Header sizes are bounded by the HTTP parser (``h11_max_incomplete_event_size``).
- :class:`ContainErrors`: an unexpected error answers a 500 problem and the connection stays
  open (Starlette's error middleware re-raises, and the server then drops the keep-alive).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """``FLEETPULSE_FORWARDED_ALLOW_IPS``: addresses or networks, comma-separated, or ``*``."""

    any_peer: bool = False
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, value: str) -> TrustedProxies:
        items = [item.strip() for item in value.split(",") if item.strip()]
        if "*" in items:
            return cls(any_peer=True)
        return cls(networks=tuple(ipaddress.ip_network(item, strict=False) for item in items))

    def is_listed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def trusts_peer(self, host: str) -> bool:
        return self.any_peer or self.is_listed(host)


def client_source(peer: str, forwarded_for: list[str], trusted: TrustedProxies) -> str:
    """The address to attribute a request to: the peer unless it is a trusted proxy; then the
    right-most ``X-Forwarded-For`` hop that is not itself a listed proxy."""
    if not trusted.trusts_peer(peer):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not trusted.is_listed(hop):
            return _host_only(hop)[:64]
    return _host_only(hops[0])[:64] if hops else peer


def _host_only(hop: str) -> str:
    if hop.startswith("["):
        return hop[1:].split("]", 1)[0]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def _header_values(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]


class ForwardedSource:
    def __init__(self, app: App, trusted: TrustedProxies) -> None:
        self.app, self.trusted = app, trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            peer, port = scope["client"]
            source = client_source(peer, _header_values(scope, b"x-forwarded-for"), self.trusted)
            if source != peer:
                scope["client"] = (source, 0)
                proto = _header_values(scope, b"x-forwarded-proto")
                if proto and proto[-1].split(",")[-1].strip() in ("http", "https"):
                    scope["scheme"] = proto[-1].split(",")[-1].strip()
            else:
                scope["client"] = (peer, port)
        await self.app(scope, receive, send)


async def send_problem(
    send: Send, status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    body = json.dumps(
        {
            "type": f"https://fleetpulse.dev/problems/{_TYPES.get(status, 'error')}",
            "title": title,
            "status": status,
            "detail": detail,
        }
    ).encode()
    raw = [(b"content-type", b"application/problem+json"), (b"content-length", b"%d" % len(body))]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


_TYPES = {413: "payload-too-large", 429: "rate-limited", 500: "internal", 400: "bad-request"}


class _TooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so the framework's body parsing passes it on
    (it turns other errors into 400) and its handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body may be at most {limit} bytes")


@dataclass(slots=True)
class RequestLimits:
    """Body size per route (``route_limits``: path prefix -> bytes) and requests in flight per
    source. Must wrap the application before any body parsing or authentication."""

    app: App
    max_body_bytes: int
    max_in_flight_per_source: int
    route_limits: Mapping[str, int] = field(default_factory=dict)
    _in_flight: Counter[str] = field(default_factory=Counter, init=False)

    def limit_for(self, path: str) -> int:
        matches = [(len(p), n) for p, n in self.route_limits.items() if path.startswith(p)]
        return max(matches)[1] if matches else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        source = str((scope.get("client") or ("unknown",))[0])
        if self._in_flight[source] >= self.max_in_flight_per_source:
            await send_problem(
                send,
                429,
                "Too Many Requests",
                "too many requests in flight from this source",
                {"Retry-After": "1"},
            )
            return
        self._in_flight[source] += 1
        try:
            await self._bounded(scope, receive, send, self.limit_for(scope.get("path", "")))
        finally:
            self._in_flight[source] -= 1
            if self._in_flight[source] <= 0:
                del self._in_flight[source]

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        declared = _header_values(scope, b"content-length")
        if declared:
            try:
                length = int(declared[0])
            except ValueError:
                await send_problem(send, 400, "Bad Request", "Content-Length is not a number")
                return
            if length > limit:
                await _too_large(send, limit)
                return
        sent = _TrackedSend(send)
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        try:
            await self.app(scope, counted_receive, sent)
        except _TooLarge:
            if not sent.started:
                await _too_large(send, limit)


class _TrackedSend:
    """An ASGI ``send`` that remembers whether the response has started."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


async def _too_large(send: Send, limit: int) -> None:
    await send_problem(
        send,
        413,
        "Content Too Large",
        f"the request body may be at most {limit} bytes",
        {"Connection": "close"},
    )


class ContainErrors:
    """Innermost middleware: an error escaping the routes becomes a 500 problem, not a dropped
    connection; it is logged here once."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = _TrackedSend(send)
        try:
            await self.app(scope, receive, sent)
        except _TooLarge:
            raise
        except Exception:
            log.exception("unhandled error", extra={"path": scope.get("path")})
            if sent.started:
                raise
            await send_problem(send, 500, "Internal Server Error", "unexpected error")
