"""Ordered SQL migrations, safe to run from several processes at once.

Files live in ``fleetpulse/common/db/migrations``: ``NNNN_name.sql`` runs everywhere;
``NNNN_name.timescale.sql`` runs instead when the TimescaleDB extension is available and
``NNNN_name.postgres.sql`` when it is not (native partitioning, plain rollups). Number ranges by
owner: 0001-0099 foundation, 0100 ingest, 0200 provision_api, 0300 evaluator, 0400 dispatcher
and delivery. A session-level advisory lock serialises runners; each migration commits together
with its row in ``schema_migrations``, so a re-run applies only what is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import asyncpg
import uvloop

from fleetpulse.common.db.pool import connect
from fleetpulse.common.errors import ConfigurationError, FleetPulseError
from fleetpulse.common.settings import ServiceSettings, load_settings

Variant = Literal["timescale", "postgres"]
LOCK_KEY = 0x466C5054_4D494752  # "FlPTMIGR": one key for every runner
log = logging.getLogger(__name__)


class MigrationError(FleetPulseError):
    """An applied migration changed on disk, or a migration failed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(variant: Variant) -> list[Migration]:
    """The migrations for ``variant``, ordered by version (one file per version)."""
    chosen: dict[int, tuple[str, str]] = {}
    for entry in resources.files("fleetpulse.common.db.migrations").iterdir():
        picked = _pick(entry.name, variant)
        if picked is not None:
            version, name = picked
            if version in chosen:
                raise MigrationError(f"two migrations with version {version:04d}")
            chosen[version] = (name, entry.read_text(encoding="utf-8"))
    return [Migration(v, name, sql) for v, (name, sql) in sorted(chosen.items())]


def _pick(filename: str, variant: Variant) -> tuple[int, str] | None:
    if not filename.endswith(".sql") or not filename[:4].isdigit():
        return None
    stem = filename.removesuffix(".sql")
    base, _, suffix = stem.rpartition(".")
    if not base:
        base, suffix = stem, ""
    if suffix and suffix != variant:
        return None
    return int(base[:4]), base


async def detect_variant(conn: asyncpg.Connection) -> Variant:
    """``timescale`` when the extension is (or can be) installed, otherwise ``postgres``."""
    available = await conn.fetchval(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    if not available:
        return "postgres"
    await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return "timescale"


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply every missing migration; returns the ones this call applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await _ensure_ledger(conn)
        variant = await detect_variant(conn)
        return await _apply_missing(conn, load_migrations(variant), variant)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _ensure_ledger(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version int PRIMARY KEY,
            name text NOT NULL,
            variant text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


async def _apply_missing(
    conn: asyncpg.Connection, migrations: list[Migration], variant: Variant
) -> list[Migration]:
    applied = {
        r["version"]: r["checksum"]
        for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
    }
    done = []
    for migration in migrations:
        if migration.version in applied:
            _check_unchanged(migration, applied[migration.version])
            continue
        await _apply(conn, migration, variant)
        done.append(migration)
    return done


def _check_unchanged(migration: Migration, checksum: str) -> None:
    if checksum != migration.checksum:
        raise MigrationError(f"migration {migration.name} changed after it was applied")


async def _apply(conn: asyncpg.Connection, migration: Migration, variant: Variant) -> None:
    log.info(
        "applying migration %s (%s)",
        migration.name,
        variant,
        extra={"migration": migration.name, "variant": variant},
    )
    async with conn.transaction():
        try:
            await conn.execute(migration.sql)
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, variant, checksum) VALUES ($1, $2, $3, $4)",
            migration.version,
            migration.name,
            variant,
            migration.checksum,
        )


class MigrateSettings(ServiceSettings):
    """``fleetpulse-migrate`` needs only the database URL."""


async def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="fleetpulse-migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="overrides FLEETPULSE_DATABASE_URL")
    args = parser.parse_args(argv)
    try:
        dsn = args.database_url or (await load_settings(MigrateSettings)).database_url
    except ConfigurationError as exc:
        print(f"fleetpulse-migrate: configuration error: {exc}", file=sys.stderr)
        return 2
    conn = await connect(dsn, application_name="fleetpulse-migrate")
    try:
        applied = await migrate(conn)
    except MigrationError as exc:
        print(f"fleetpulse-migrate: {exc}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    names = f": {', '.join(m.name for m in applied)}" if applied else ""
    print(f"fleetpulse-migrate: {len(applied)} migration(s) applied{names}")
    return 0


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(uvloop.run(_main(argv)))
