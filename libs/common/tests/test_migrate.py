"""Migrations: ordered, idempotent, and safe with two runners at once."""

from __future__ import annotations

import asyncio
import sys

import pytest

from fleetpulse.common.db.migrate import MigrationError, _pick, load_migrations, migrate
from fleetpulse.common.db.pool import connect
from fleetpulse.testing.postgres import create_database, drop_database, unique_name


def test_variant_files_are_chosen_by_backend() -> None:
    assert _pick("0002_telemetry.postgres.sql", "postgres") == (2, "0002_telemetry")
    assert _pick("0002_telemetry.timescale.sql", "postgres") is None
    assert _pick("0001_events.sql", "timescale") == (1, "0001_events")
    assert _pick("__init__.py", "postgres") is None


def test_both_variants_define_the_same_versions() -> None:
    plain = [(m.version, m.name) for m in load_migrations("postgres")]
    timescale = [(m.version, m.name) for m in load_migrations("timescale")]
    assert plain == timescale
    assert [v for v, _ in plain] == sorted(v for v, _ in plain)


async def _schema(url: str) -> list[tuple[str, str, str]]:
    conn = await connect(url)
    try:
        rows = await conn.fetch(
            """
            SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'public' ORDER BY 1, 2
            """
        )
        return [tuple(r) for r in rows]
    finally:
        await conn.close()


async def _run_cli(url: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from fleetpulse.common.db.migrate import main; main()",
        "--database-url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_two_runners_at_once_leave_one_correct_schema(migrated_template: str) -> None:
    name = unique_name("fp_mig")
    url = await create_database(name)
    try:
        results = await asyncio.gather(_run_cli(url), _run_cli(url))
        assert [code for code, _ in results] == [0, 0], results
        applied = sorted(out.strip().splitlines()[-1] for _, out in results)
        assert applied[0] == "fleetpulse-migrate: 0 migration(s) applied"
        names = [m.name for m in load_migrations("postgres")]
        assert applied[1] == f"fleetpulse-migrate: {len(names)} migration(s) applied: " + ", ".join(
            names
        )
        progress = "".join(out for _, out in results)
        for name in names:  # each progress line names its migration
            assert f"applying migration {name} (postgres)" in progress
        expected = await _schema(url.rsplit("/", 1)[0] + f"/{migrated_template}")
        assert await _schema(url) == expected
        conn = await connect(url)
        try:
            versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
            assert [r["version"] for r in versions] == [
                m.version for m in load_migrations("postgres")
            ]
            assert await migrate(conn) == []  # a re-run applies nothing
        finally:
            await conn.close()
    finally:
        await drop_database(name)


async def test_changed_applied_migration_is_refused(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn)
    finally:
        await conn.close()
