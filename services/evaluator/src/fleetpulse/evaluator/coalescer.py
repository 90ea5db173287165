"""Evaluate the records of several SQS messages in one transaction.

Per-device work in the database (lock, watermark, state) is paid once per transaction however
many readings of the device it holds, so larger transactions evaluate more readings per second.
At most ``max_in_flight`` transactions run at once: batches of a fleet's messages lock mostly the
same devices, so more at once would only wait for each other's row locks. While they run, the
next batch grows (up to ``max_records``), so under load transactions get larger by themselves.
Each message's handler waits until the transaction holding its records committed (then its
message is deleted) or failed (then it is redelivered): at-least-once is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fleetpulse.common.rules.domain import Record

BatchHandler = Callable[[list[Record]], Awaitable[Any]]


class Coalescer:
    """Parameters:
    handle: evaluates one combined batch (``Evaluator.handle``).
    max_records: a batch is started as soon as this many records wait.
    linger_s: otherwise, this long after its first record arrived.
    max_in_flight: batches being handled at once; a batch due meanwhile waits (and grows).
    """

    def __init__(
        self,
        handle: BatchHandler,
        *,
        max_records: int = 10_000,
        linger_s: float = 0.02,
        max_in_flight: int = 2,
    ) -> None:
        self._handle = handle
        self._max_records = max_records
        self._max_in_flight = max(1, max_in_flight)
        self._linger_s = linger_s
        self._pending: list[tuple[Sequence[Record], asyncio.Future[None]]] = []
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, records: Sequence[Record]) -> None:
        """Return once ``records`` are committed; raise what their batch raised."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((records, done))
        self._count += len(records)
        if self._count >= self._max_records:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._linger_s, self._flush)
        await done

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending and len(self._running) < self._max_in_flight:
            taken, count = 0, 0
            for records, _ in self._pending:  # whole submissions, up to max_records (at least one)
                if taken and count + len(records) > self._max_records:
                    break
                taken, count = taken + 1, count + len(records)
            batch, self._pending = self._pending[:taken], self._pending[taken:]
            self._count -= count
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)
            if self._count < self._max_records:
                break  # the rest is not due yet
        if self._pending and self._timer is None and len(self._running) < self._max_in_flight:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._flush)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._pending:  # due while every slot was busy
            self._flush()

    async def _run(self, pending: list[tuple[Sequence[Record], asyncio.Future[None]]]) -> None:
        try:
            await self._handle([record for records, _ in pending for record in records])
        except Exception as exc:
            for _, done in pending:
                if not done.done():
                    done.set_exception(exc)
        else:
            for _, done in pending:
                if not done.done():
                    done.set_result(None)
