"""The outbox relay: every committed event goes to SNS ``{prefix}domain-events``, at least once.

The ``events`` table is the outbox: appends commit with the state change they describe, and the
relay publishes after the commit, following ``position`` (appends are serialised, so it never
skips a late commit). It saves its checkpoint only after SNS accepted a batch, so a crash between
the two republishes that batch (duplicates, which consumers drop by event id) and loses nothing.

Every service that appends runs a relay; a session-level advisory lock on a dedicated connection
elects one publisher across processes. The others retry the lock, and take over when the leader's
connection ends (crash, kill -9, network loss), since PostgreSQL then releases its lock. A leader
that stops using its connection (a frozen process, a network partition that leaves the socket
open) would hold the lock forever, so the connection is a lease: PostgreSQL ends a session idle
longer than ``lease_s`` (``idle_session_timeout``) or whose peer stops answering TCP keepalives,
and a live leader touches it at least every ``poll_s``. A leader that wakes up after losing its
lease may publish the batch it had read once more (consumers drop duplicates by event id); its
checkpoint write fails with the dead connection, and it rejoins as a follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable

import asyncpg
from pydantic import SecretStr

from fleetpulse.common.db.errors import is_permanent, translated
from fleetpulse.common.db.pool import connect
from fleetpulse.common.errors import ExternalError
from fleetpulse.common.eventstore import (
    EventNotifications,
    PostgresEventStore,
    read_checkpoint,
    save_checkpoint,
)
from fleetpulse.common.messaging._batching import backoff_s
from fleetpulse.common.messaging.envelope import event_to_message
from fleetpulse.common.messaging.errors import MessagingError, aws_errors
from fleetpulse.common.messaging.sns import SnsMessage, SnsPublisher
from fleetpulse.common.observability import meter
from fleetpulse.common.runtime import sleep_until_stopped

log = logging.getLogger(__name__)
_published_counter = meter("fleetpulse.messaging").create_counter(
    "fleetpulse.outbox.published", description="Events published to SNS by the outbox relay"
)
# A permanent database failure is retried too (with the backoff, logged as an error): the relay
# has nothing to isolate or skip, and nothing is lost by waiting for the database to be fixed.
_RETRYABLE: tuple[type[Exception], ...] = (ExternalError, MessagingError)


def advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock`` derived from ``name``."""
    return int.from_bytes(
        hashlib.sha256(f"fleetpulse:{name}".encode()).digest()[:8], "big", signed=True
    )


class OutboxRelay:
    """Publishes the event log to SNS, one leader at a time, until :meth:`run`'s ``stop`` is set.

    Parameters:
        store: the event store (or its pool) to read from.
        publisher: the ``SnsPublisher`` of the domain-events topic.
        dsn: database URL for the leader's dedicated connection and LISTEN notifications.
        name: checkpoint name and advisory-lock identity (relays sharing it elect one leader).
        batch_size: events read and published per round (then the checkpoint is saved).
        poll_s: how long to wait for a notification before looking anyway.
        lock_retry_s: how often a follower tries to become leader.
        lease_s: how long a silent leader keeps the lock (see the module docstring); above
            ``poll_s`` and ``lock_retry_s``, and above the longest SNS publish, or a slow publish
            costs the lease (a duplicate batch, not a loss).
    """

    def __init__(
        self,
        store: PostgresEventStore | asyncpg.Pool,
        publisher: SnsPublisher,
        *,
        dsn: str | SecretStr,
        name: str = "outbox-relay",
        batch_size: int = 100,
        poll_s: float = 1.0,
        lock_retry_s: float = 2.0,
        lease_s: float = 30.0,
    ) -> None:
        if lease_s <= max(poll_s, lock_retry_s):
            raise ValueError("lease_s must exceed poll_s and lock_retry_s")
        self._store = store if isinstance(store, PostgresEventStore) else PostgresEventStore(store)
        self._publisher = publisher
        self._dsn = dsn
        self._name = name
        self._batch_size = batch_size
        self._poll_s = poll_s
        self._lock_retry_s = lock_retry_s
        self._lock_key = advisory_lock_key(name)
        self._lease_s = lease_s
        self._is_leader = False

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; database and SNS failures are logged and retried."""
        failures = 0
        async with EventNotifications(self._dsn) as notifications:
            while not stop.is_set():
                try:
                    with translated, aws_errors:
                        await self._session(stop, notifications)
                    failures = 0
                except _RETRYABLE as exc:
                    failures += 1
                    cause = exc.__cause__ or exc
                    log.log(
                        logging.ERROR if is_permanent(exc) else logging.WARNING,
                        "outbox relay failed; retrying",
                        extra={
                            "relay": self._name,
                            "error": f"{type(cause).__name__}: {cause}",
                            "attempt": failures,
                        },
                    )
                    await sleep_until_stopped(stop, backoff_s(failures, 0.5, 30.0))

    async def _session(self, stop: asyncio.Event, notifications: EventNotifications) -> None:
        """One database session: wait to become leader, then publish until stopped."""
        conn = await connect(self._dsn, application_name=self._name)
        try:
            await _hold_as_lease(conn, self._lease_s)
            while not stop.is_set():
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                    self._is_leader = True
                    log.info("outbox relay is leader", extra={"relay": self._name})
                    await self._publish_until(stop, conn, notifications)
                    return
                await sleep_until_stopped(stop, self._lock_retry_s)
        finally:
            self._is_leader = False
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)  # ends the session, releasing the lock

    async def _publish_until(
        self, stop: asyncio.Event, conn: asyncpg.Connection, notifications: EventNotifications
    ) -> None:
        while not stop.is_set():
            if await self._publish_batch(conn) < self._batch_size:
                await _until_stop_or(stop, notifications.wait(self._poll_s))

    async def _publish_batch(self, conn: asyncpg.Connection) -> int:
        """Publish one batch past the checkpoint, then move the checkpoint; returns its size.

        Only the leader calls it (``conn`` holds the advisory lock).
        """
        position = await read_checkpoint(conn, self._name)
        events = await self._store.read_all(
            after_position=position, limit=self._batch_size, conn=conn
        )
        if not events:
            return 0
        await self._publisher.publish_batch([SnsMessage(*event_to_message(e)) for e in events])
        await save_checkpoint(conn, self._name, events[-1].position)
        _published_counter.add(len(events), {"relay": self._name})
        return len(events)


async def _hold_as_lease(conn: asyncpg.Connection, lease_s: float) -> None:
    """PostgreSQL ends this session once it is idle, or its peer silent, for about ``lease_s``."""
    probe_s = max(1, int(lease_s / 6))
    await conn.execute(
        f"SET idle_session_timeout = {int(lease_s * 1000)};"
        f" SET tcp_keepalives_idle = {probe_s}; SET tcp_keepalives_interval = {probe_s};"
        " SET tcp_keepalives_count = 3"
    )


async def _until_stop_or(stop: asyncio.Event, awaitable: Awaitable[None]) -> None:
    waiting = asyncio.ensure_future(awaitable)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, stopped):
            task.cancel()
        await asyncio.gather(waiting, stopped, return_exceptions=True)
