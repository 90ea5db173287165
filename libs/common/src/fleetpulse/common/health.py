"""A tiny HTTP server for ``/healthz`` (process alive) and ``/readyz`` (dependencies reachable)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

ReadinessCheck = Callable[[], Awaitable[bool]]
log = logging.getLogger(__name__)


class Queryable(Protocol):
    """An asyncpg pool or connection, as far as the readiness ping needs one."""

    async def fetchval(self, query: str, *args: Any) -> Any: ...


async def database_ready(pool: Queryable) -> bool:
    """The readiness ping of a service's database: one round trip."""
    return bool(await pool.fetchval("SELECT 1"))


class Health:
    """Readiness checks registered by a service; liveness is the process answering at all."""

    def __init__(self) -> None:
        self._checks: dict[str, ReadinessCheck] = {}

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    async def failing_checks(self) -> list[str]:
        failing = []
        for name, check in self._checks.items():
            try:
                ok = await asyncio.wait_for(check(), timeout=2.0)
            except Exception:  # a check that raises is a failing check
                ok = False
            if not ok:
                failing.append(name)
        return failing


class HealthServer:
    """Serves the two probes on ``host:port``; port 0 picks a free port (see ``port``)."""

    def __init__(self, health: Health, host: str = "0.0.0.0", port: int = 8080) -> None:
        self._health = health
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5.0)
            path = request_line.decode("latin-1").split(" ")[1] if request_line else ""
            status, body = await self._route(path)
            writer.write(_response(status, body))
            await writer.drain()
        except (TimeoutError, IndexError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(self, path: str) -> tuple[str, bytes]:
        if path == "/healthz":
            return "200 OK", b'{"status":"ok"}'
        if path == "/readyz":
            failing = await self._health.failing_checks()
            if failing:
                body = json.dumps({"status": "unready", "failing": failing}).encode()
                return "503 Service Unavailable", body
            return "200 OK", b'{"status":"ready"}'
        return "404 Not Found", b'{"status":"not found"}'


def _response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
