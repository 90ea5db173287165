"""``PostgresRuleStateStore``: rule states, device watermarks and liveness, and no_data
deadlines in PostgreSQL (migrations 0300-0303), and condition memories (0310).

A device's rule states change only with its ``evaluator_devices`` row locked: batches wait for
the lock (rows locked in key order, so two batches never deadlock on each other), timers skip a
locked device and look again on the next tick. That makes every transition a transaction on
fresh state, so several replicas consuming the same queue decide exactly what one would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from fleetpulse.common.rules.conditions import Samples
from fleetpulse.common.rules.domain import RuleMemory, RuleState, Watermarks

DeviceKey = tuple[str, str]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _us(ts: datetime) -> int:
    return (ts - _EPOCH) // _MICROSECOND


def _samples_json(samples: tuple[Samples, ...]) -> dict[str, list[list[list[float]]]]:
    """``{"c": [[[epoch_s, value], ...] per condition]}`` (an object: asyncpg would read a
    bare list as more array dimensions). Epoch seconds as a double round-trip to the exact
    microsecond for any date this platform stores (below 2**53 microseconds)."""
    return {"c": [[[ts.timestamp(), value] for ts, value in condition] for condition in samples]}


def _samples_of(data: dict[str, list[list[list[float]]]]) -> tuple[Samples, ...]:
    at = datetime.fromtimestamp
    return tuple(tuple((at(t, UTC), float(v)) for t, v in condition) for condition in data["c"])


def _marks_json(advance: DeviceAdvance) -> dict[str, int | None] | None:
    """The batch's marks for the upsert: ``None`` when every tracked metric is at the batch's
    newest reading (nothing to merge), else every tracked metric (``None``: not in the batch)."""
    marks, newest = advance.marks.metrics, advance.marks.newest
    if newest is None or all(marks.get(m) == newest for m in advance.tracked):
        return None
    return {m: _us(marks[m]) if m in marks else None for m in advance.tracked}


def _watermarks(
    prev_seen: datetime | None, raw: Mapping[str, Any] | None, advance: DeviceAdvance
) -> Watermarks:
    """The device's watermarks before the batch; ``raw`` ``{}`` stands for "every tracked metric
    at ``prev_seen``", ``None`` for "not needed" (the batch is newer than everything)."""
    if raw is None or prev_seen is None:
        return Watermarks(prev_seen, {})
    if not raw:
        return Watermarks(prev_seen, dict.fromkeys(advance.tracked, prev_seen))
    return Watermarks(
        prev_seen,
        {m: _EPOCH + timedelta(microseconds=int(us)) for m, us in raw.items() if us is not None},
    )


@dataclass(frozen=True, slots=True)
class DeviceAdvance:
    """What one batch moves a device's row to: its watermarks (device time) and, as liveness,
    the receive times of its heartbeats and readings (``None``: the batch had none)."""

    marks: Watermarks
    heartbeat_at: datetime | None
    reading_at: datetime | None
    oldest_reading: datetime | None = None
    """Device time of the batch's oldest reading (``None``: heartbeats only)."""
    tracked: tuple[str, ...] = ()
    """The metrics the device's threshold rules look at."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """A due ``evaluator_deadlines`` row with the device's last traffic (receive time)."""

    key: DeviceKey
    rule_id: str
    armed_at: datetime
    alive_at: datetime | None


@dataclass(frozen=True, slots=True)
class StateWrite:
    key: DeviceKey
    rule_id: str
    state: RuleState | None
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StateRow:
    key: DeviceKey
    rule_id: str
    rule_version: int


def _columns(keys: Iterable[DeviceKey]) -> tuple[list[str], list[str]]:
    ordered = sorted(keys)
    return [k[0] for k in ordered], [k[1] for k in ordered]


_ADVANCE_DEVICES = """
    INSERT INTO evaluator_devices AS d (tenant_id, device_id, last_seen, marks,
        last_heartbeat_at, last_reading_at, prev_seen)
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[],
        $5::timestamptz[], $6::timestamptz[], $7::timestamptz[]) ORDER BY 1, 2
    ON CONFLICT (tenant_id, device_id) DO UPDATE SET
        prev_seen = d.last_seen,
        -- EXCLUDED.prev_seen carries the batch's oldest reading, EXCLUDED.marks is NULL
        -- when every tracked metric is in the batch at its newest reading.
        prev_marks = CASE WHEN EXCLUDED.prev_seen <= d.last_seen
                          THEN coalesce(d.marks, '{}'::jsonb) END,
        last_seen = greatest(d.last_seen, EXCLUDED.last_seen),
        marks = CASE
            WHEN EXCLUDED.last_seen IS NULL THEN d.marks
            WHEN EXCLUDED.marks IS NOT NULL
            THEN evaluator_merge_marks(d.marks, d.last_seen, EXCLUDED.marks)
            WHEN d.marks IS NULL OR d.last_seen IS NULL OR EXCLUDED.last_seen > d.last_seen
            THEN NULL
            ELSE evaluator_raise_marks(d.marks, EXCLUDED.last_seen) END,
        last_heartbeat_at = greatest(d.last_heartbeat_at, EXCLUDED.last_heartbeat_at),
        last_reading_at = CASE
            WHEN d.last_seen IS NULL OR EXCLUDED.last_seen > d.last_seen
            THEN greatest(d.last_reading_at, EXCLUDED.last_reading_at)
            ELSE d.last_reading_at END
    RETURNING d.tenant_id, d.device_id, d.prev_seen, d.prev_marks, (xmax = 0) AS inserted
"""


