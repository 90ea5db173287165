"""``POST /api/v1/rules/preview``: the backtest. Which alerts a rule (saved or not) would have
opened and resolved over stored telemetry, by the evaluator's own pure core
(:mod:`fleetpulse.common.rules.backtest`), streaming the readings in time order through a
server-side cursor (never loading them all)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleetpulse.common.projections.catalog import rule_definition
from fleetpulse.common.rules.backtest import Backtest, PreviewAlert, UnsupportedRuleError
from fleetpulse.common.rules.domain import (
    InvalidRuleError,
    Record,
    Rule,
    RulePlan,
    rule_from_catalog,
)
from fleetpulse.provision_api import schemas
from fleetpulse.provision_api.api.deps import Viewer, Wired, problems
from fleetpulse.provision_api.domain import InvalidError, NotFoundError

router = APIRouter(prefix="/rules", tags=["rules"])

MAX_RANGE = timedelta(days=31)
MAX_DEVICES = 10_000
MAX_LISTED = 1_000
CHUNK = 10_000
_PREVIEW_ID = "preview"


class PreviewSelector(schemas.Strict):
    tags: schemas.Tags = Field(default_factory=dict)
    device_ids: Annotated[list[schemas.Id], Field(max_length=MAX_DEVICES)] | None = None


class PreviewIn(schemas.Strict):
    """A rule body (``rule``) or a saved rule (``rule_id``), a time range ``[from, to)`` and an
    optional device selector (narrowing the rule's own)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    rule: schemas.RuleIn | None = None
    rule_id: schemas.Id | None = None
    start: schemas.Moment = Field(alias="from")
    end: schemas.Moment = Field(alias="to")
    device_selector: PreviewSelector = Field(default_factory=PreviewSelector)

    @model_validator(mode="after")
    def _bounded(self) -> PreviewIn:
        if (self.rule is None) == (self.rule_id is None):
            raise ValueError("give exactly one of rule and rule_id")
        if self.end <= self.start:
            raise ValueError("to must be after from")
        if self.end - self.start > MAX_RANGE:
            raise ValueError(f"the range may span at most {MAX_RANGE.days} days")
        return self


class PreviewedAlert(BaseModel):
    device_id: str
    opened_at: datetime
    resolved_at: datetime | None = Field(description="null: still open at the end of the range")
    opened_value: Any
    resolved_value: Any = None
    reason: str


class PreviewCounts(BaseModel):
    opened: int
    resolved: int
    still_open: int
    readings: int = Field(description="Stored readings carrying a metric the rule looks at")
    devices: int


class PreviewOut(BaseModel):
    alerts: list[PreviewedAlert] = Field(description=f"The first {MAX_LISTED} by opened_at")
    truncated: bool
    counts: PreviewCounts


@router.post("/preview", response_model=PreviewOut, responses=problems(404))
async def preview_rule(body: PreviewIn, caller: Viewer, wired: Wired) -> Any:
    """Backtest a rule over the tenant's stored telemetry in ``[from, to)``: the alerts it would
    have opened and resolved (device, times, triggering values) and counts. Bounded: at most
    31 days and 10,000 devices (422 beyond). ``no_data`` rules cannot be previewed (422)."""
    return await run_preview(wired.queries.pool, caller.tenant_id, body)


async def run_preview(pool: asyncpg.Pool, tenant_id: str, body: PreviewIn) -> dict[str, Any]:
    """The preview of ``body`` for the tenant (the endpoint's work, without HTTP): a
    :class:`PreviewOut` shape. Raises ``InvalidError`` (422) and ``NotFoundError`` (404)."""
    rule = await _rule(pool, tenant_id, body)
    devices = await _devices(pool, tenant_id, rule, body.device_selector)
    try:
        backtest = Backtest(rule, devices)
    except UnsupportedRuleError as exc:
        raise InvalidError("rule", str(exc)) from None
    metrics = sorted(set(RulePlan.of([rule]).metrics))
    async for chunk in stream_readings(
        pool, tenant_id, list(devices), metrics, body.start, body.end
    ):
        backtest.feed(chunk)
    alerts = backtest.finish(body.end)
    return _result(alerts, backtest.readings, len(devices))


async def _rule(pool: asyncpg.Pool, tenant_id: str, body: PreviewIn) -> Rule:
    if body.rule is not None:
        data = body.rule.model_dump(mode="json", exclude_none=True)
        fields = {
            "name": data["name"],
            "kind": data["kind"],
            "severity": data["severity"],
            "definition": rule_definition(data),
            "device_selector": data.get("device_selector") or {},
            "version": 1,
        }
        rule_id = _PREVIEW_ID
    else:
        row = await pool.fetchrow(
            "SELECT rule_id, name, kind, severity, definition, device_selector, version"
            " FROM rules WHERE tenant_id = $1 AND rule_id = $2",
            tenant_id,
            body.rule_id,
        )
        if row is None:
            raise NotFoundError(f"rule {body.rule_id} not found")
        fields = dict(row)
        rule_id = fields.pop("rule_id")
    try:
        return rule_from_catalog(tenant_id=tenant_id, rule_id=rule_id, **fields)
    except InvalidRuleError as exc:
        raise InvalidError("rule", str(exc)) from None


async def _devices(
    pool: asyncpg.Pool, tenant_id: str, rule: Rule, selector: PreviewSelector
) -> dict[str, dict[str, Any]]:
    """The tenant's active devices the rule and the request select: id -> attributes."""
    tags = {**rule.selector, **selector.tags}
    rows = await pool.fetch(
        """
        SELECT device_id, attributes FROM devices
        WHERE tenant_id = $1 AND status = 'active' AND tags @> $2::jsonb
          AND ($3::text[] IS NULL OR device_id = ANY($3::text[]))
        ORDER BY device_id LIMIT $4
        """,
        tenant_id,
        tags,
        selector.device_ids,
        MAX_DEVICES + 1,
    )
    if len(rows) > MAX_DEVICES:
        raise InvalidError(
            "device_selector", f"selects more than {MAX_DEVICES} devices; narrow it down"
        )
    return {r["device_id"]: dict(r["attributes"] or {}) for r in rows}


async def stream_readings(
    pool: asyncpg.Pool,
    tenant_id: str,
    devices: list[str],
    metrics: list[str],
    start: datetime,
    end: datetime,
) -> AsyncIterator[list[Record]]:
    """The devices' readings in ``[start, end)`` that carry one of ``metrics``, each device's in
    time order (devices are evaluated independently, so the scan follows the readings' key
    (device key, time) and needs no sort), ``CHUNK`` at a time through a server-side cursor
    in one read-only snapshot. Only the rule's metrics are read, as numbers (a boolean as its
    stored 0/1, which compares as the evaluator compares it)."""
    if not devices or not metrics:
        return
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        # the tenant's keys of the devices, and the ids of the names (a number and a boolean
        # can share a name): the scan then reads telemetry_readings alone
        keys = dict(
            await conn.fetch(
                "SELECT device_key, device_id FROM device_keys"
                " WHERE tenant_id = $1 AND device_id = ANY($2::text[])",
                tenant_id,
                devices,
            )
        )
        named = await conn.fetch(
            "SELECT name, metric_id FROM metric_names WHERE name = ANY($1::text[])", metrics
        )
        ids = {m: [r["metric_id"] for r in named if r["name"] == m] for m in metrics}
        if not keys or not named:
            return
        columns = ", ".join(
            f"(SELECT u.v FROM unnest(metric_ids, metric_values) AS u(id, v)"  # noqa: S608
            f" WHERE u.id = ANY(${4 + i}::int[]) LIMIT 1)"
            for i in range(len(metrics))
        )
        query = f"""
            SELECT device_key, time, {columns} FROM telemetry_readings
            WHERE device_key = ANY($1::int[]) AND time >= $2 AND time < $3
              AND metric_ids && ${4 + len(metrics)}::int[]
            ORDER BY device_key, time
        """  # noqa: S608 (only placeholders are interpolated)
        every = [i for m in metrics for i in ids[m]]
        args = (list(keys), start, end, *(ids[m] for m in metrics), every)
        cursor = await conn.cursor(query, *args)
        # the next chunk is fetched (the server scans and sends it) while this one is evaluated
        pending = asyncio.ensure_future(cursor.fetch(CHUNK))
        try:
            while rows := await pending:
                pending = asyncio.ensure_future(cursor.fetch(CHUNK))
                yield [Record(tenant_id, keys[r[0]], r[1], _values(metrics, r)) for r in rows]
        finally:
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, asyncpg.PostgresError):
                    await pending


def _values(metrics: list[str], row: asyncpg.Record) -> dict[str, float]:
    if len(metrics) == 1:
        value = row[2]
        return {} if value is None else {metrics[0]: value}
    return {m: v for m, v in zip(metrics, row[2:], strict=True) if v is not None}


def _result(alerts: list[PreviewAlert], readings: int, devices: int) -> dict[str, Any]:
    resolved = sum(a.resolved_at is not None for a in alerts)
    return {
        "alerts": [
            {
                "device_id": a.device_id,
                "opened_at": a.opened_at,
                "resolved_at": a.resolved_at,
                "opened_value": a.opened_value,
                "resolved_value": a.resolved_value,
                "reason": a.reason,
            }
            for a in alerts[:MAX_LISTED]
        ],
        "truncated": len(alerts) > MAX_LISTED,
        "counts": {
            "opened": len(alerts),
            "resolved": resolved,
            "still_open": len(alerts) - resolved,
            "readings": readings,
            "devices": devices,
        },
    }
