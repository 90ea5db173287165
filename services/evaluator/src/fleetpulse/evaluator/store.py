"""``PostgresRuleStateStore``: rule states and device watermarks in PostgreSQL (migration 0300).

A device's rule states change only with its ``evaluator_devices`` row locked: batches wait for
the lock (rows locked in key order, so two batches never deadlock on each other), timers skip a
locked device and look again on the next tick. That makes every transition a transaction on
fresh state, so several replicas consuming the same queue decide exactly what one would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from fleetpulse.evaluator.domain import Rule, RuleState

DeviceKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class StateWrite:
    key: DeviceKey
    rule_id: str
    state: RuleState | None
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SilentCandidate:
    key: DeviceKey
    rule_id: str
    last_seen: datetime
    rearmed_at: datetime | None


def _columns(keys: Iterable[DeviceKey]) -> tuple[list[str], list[str]]:
    ordered = sorted(keys)
    return [k[0] for k in ordered], [k[1] for k in ordered]


class PostgresRuleStateStore:
    """Reads and writes inside the caller's transaction (every method takes its ``conn``)."""

    def __init__(self) -> None:
        self._known: set[DeviceKey] = set()

    async def advance_devices(
        self, conn: asyncpg.Connection, newest: dict[DeviceKey, datetime]
    ) -> dict[DeviceKey, datetime | None]:
        """Lock the devices' rows (creating missing ones) and move each last_seen to at least
        ``newest[key]``, in one statement; returns each device's last_seen from before."""
        keys = sorted(newest)
        rows = await conn.fetch(
            """
            INSERT INTO evaluator_devices AS d (tenant_id, device_id, last_seen)
            SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) ORDER BY 1, 2
            ON CONFLICT (tenant_id, device_id) DO UPDATE
               SET prev_seen = d.last_seen, last_seen = greatest(d.last_seen, EXCLUDED.last_seen)
            RETURNING d.tenant_id, d.device_id, d.prev_seen, (xmax = 0) AS inserted
            """,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [newest[k] for k in keys],
        )
        return {
            (r["tenant_id"], r["device_id"]): None if r["inserted"] else r["prev_seen"]
            for r in rows
        }

    async def lock_devices(
        self, conn: asyncpg.Connection, keys: Iterable[DeviceKey], *, skip_locked: bool = False
    ) -> dict[DeviceKey, datetime | None]:
        """Lock the devices' rows (creating missing ones); returns each locked device's last_seen.

        With ``skip_locked`` a device another transaction holds is left out of the result.
        """
        keys = set(keys)
        if not keys <= self._known:
            await self._ensure(conn, keys - self._known)
        locked = await self._lock(conn, keys, skip_locked)
        missing = keys - locked.keys()
        if missing and not skip_locked:  # ours came from a transaction that rolled back
            self._known -= missing
            await self._ensure(conn, missing)
            locked.update(await self._lock(conn, missing, skip_locked))
        return locked

    async def _lock(
        self, conn: asyncpg.Connection, keys: set[DeviceKey], skip_locked: bool
    ) -> dict[DeviceKey, datetime | None]:
        tenants, devices = _columns(keys)
        rows = await conn.fetch(
            f"""
            SELECT d.tenant_id, d.device_id, d.last_seen FROM evaluator_devices d
            JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, device_id)
              ON d.tenant_id = k.tenant_id AND d.device_id = k.device_id
            ORDER BY d.tenant_id, d.device_id
            FOR UPDATE OF d{" SKIP LOCKED" if skip_locked else ""}
            """,  # noqa: S608 - a fixed clause, no input
            tenants,
            devices,
        )
        return {(r["tenant_id"], r["device_id"]): r["last_seen"] for r in rows}

    async def _ensure(self, conn: asyncpg.Connection, keys: set[DeviceKey]) -> None:
        tenants, devices = _columns(keys)
        await conn.execute(
            """
            INSERT INTO evaluator_devices (tenant_id, device_id)
            SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2
            ON CONFLICT DO NOTHING
            """,
            tenants,
            devices,
        )
        self._known |= keys

    async def load(
        self, conn: asyncpg.Connection, keys: Iterable[DeviceKey]
    ) -> dict[DeviceKey, dict[str, RuleState]]:
        """The live states of the devices; a firing state whose alert was closed is left out
        (the rule starts afresh, so a breach after a close opens a new alert)."""
        tenants, devices = _columns(keys)
        rows = await conn.fetch(
            """
            SELECT s.tenant_id, s.device_id, s.rule_id, s.status, s.since, s.rule_version,
                   s.alert_id, s.value
            FROM evaluator_rule_state s
            JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, device_id)
              ON s.tenant_id = k.tenant_id AND s.device_id = k.device_id
            LEFT JOIN alerts a ON a.tenant_id = s.tenant_id AND a.alert_id = s.alert_id
            WHERE s.status = 'pending' OR a.status IN ('open', 'acknowledged')
            """,
            tenants,
            devices,
        )
        result: dict[DeviceKey, dict[str, RuleState]] = {}
        for r in rows:
            state = RuleState(r["status"], r["since"], r["rule_version"], r["alert_id"], r["value"])
            result.setdefault((r["tenant_id"], r["device_id"]), {})[r["rule_id"]] = state
        return result

    async def save(
        self,
        conn: asyncpg.Connection,
        writes: Sequence[StateWrite],
        last_seen: dict[DeviceKey, datetime] | None = None,
    ) -> None:
        """Upsert or delete the written states and advance the devices' last_seen."""
        upserts = [w for w in writes if w.state is not None]
        deletes = [w for w in writes if w.state is None]
        if upserts:
            await self._upsert(conn, upserts)
        if deletes:
            await conn.execute(
                """
                DELETE FROM evaluator_rule_state s
                USING unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, device_id, rule_id)
                WHERE s.tenant_id = k.tenant_id AND s.device_id = k.device_id AND s.rule_id = k.rule_id
                """,
                [w.key[0] for w in deletes],
                [w.key[1] for w in deletes],
                [w.rule_id for w in deletes],
            )
        if last_seen:
            await self._advance(conn, last_seen)

    async def _upsert(self, conn: asyncpg.Connection, writes: Sequence[StateWrite]) -> None:
        states = [w.state for w in writes if w.state is not None]
        await conn.execute(
            """
            INSERT INTO evaluator_rule_state AS s (tenant_id, device_id, rule_id, status, since,
                due_at, rule_version, alert_id, value, updated_at)
            SELECT k.*, now() FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                $5::timestamptz[], $6::timestamptz[], $7::int[], $8::text[], $9::jsonb[]) AS k
            ON CONFLICT (tenant_id, device_id, rule_id) DO UPDATE SET
                status = EXCLUDED.status, since = EXCLUDED.since, due_at = EXCLUDED.due_at,
                rule_version = EXCLUDED.rule_version, alert_id = EXCLUDED.alert_id,
                value = EXCLUDED.value, updated_at = now()
            """,
            [w.key[0] for w in writes],
            [w.key[1] for w in writes],
            [w.rule_id for w in writes],
            [s.status for s in states],
            [s.since for s in states],
            [w.due_at for w in writes],
            [s.rule_version for s in states],
            [s.alert_id for s in states],
            [s.value for s in states],
        )

    async def _advance(
        self, conn: asyncpg.Connection, last_seen: dict[DeviceKey, datetime]
    ) -> None:
        keys = sorted(last_seen)
        await conn.execute(
            """
            UPDATE evaluator_devices d SET last_seen = k.last_seen, updated_at = now()
            FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(tenant_id, device_id, last_seen)
            WHERE d.tenant_id = k.tenant_id AND d.device_id = k.device_id
              AND (d.last_seen IS NULL OR d.last_seen < k.last_seen)
            """,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [last_seen[k] for k in keys],
        )

    async def adopt_alert(
        self, conn: asyncpg.Connection, key: DeviceKey, rule_id: str, fingerprint: str
    ) -> str | None:
        """Point a firing state at the alert already open for ``fingerprint``; returns its id."""
        return await conn.fetchval(  # type: ignore[no-any-return]
            """
            UPDATE evaluator_rule_state SET alert_id = a.alert_id
            FROM alerts a
            WHERE a.fingerprint = $4 AND a.status IN ('open', 'acknowledged')
              AND evaluator_rule_state.tenant_id = $1 AND evaluator_rule_state.device_id = $2
              AND evaluator_rule_state.rule_id = $3
            RETURNING a.alert_id
            """,
            key[0],
            key[1],
            rule_id,
            fingerprint,
        )

    async def due_pending(
        self, conn: asyncpg.Connection | asyncpg.Pool, now: datetime, limit: int = 500
    ) -> list[DeviceKey]:
        """Devices with a pending threshold whose duration has elapsed by ``now``."""
        rows = await conn.fetch(
            """
            SELECT DISTINCT tenant_id, device_id FROM evaluator_rule_state
            WHERE status = 'pending' AND due_at <= $1 LIMIT $2
            """,
            now,
            limit,
        )
        return [(r["tenant_id"], r["device_id"]) for r in rows]

    async def silent(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        rules: Sequence[Rule],
        now: datetime,
        limit: int = 1000,
    ) -> list[SilentCandidate]:
        """(device, no_data rule) pairs silent for the rule's timeout with no alert open
        (counting from a close of the previous alert, if later than the last record)."""
        if not rules:
            return []
        rows = await conn.fetch(
            """
            SELECT d.tenant_id, d.device_id, r.rule_id, d.last_seen, a.closed_at
            FROM unnest($1::text[], $2::text[], $3::float8[]) AS r(tenant_id, rule_id, timeout_s)
            JOIN evaluator_devices d ON d.tenant_id = r.tenant_id
             AND d.last_seen <= $4::timestamptz - make_interval(secs => r.timeout_s)
            LEFT JOIN evaluator_rule_state s ON s.tenant_id = d.tenant_id
             AND s.device_id = d.device_id AND s.rule_id = r.rule_id
            LEFT JOIN alerts a ON a.tenant_id = s.tenant_id AND a.alert_id = s.alert_id
            WHERE (s.status IS NULL OR a.status IS NULL OR a.status NOT IN ('open', 'acknowledged'))
              AND (a.closed_at IS NULL OR a.closed_at <= $4::timestamptz - make_interval(secs => r.timeout_s))
            LIMIT $5
            """,
            [r.tenant_id for r in rules],
            [r.rule_id for r in rules],
            [r.timeout_s for r in rules],
            now,
            limit,
        )
        return [
            SilentCandidate(
                (r["tenant_id"], r["device_id"]), r["rule_id"], r["last_seen"], r["closed_at"]
            )
            for r in rows
        ]