class PostgresRuleStateStore:
    """Reads and writes inside the caller's transaction (every method takes its ``conn``)."""

    def __init__(self) -> None:
        self._known: set[DeviceKey] = set()

    async def advance_devices(
        self, conn: asyncpg.Connection, advances: Mapping[DeviceKey, DeviceAdvance]
    ) -> dict[DeviceKey, Watermarks | None]:
        """Lock the devices' rows (creating missing ones) and advance their watermarks and
        liveness times, in one statement; returns each device's watermarks from before
        (``None`` for a device never seen; without metric marks when the batch is newer than
        everything before, as the evaluation then never reads them)."""
        keys = sorted(advances)
        items = [advances[k] for k in keys]
        rows = await conn.fetch(
            _ADVANCE_DEVICES,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [a.marks.newest for a in items],
            [_marks_json(a) for a in items],
            [a.heartbeat_at for a in items],
            [a.reading_at for a in items],
            [a.oldest_reading for a in items],
        )
        return {
            (r["tenant_id"], r["device_id"]): None
            if r["inserted"]
            else _watermarks(
                r["prev_seen"], r["prev_marks"], advances[r["tenant_id"], r["device_id"]]
            )
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

    async def load_memory(
        self, conn: asyncpg.Connection, keys: Iterable[DeviceKey]
    ) -> dict[DeviceKey, dict[str, RuleMemory]]:
        """The condition memories of the devices (general rules only)."""
        tenants, devices = _columns(keys)
        if not tenants:
            return {}
        rows = await conn.fetch(
            """
            SELECT m.tenant_id, m.device_id, m.rule_id, m.rule_version, m.samples
            FROM evaluator_condition_memory m
            JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, device_id)
              ON m.tenant_id = k.tenant_id AND m.device_id = k.device_id
            """,
            tenants,
            devices,
        )
        result: dict[DeviceKey, dict[str, RuleMemory]] = {}
        for r in rows:
            memory = RuleMemory(r["rule_version"], _samples_of(r["samples"]))
            result.setdefault((r["tenant_id"], r["device_id"]), {})[r["rule_id"]] = memory
        return result

    async def save_memory(
        self, conn: asyncpg.Connection, writes: Sequence[tuple[DeviceKey, str, RuleMemory]]
    ) -> None:
        if not writes:
            return
        await conn.execute(
            """
            INSERT INTO evaluator_condition_memory AS m (tenant_id, device_id, rule_id,
                rule_version, samples)
            SELECT k.t, k.d, k.r, k.v, k.s::jsonb
            FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[]) AS k(t, d, r, v, s)
            ON CONFLICT (tenant_id, device_id, rule_id) DO UPDATE SET
                rule_version = EXCLUDED.rule_version, samples = EXCLUDED.samples,
                updated_at = now()
            """,
            [key[0] for key, _, _ in writes],
            [key[1] for key, _, _ in writes],
            [rule_id for _, rule_id, _ in writes],
            [m.rule_version for _, _, m in writes],
            [json.dumps(_samples_json(m.samples)) for _, _, m in writes],  # text: no per-item
        )  # array checks by asyncpg

    async def drop_memory(
        self, conn: asyncpg.Connection, key: DeviceKey, rule_ids: Iterable[str]
    ) -> None:
        await conn.execute(
            "DELETE FROM evaluator_condition_memory WHERE tenant_id = $1 AND device_id = $2"
            " AND rule_id = ANY($3::text[])",
            key[0],
            key[1],
            list(rule_ids),
        )

    async def drop_stale_memory(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        """Forget the condition memories of rules that are deleted or disabled, or changed
        (another version: it would start over anyway)."""
        await conn.execute(
            """
            DELETE FROM evaluator_condition_memory m
            WHERE NOT EXISTS (SELECT 1 FROM rules r
                              WHERE r.tenant_id = m.tenant_id AND r.rule_id = m.rule_id
                                AND r.enabled AND r.version = m.rule_version)
            """
        )

    async def save(
        self,
        conn: asyncpg.Connection,
        writes: Sequence[StateWrite],
    ) -> None:
        """Upsert or delete the written states."""
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

    async def sync_deadlines(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        """Make ``evaluator_deadlines`` hold exactly the (no_data rule, device) pairs the catalog
        selects: new pairs armed at the later of the rule's and device's last change, pairs of
        a changed rule due again at once (the clock recomputes them), gone pairs deleted."""
        await conn.execute(
            """
            WITH wanted AS (
                SELECT r.tenant_id, r.rule_id, d.device_id, r.version,
                       greatest(r.updated_at, d.updated_at) AS armed_at,
                       make_interval(secs => CASE jsonb_typeof(r.definition->'timeout_s')
                           WHEN 'number' THEN (r.definition->>'timeout_s')::float8 ELSE 0 END)
                           AS timeout
                FROM rules r
                JOIN devices d ON d.tenant_id = r.tenant_id AND d.status = 'active'
                 AND d.tags @> coalesce(r.device_selector->'tags', '{}'::jsonb)
                WHERE r.enabled AND r.kind = 'no_data'
            ), gone AS (
                DELETE FROM evaluator_deadlines x
                WHERE NOT EXISTS (SELECT 1 FROM wanted w WHERE w.tenant_id = x.tenant_id
                    AND w.rule_id = x.rule_id AND w.device_id = x.device_id)
            )
            INSERT INTO evaluator_deadlines AS x (tenant_id, rule_id, device_id, rule_version,
                armed_at, due_at)
            SELECT tenant_id, rule_id, device_id, version, armed_at, armed_at + timeout FROM wanted
            ON CONFLICT (tenant_id, rule_id, device_id) DO UPDATE
               SET rule_version = EXCLUDED.rule_version, due_at = least(x.due_at, now())
             WHERE x.rule_version <> EXCLUDED.rule_version
            """
        )

    async def due_deadlines(
        self, conn: asyncpg.Connection | asyncpg.Pool, now: datetime, limit: int = 1000
    ) -> list[Deadline]:
        """The pairs whose ``due_at`` has passed, oldest first, with each device's last traffic."""
        rows = await conn.fetch(
            """
            SELECT x.tenant_id, x.device_id, x.rule_id, x.armed_at,
                   greatest(e.last_heartbeat_at, e.last_reading_at) AS alive_at
            FROM evaluator_deadlines x
            LEFT JOIN evaluator_devices e
              ON e.tenant_id = x.tenant_id AND e.device_id = x.device_id
            WHERE x.due_at <= $1 ORDER BY x.due_at LIMIT $2
            """,
            now,
            limit,
        )
        return [
            Deadline((r["tenant_id"], r["device_id"]), r["rule_id"], r["armed_at"], r["alive_at"])
            for r in rows
        ]

    async def reschedule(
        self, conn: asyncpg.Connection, due: Sequence[tuple[DeviceKey, str, datetime | None]]
    ) -> None:
        """Set each pair's next ``due_at``; ``None`` deletes the pair (its rule is gone)."""
        keep = [d for d in due if d[2] is not None]
        drop = [d for d in due if d[2] is None]
        if keep:
            await conn.execute(
                """
                UPDATE evaluator_deadlines x SET due_at = k.due_at
                FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                     AS k(tenant_id, device_id, rule_id, due_at)
                WHERE x.tenant_id = k.tenant_id AND x.device_id = k.device_id
                  AND x.rule_id = k.rule_id
                """,
                [d[0][0] for d in keep],
                [d[0][1] for d in keep],
                [d[1] for d in keep],
                [d[2] for d in keep],
            )
        if drop:
            await conn.execute(
                """
                DELETE FROM evaluator_deadlines x
                USING unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, device_id, rule_id)
                WHERE x.tenant_id = k.tenant_id AND x.device_id = k.device_id
                  AND x.rule_id = k.rule_id
                """,
                [d[0][0] for d in drop],
                [d[0][1] for d in drop],
                [d[1] for d in drop],
            )

    async def closed_at(
        self, conn: asyncpg.Connection, keys: Iterable[DeviceKey]
    ) -> dict[tuple[DeviceKey, str], datetime]:
        """When an operator closed the alert of a firing state (the rule re-arms from there)."""
        tenants, devices = _columns(keys)
        rows = await conn.fetch(
            """
            SELECT s.tenant_id, s.device_id, s.rule_id, a.closed_at
            FROM evaluator_rule_state s
            JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, device_id)
              ON s.tenant_id = k.tenant_id AND s.device_id = k.device_id
            JOIN alerts a ON a.tenant_id = s.tenant_id AND a.alert_id = s.alert_id
            WHERE a.status = 'closed' AND a.closed_at IS NOT NULL
            """,
            tenants,
            devices,
        )
        return {((r["tenant_id"], r["device_id"]), r["rule_id"]): r["closed_at"] for r in rows}

    async def all_states(self, conn: asyncpg.Connection | asyncpg.Pool) -> list[StateRow]:
        """Every (device, rule) that has a state, with its rule version (for the catalog sweep)."""
        rows = await conn.fetch(
            "SELECT tenant_id, device_id, rule_id, rule_version FROM evaluator_rule_state"
        )
        return [
            StateRow((r["tenant_id"], r["device_id"]), r["rule_id"], r["rule_version"])
            for r in rows
        ]
