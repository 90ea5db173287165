"""Device registry cache over the ``devices`` projection: lookups from memory, changes polled.

A miss is looked up in the table (and remembered as unknown for ``negative_ttl_s``). Every
``poll_s`` the rows changed since the last poll (with an overlap for late commits) refresh the
cache, so a decommissioning is seen within about ``poll_s`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

import asyncpg

from fleetpulse.common.runtime import sleep_until_stopped
from fleetpulse.ingest.domain import DeviceStatus
from fleetpulse.ingest.store import RETRYABLE

log = logging.getLogger(__name__)
OVERLAP = timedelta(seconds=30)
LOOKUP = """
SELECT d.tenant_id, d.device_id, d.status FROM devices d
JOIN unnest($1::text[], $2::text[]) AS k(t, i) ON d.tenant_id = k.t AND d.device_id = k.i
"""
CHANGES = "SELECT tenant_id, device_id, status, updated_at FROM devices WHERE updated_at > $1"


class DeviceRegistry:
    def __init__(
        self, pool: asyncpg.Pool, *, negative_ttl_s: float = 2.0, max_unknown: int = 100_000
    ) -> None:
        self._pool = pool
        self._known: dict[tuple[str, str], DeviceStatus] = {}
        self._unknown: dict[tuple[str, str], float] = {}
        self._negative_ttl_s = negative_ttl_s
        self._max_unknown = max_unknown
        self._watermark: datetime | None = None

    def status(self, tenant_id: str, device_id: str) -> DeviceStatus | None:
        return self._known.get((tenant_id, device_id))

    def needs_lookup(self, key: tuple[str, str]) -> bool:
        if key in self._known:
            return False
        expires = self._unknown.get(key)
        return expires is None or expires < time.monotonic()

    async def lookup(self, keys: list[tuple[str, str]]) -> None:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(LOOKUP, [k[0] for k in keys], [k[1] for k in keys])
        for row in rows:
            self._known[(row["tenant_id"], row["device_id"])] = row["status"]
        self._remember_unknown([k for k in keys if k not in self._known])

    def _remember_unknown(self, keys: list[tuple[str, str]]) -> None:
        if len(self._unknown) + len(keys) > self._max_unknown:
            self._unknown.clear()
        expires = time.monotonic() + self._negative_ttl_s
        for key in keys:
            self._unknown[key] = expires

    async def poll(self) -> int:
        async with self._pool.acquire() as conn:
            if self._watermark is None:
                self._watermark = await conn.fetchval("SELECT now()") - OVERLAP
            rows = await conn.fetch(CHANGES, self._watermark - OVERLAP)
        for row in rows:
            key = (row["tenant_id"], row["device_id"])
            self._known[key] = row["status"]
            self._unknown.pop(key, None)
            self._watermark = max(self._watermark, row["updated_at"])
        return len(rows)

    async def follow(self, stop: asyncio.Event, poll_s: float) -> None:
        while not stop.is_set():
            try:
                await self.poll()
            except RETRYABLE as exc:
                log.warning("registry poll failed", extra={"error": str(exc)})
            await sleep_until_stopped(stop, poll_s)
