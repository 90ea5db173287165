"""Rate limits per key: the ``RateLimiter`` port, a PostgreSQL adapter shared by every replica
(GCRA, one row per key) and an in-process one for tests and single-process use."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import asyncpg


class RateLimiter(Protocol):
    async def take(self, key: str) -> float:
        """0 when allowed (and counted); otherwise the seconds until an attempt would be."""
        ...


_TAKE = """
INSERT INTO api_rate_limits AS r (key, tat)
VALUES ($1, clock_timestamp() + make_interval(secs => $2))
ON CONFLICT (key) DO UPDATE
   SET tat = greatest(r.tat, clock_timestamp()) + make_interval(secs => $2)
 WHERE greatest(r.tat, clock_timestamp()) - clock_timestamp() <= make_interval(secs => $3)
RETURNING 1
"""
_WAIT = """
SELECT extract(epoch FROM tat - clock_timestamp())::float8 - $2 FROM api_rate_limits WHERE key = $1
"""
_EXPIRE = "DELETE FROM api_rate_limits WHERE tat < clock_timestamp() - interval '10 minutes'"


class PostgresRateLimiter:
    """``rate_per_minute`` attempts per key, bursting up to the same number, counted in the
    database so every API replica enforces one limit (GCRA: generic cell rate algorithm)."""

    def __init__(
        self, pool: asyncpg.Pool, rate_per_minute: int, *, scope: str, expire_every: int = 1000
    ) -> None:
        self._pool = pool
        self._interval_s = 60.0 / rate_per_minute
        self._tolerance_s = self._interval_s * (rate_per_minute - 1)
        self._scope = scope
        self._expire_every, self._takes = expire_every, 0

    async def take(self, key: str) -> float:
        scoped = f"{self._scope}:{key}"
        async with self._pool.acquire() as conn:
            self._takes += 1
            if self._takes % self._expire_every == 0:
                await conn.execute(_EXPIRE)
            if await conn.fetchval(_TAKE, scoped, self._interval_s, self._tolerance_s):
                return 0.0
            wait = await conn.fetchval(_WAIT, scoped, self._tolerance_s)
        return max(float(wait or 0.0), 0.001)


class InMemoryRateLimiter:
    """The same limit per key in this process only (token buckets)."""

    def __init__(
        self,
        rate_per_minute: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = float(rate_per_minute)
        self._refill_per_s = rate_per_minute / 60.0
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def take(self, key: str) -> float:
        return self.take_now(key)

    def take_now(self, key: str) -> float:
        """0 when allowed; otherwise the seconds until the next attempt would be."""
        now = self._clock()
        tokens, stamp = self._buckets.pop(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - stamp) * self._refill_per_s)
        if tokens >= 1.0:
            self._remember(key, tokens - 1.0, now)
            return 0.0
        self._remember(key, tokens, now)
        return (1.0 - tokens) / self._refill_per_s

    def _remember(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
