"""Issue 12 item 7, kind: PERMANENT DB ERROR RETRIED FOREVER. One classification of database
failures (fleetpulse.common.db.errors), checked against errors a real PostgreSQL raises."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from fleetpulse.common.db import (
    TRANSIENT_ERRORS,
    describe,
    is_data_error,
    is_permanent,
    is_transient,
)


async def _raised(conn: asyncpg.Connection, sql: str) -> BaseException:
    with pytest.raises(asyncpg.PostgresError) as caught:
        await conn.execute(sql)
    return caught.value


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("SELECT 1/0", "22012"),  # division_by_zero
        ("SELECT 1e308::float8 * 10", "22003"),  # numeric_value_out_of_range
        ("SELECT '{\"a\": 1e400}'::jsonb ->> 'a' :: text", None),  # positive control below
        ("SELECT (('{\"a\": 1e400}'::jsonb) ->> 'a')::float8", "22003"),
        ("SELECT 'x'::int", "22P02"),  # invalid_text_representation
        ("CREATE TEMP TABLE c (v int CHECK (v > 0)); INSERT INTO c VALUES (-1)", "23514"),
        ("CREATE TEMP TABLE n (v int NOT NULL); INSERT INTO n VALUES (NULL)", "23502"),
        ("SELECT * FROM no_such_table", "42P01"),
    ],
)
async def test_data_and_constraint_errors_are_permanent(
    db_pool: asyncpg.Pool, sql: str, sqlstate: str | None
) -> None:
    async with db_pool.acquire() as conn, conn.transaction():
        if sqlstate is None:
            await conn.execute(sql)  # not every big number is an error
            return
        exc = await _raised(conn, sql)
        assert exc.sqlstate == sqlstate
        assert is_permanent(exc) and not is_transient(exc)
        assert not isinstance(exc, TRANSIENT_ERRORS)
        assert describe(exc).startswith(sqlstate)
        # the data's fault (22, 23): isolate the rows; else (42) the deployment's: keep them
        assert is_data_error(exc) == (sqlstate[:2] in ("22", "23"))


async def test_a_terminated_connection_is_transient(
    database_url: str, db_pool: asyncpg.Pool
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        pid = conn.get_server_pid()
        assert await db_pool.fetchval("SELECT pg_terminate_backend($1)", pid)
        await asyncio.sleep(0.1)
        with pytest.raises(TRANSIENT_ERRORS) as caught:
            await conn.fetchval("SELECT 1")
        assert is_transient(caught.value) and not is_permanent(caught.value)
        assert not is_data_error(caught.value)
    finally:
        await conn.close()


async def test_serialization_failure_and_deadlock_are_transient(db_pool: asyncpg.Pool) -> None:
    await db_pool.execute("CREATE TABLE IF NOT EXISTS dl (id int PRIMARY KEY, v int)")
    await db_pool.execute("INSERT INTO dl VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING")
    a, b = await db_pool.acquire(), await db_pool.acquire()
    try:
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        await a.execute("UPDATE dl SET v = 1 WHERE id = 1")
        await b.execute("UPDATE dl SET v = 1 WHERE id = 2")
        results = await asyncio.gather(
            a.execute("UPDATE dl SET v = 2 WHERE id = 2"),
            b.execute("UPDATE dl SET v = 2 WHERE id = 1"),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert [e.sqlstate for e in errors] == ["40P01"]  # type: ignore[attr-defined]
        assert is_transient(errors[0])
        await ta.rollback()
        await tb.rollback()
    finally:
        await db_pool.release(a)
        await db_pool.release(b)
    assert is_transient(asyncpg.SerializationError("could not serialize access"))
    assert is_transient(asyncpg.TooManyConnectionsError("too many clients"))
    assert is_transient(asyncpg.AdminShutdownError("terminating connection"))
    assert is_transient(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert is_transient(asyncpg.InternalClientError("another operation is in progress"))
    assert is_transient(asyncpg.InvalidCachedStatementError("cached plan must not change"))
