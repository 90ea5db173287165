"""SSRF guard: each refused address class, IPv4 and IPv6, and the resolve-then-connect path."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from fleetpulse.common.ssrf import (
    BlockedDestinationError,
    GuardedResolver,
    UnusableUrlError,
    check_url,
    refusal_reason,
)
from fleetpulse.testing.ports import free_port

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "shared"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("::ffff:127.0.0.1", "ipv4-embedded loopback"),
    ("::ffff:169.254.169.254", "ipv4-embedded link-local"),
    ("::ffff:10.0.0.1", "ipv4-embedded private"),
    ("64:ff9b::a9fe:a9fe", "ipv4-embedded link-local"),
    ("2002:7f00:1::", "ipv4-embedded loopback"),
    ("::127.0.0.1", "ipv4-embedded loopback"),
    ("192.0.2.10", "private"),  # documentation range
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_refused_address_classes(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://[::ffff:169.254.169.254]/latest/meta-data",
        "http://169.254.169.254/latest/meta-data",
        "https://[fe80::1%25eth0]/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "http:///nohost",
    ],
)
def test_check_url_refuses_literals_and_other_schemes(url: str) -> None:
    with pytest.raises((BlockedDestinationError, UnusableUrlError)):
        check_url(url)


def test_check_url_leaves_names_to_the_resolver() -> None:
    check_url("https://hooks.example.com/path")
    check_url("http://8.8.8.8/")


class StaticResolver(AbstractResolver):
    """Answers every lookup from a list of successive answers, counting the lookups."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [ResolveResult(hostname=host, host=address, port=port, family=fam, proto=0, flags=0)]

    async def close(self) -> None:
        return None


@pytest_asyncio.fixture
async def local_server() -> AsyncIterator[int]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="reached")

    app = web.Application()
    app.router.add_post("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def post(resolver: AbstractResolver, url: str) -> str:
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector) as session, session.post(url) as resp:
        return await resp.text()


async def test_a_name_resolving_to_loopback_is_refused_before_connecting(local_server: int) -> None:
    with pytest.raises(BlockedDestinationError, match="loopback"):
        await post(
            GuardedResolver(StaticResolver("127.0.0.1")), f"http://hooks.test:{local_server}/"
        )


async def test_localhost_through_the_system_resolver_is_refused(local_server: int) -> None:
    with pytest.raises(BlockedDestinationError):
        await post(GuardedResolver(), f"http://localhost:{local_server}/")


@pytest.mark.parametrize("answer", ["169.254.169.254", "::ffff:127.0.0.1", "fd00::1", "10.0.0.1"])
async def test_every_class_is_refused_through_the_resolver(answer: str) -> None:
    with pytest.raises(BlockedDestinationError):
        await post(GuardedResolver(StaticResolver(answer)), "http://rebind.test/")


async def test_connects_to_the_address_that_was_resolved_once(local_server: int) -> None:
    """DNS rebinding: the answer changes after the first lookup; the guard's answer is the one
    connected to, and it is looked up once per connection (no second lookup at connect time)."""
    inner = StaticResolver("127.0.0.1", "10.0.0.1")

    class AllowFirstAnswer(GuardedResolver):
        """Stands in for a public first answer: the test server can only listen on loopback."""

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            if inner.lookups == 0:
                return await inner.resolve(host, port, family)
            return await super().resolve(host, port, family)

    resolver = AllowFirstAnswer(inner)
    assert await post(resolver, f"http://rebind.test:{local_server}/") == "reached"
    assert inner.lookups == 1
    with pytest.raises(BlockedDestinationError, match="private"):
        await post(resolver, f"http://rebind.test:{local_server}/")
