"""Issue 16 target 2: one unit of work appends events and applies the projections atomically,
translates conflicts, and retries transient failures only (against a real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from fleetpulse.common.errors import (
    ConcurrencyError,
    DataRejectedError,
    PermanentError,
    TransientError,
)
from fleetpulse.common.eventstore import (
    NO_STREAM,
    Append,
    NewEvent,
    PostgresEventStore,
    RecordedEvent,
    UnitOfWork,
    UnitsOfWork,
)
from fleetpulse.common.retry import RetryPolicy


class ProbeProjection:
    """Writes one row per event; refuses events whose data says ``refuse``."""

    name = "probe"
    tables = ("uow_probe",)

    async def apply(self, conn: asyncpg.Connection, event: RecordedEvent) -> None:
        await conn.execute(
            "INSERT INTO uow_probe (stream_id, version) VALUES ($1, $2)",
            event.stream_id,
            event.version,
        )
        if event.data.get("refuse"):
            raise ValueError("projection refuses")


@pytest.fixture
async def units(db_pool: asyncpg.Pool, event_store: PostgresEventStore) -> UnitsOfWork:
    await db_pool.execute("CREATE TABLE uow_probe (stream_id text, version int)")
    return UnitsOfWork(event_store, [ProbeProjection()])


async def _counts(pool: asyncpg.Pool, stream: str) -> tuple[int, int]:
    events = await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", stream)
    rows = await pool.fetchval("SELECT count(*) FROM uow_probe WHERE stream_id = $1", stream)
    return int(events), int(rows)


def _appender(stream: str, *, refuse: bool = False) -> Callable[[UnitOfWork], Awaitable[None]]:
    async def append(unit: UnitOfWork) -> None:
        event = NewEvent("A", {"refuse": True} if refuse else {})
        await unit.append(stream, [event], tenant_id="t", expected_version=NO_STREAM)

    return append


def _executor(sql: str) -> Callable[[UnitOfWork], Awaitable[None]]:
    async def execute(unit: UnitOfWork) -> None:
        await unit.conn.execute(sql)

    return execute


async def test_append_applies_the_projection_in_the_same_transaction(
    units: UnitsOfWork, db_pool: asyncpg.Pool
) -> None:
    async with units.begin() as unit:
        recorded = await unit.append(
            "s-ok", [NewEvent("A", {}), NewEvent("B", {})], tenant_id="t", expected_version=0
        )
    assert [e.version for e in recorded] == [1, 2]
    assert await _counts(db_pool, "s-ok") == (2, 2)


async def test_a_failure_after_the_append_rolls_back_events_and_projection(
    units: UnitsOfWork, db_pool: asyncpg.Pool
) -> None:
    async def append_then_fail(unit: UnitOfWork) -> None:
        await unit.append("s-body", [NewEvent("A", {})], tenant_id="t", expected_version=0)
        raise RuntimeError("later step failed")

    with pytest.raises(RuntimeError):
        await units.run(append_then_fail)
    assert await _counts(db_pool, "s-body") == (0, 0)
    with pytest.raises(ValueError, match="refuses"):
        await units.run(_appender("s-proj", refuse=True))
    assert await _counts(db_pool, "s-proj") == (0, 0)


async def test_a_savepoint_unit_rolls_back_only_its_own_writes(
    units: UnitsOfWork, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn, conn.transaction():
        await units.run(_appender("s-kept"), conn=conn)
        with pytest.raises(ValueError, match="refuses"):
            await units.run(_appender("s-undone", refuse=True), conn=conn)
    assert await _counts(db_pool, "s-kept") == (1, 1)
    assert await _counts(db_pool, "s-undone") == (0, 0)


async def test_conflicts_are_translated(units: UnitsOfWork, db_pool: asyncpg.Pool) -> None:
    async with units.begin() as unit:
        await unit.append("s-c", [NewEvent("A", {})], tenant_id="t", expected_version=NO_STREAM)
    with pytest.raises(ConcurrencyError) as caught:
        await units.run(_appender("s-c"))
    assert caught.value.actual == 1

    async def batch(unit: UnitOfWork) -> None:
        await unit.append_batch(
            [
                Append("s-new", [NewEvent("A", {})], "t", NO_STREAM),
                Append("s-c", [NewEvent("B", {})], "t", NO_STREAM),
            ]
        )

    with pytest.raises(ConcurrencyError):
        await units.run(batch)
    assert await _counts(db_pool, "s-new") == (0, 0)  # the whole batch rolled back
    async with units.begin() as unit:  # positive control: the right versions append
        await unit.append_batch([Append("s-c", [NewEvent("B", {})], "t", 1)])
    assert await _counts(db_pool, "s-c") == (2, 1)  # append_batch leaves projections to callers


async def test_database_failures_leave_a_unit_translated(units: UnitsOfWork) -> None:
    with pytest.raises(DataRejectedError) as caught:
        await units.run(_executor("SELECT 1/0"))
    assert isinstance(caught.value.__cause__, asyncpg.DivisionByZeroError)
    with pytest.raises(PermanentError) as caught_too:
        await units.run(_executor("SELECT * FROM no_such_table"))
    assert not isinstance(caught_too.value, DataRejectedError)


_RETRY_TRANSIENT = RetryPolicy(on=(TransientError, ConcurrencyError), attempts=3)


async def test_run_retries_a_transient_failure_in_a_fresh_unit(
    units: UnitsOfWork, db_pool: asyncpg.Pool
) -> None:
    calls: list[int] = []

    async def work(unit: UnitOfWork) -> str:
        calls.append(1)
        # a new stream every try: the failed tries were rolled back
        await unit.append("s-r", [NewEvent("A", {})], tenant_id="t", expected_version=NO_STREAM)
        if len(calls) < 3:
            raise asyncpg.SerializationError("could not serialize access")
        return "done"

    assert await units.run(work, retry=_RETRY_TRANSIENT) == "done"
    assert len(calls) == 3
    assert await _counts(db_pool, "s-r") == (1, 1)  # the failed tries left nothing behind


async def test_run_does_not_retry_a_permanent_failure(units: UnitsOfWork) -> None:
    calls: list[int] = []

    async def work(unit: UnitOfWork) -> None:
        calls.append(1)
        await unit.conn.execute("SELECT 'x'::int")

    with pytest.raises(DataRejectedError):
        await units.run(work, retry=_RETRY_TRANSIENT)
    assert len(calls) == 1  # positive control for the test above: same policy, no retry


async def test_run_gives_up_after_the_policys_attempts(units: UnitsOfWork) -> None:
    calls: list[int] = []

    async def work(unit: UnitOfWork) -> None:
        calls.append(1)
        raise asyncpg.AdminShutdownError("terminating connection")

    with pytest.raises(TransientError):
        await units.run(work, retry=_RETRY_TRANSIENT)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(TransientError):
        await units.run(work)  # the default policy: one try
    assert len(calls) == 1
