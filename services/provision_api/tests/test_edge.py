"""Issue 13 items 3 and 8 at the API's edge: the client address is the right-most untrusted
X-Forwarded-For hop, the /provision limit holds across two API replicas sharing the database,
and an unexpected error answers 500 without dropping the keep-alive connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from fleetpulse.provision_api.app import EdgeLimits, create_app
from fleetpulse.provision_api.bootstrap import ApiServer, bootstrap, uvicorn_config
from fleetpulse.provision_api.credentials import InMemoryCredentialIssuer
from fleetpulse.provision_api.edge import RequestLimits, TrustedProxies, client_source
from fleetpulse.testing.ports import free_port

from .conftest import TestIssuer, make_settings

pytestmark = pytest.mark.security


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "source"),
    [
        ("10.0.0.1", ["203.0.113.9, 198.51.100.7"], "*", "198.51.100.7"),
        ("10.0.0.1", ["203.0.113.9", "198.51.100.7"], "*", "198.51.100.7"),
        ("10.0.0.1", ["1.2.3.4, 5.6.7.8, 10.0.0.3"], "10.0.0.0/8", "5.6.7.8"),
        ("10.0.0.1", ["10.0.0.9, 10.0.0.3"], "10.0.0.0/8", "10.0.0.9"),
        ("198.51.100.7", ["203.0.113.9"], "10.0.0.0/8", "198.51.100.7"),  # untrusted peer
        ("127.0.0.1", ["203.0.113.9"], "127.0.0.1", "203.0.113.9"),
        ("10.0.0.1", [], "*", "10.0.0.1"),
        ("10.0.0.1", ["[2001:db8::1]:443"], "*", "2001:db8::1"),
        ("10.0.0.1", ["198.51.100.7:5000"], "*", "198.51.100.7"),
    ],
)
def test_the_source_is_the_right_most_untrusted_hop(
    peer: str, forwarded: list[str], trusted: str, source: str
) -> None:
    assert client_source(peer, forwarded, TrustedProxies.parse(trusted)) == source


async def replica(stack: AsyncExitStack, settings: object) -> httpx.AsyncClient:
    booted = await stack.enter_async_context(
        bootstrap(settings, issuer=InMemoryCredentialIssuer())  # type: ignore[arg-type]
    )
    app = create_app(booted.services, EdgeLimits(forwarded_allow_ips="*"))
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 40000))  # the load balancer
    return await stack.enter_async_context(
        httpx.AsyncClient(transport=transport, base_url="http://api.test")
    )


async def test_provision_limit_holds_across_replicas_with_a_rotating_forwarded_for(
    database_url: str, oidc: TestIssuer
) -> None:
    settings = make_settings(
        database_url, oidc, provision_rate_per_minute=10, forwarded_allow_ips="*"
    )
    claim = {"provision_key": "pk_nope", "provision_secret": "ps_nope", "device_id": "d1"}
    async with AsyncExitStack() as stack:
        replicas = [await replica(stack, settings), await replica(stack, settings)]

        async def attempt(n: int, client_address: str) -> int:
            # The ALB appends the address it saw; everything left of it is the client's.
            headers = {"X-Forwarded-For": f"203.0.113.{n % 250}, {client_address}"}
            answer = await replicas[n % 2].post("/api/v1/provision", json=claim, headers=headers)
            return answer.status_code

        statuses = [await attempt(n, "198.51.100.7") for n in range(14)]
        assert statuses[:10] == [401] * 10
        assert statuses[10:] == [429] * 4  # was never limited: each XFF was a new key
        assert await attempt(99, "198.51.100.8") == 401  # positive control: another client


async def test_an_unexpected_error_answers_500_and_keeps_the_connection(
    database_url: str, oidc: TestIssuer
) -> None:
    port = free_port()
    settings = make_settings(database_url, oidc, api_host="127.0.0.1", api_port=port)
    async with bootstrap(settings, issuer=InMemoryCredentialIssuer()) as booted:
        app = create_app(booted.services)

        async def broken() -> None:
            raise OverflowError("date value out of range")

        app.add_api_route("/boom", broken)
        server = ApiServer(uvicorn_config(app, settings))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for path in ("/boom", "/healthz", "/boom", "/healthz"):
                writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                await writer.drain()
                status, headers, body = await read_response(reader)
                assert status == (500 if path == "/boom" else 200), body
                assert headers.get("connection") != "close"
            writer.close()
        finally:
            server.should_exit = True
            await task


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def test_a_body_over_the_limit_is_a_413_problem_whatever_the_framing(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    big = b'{"device_id": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    declared = await api.post("/api/v1/devices", content=big, headers=oidc.headers())
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    streamed = await api.post("/api/v1/devices", content=stream(), headers=oidc.headers())
    assert streamed.status_code == 413, streamed.text
    fine = await api.post("/api/v1/devices", json={"device_id": "d1"}, headers=oidc.headers())
    assert fine.status_code == 201  # positive control


async def test_requests_in_flight_per_source_are_bounded() -> None:
    """A source holding its share of slow requests gets 429; another source is still served."""
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limits = RequestLimits(slow_app, max_body_bytes=1024, max_in_flight_per_source=2)

    async def request(source: str) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/api/v1/devices", "headers": [], "client": (source, 1)}
        await limits(scope, receive, send)
        return int(sent[0]["status"])

    held = [asyncio.create_task(request("198.51.100.7")) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert await request("198.51.100.7") == 429
    other = asyncio.create_task(request("198.51.100.8"))
    await asyncio.sleep(0.05)
    release.set()
    assert await asyncio.gather(*held, other) == [204, 204, 204]  # positive control
    assert await request("198.51.100.7") == 204  # the slots came back


async def test_request_heads_are_bounded_by_the_http_parser(
    database_url: str, oidc: TestIssuer
) -> None:
    port = free_port()
    settings = make_settings(
        database_url, oidc, api_host="127.0.0.1", api_port=port, max_header_bytes=16384
    )
    async with bootstrap(settings, issuer=InMemoryCredentialIssuer()) as booted:
        server = ApiServer(uvicorn_config(create_app(booted.services), settings))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                big = await client.get("/healthz", headers={"X-Big": "a" * 100_000})
                assert big.status_code == 431
                assert big.headers["content-type"] == "application/problem+json"
                fine = await client.get("/healthz", headers={"X-Ok": "a" * 8000})
                assert fine.status_code == 200  # positive control
                body = b'{"device_id": "' + b"a" * 900_000 + b'"}'
                posted = await client.post("/api/v1/devices", content=body)
                assert posted.status_code == 401  # a large body in the same reads is no head
        finally:
            server.should_exit = True
            await task
