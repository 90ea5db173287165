"""``fleetpulse-verify``: is a deployed stack doing its job right now? (seed 000's "verify")

Reads, never writes:

* the latest telemetry time per tenant (``device_state.last_reading_at`` of its active devices),
* the depth of every work queue and dead-letter queue under ``FLEETPULSE_QUEUE_PREFIX``,
* the last successful delivery (any tenant),

and names what is stale: a tenant with active devices and no reading for ``--telemetry-stale``
minutes (15), a work queue deeper than ``--queue-depth`` (1000), any message in a DLQ, no
successful delivery within ``--delivery-stale`` hours (24; only once deliveries exist).

Settings: ``FLEETPULSE_DATABASE_URL``, ``FLEETPULSE_QUEUE_PREFIX``, AWS from the usual chain
(``FLEETPULSE_AWS_ENDPOINT_URL`` for an emulator). Exit 0: nothing stale; 1: something stale
(each named on a ``STALE`` line); 2: a setting is missing or a source cannot be read.
``--json`` prints the report as one JSON document instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from botocore.exceptions import BotoCoreError, ClientError

from fleetpulse.common.aws import AwsConfig, aws_client

EXIT_STALE = 1
EXIT_CONFIG = 2


@dataclass(frozen=True, slots=True)
class TenantTelemetry:
    tenant_id: str
    active_devices: int
    latest: datetime | None


@dataclass(frozen=True, slots=True)
class QueueDepth:
    name: str
    visible: int
    in_flight: int

    @property
    def is_dlq(self) -> bool:
        return self.name.endswith("-dlq")


@dataclass(frozen=True, slots=True)
class LastDelivery:
    tenant_id: str
    delivery_id: str
    completed_at: datetime


@dataclass(frozen=True, slots=True)
class Facts:
    tenants: list[TenantTelemetry]
    queues: list[QueueDepth]
    last_delivery: LastDelivery | None
    any_delivery: bool


@dataclass(frozen=True, slots=True)
class Limits:
    telemetry_stale: timedelta = timedelta(minutes=15)
    queue_depth: int = 1000
    delivery_stale: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Report:
    checked_at: datetime
    facts: Facts
    stale: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"verify at {self.checked_at.isoformat()}"]
        for t in self.facts.tenants:
            latest = t.latest.isoformat() if t.latest else "never"
            out.append(
                f"telemetry  {t.tenant_id}: latest {latest} ({t.active_devices} active devices)"
            )
        for q in self.facts.queues:
            kind = "dlq  " if q.is_dlq else "queue"
            out.append(f"{kind}      {q.name}: {q.visible} visible, {q.in_flight} in flight")
        d = self.facts.last_delivery
        out.append(
            f"delivery   last succeeded {d.completed_at.isoformat()} ({d.tenant_id}/{d.delivery_id})"
            if d
            else "delivery   none succeeded yet"
        )
        out += [f"STALE {s}" for s in self.stale]
        out.append("OK nothing stale" if not self.stale else f"{len(self.stale)} stale")
        return out


def assess(facts: Facts, now: datetime, limits: Limits) -> list[str]:
    """What is stale, one sentence each (pure)."""
    stale = []
    for t in facts.tenants:
        if t.active_devices == 0:
            continue
        if t.latest is None:
            stale.append(
                f"tenant {t.tenant_id}: {t.active_devices} active devices, no telemetry ever"
            )
        elif now - t.latest > limits.telemetry_stale:
            stale.append(f"tenant {t.tenant_id}: no telemetry since {t.latest.isoformat()}")
    for q in facts.queues:
        if q.is_dlq and q.visible + q.in_flight > 0:
            stale.append(f"dead-letter queue {q.name} holds {q.visible + q.in_flight} messages")
        elif not q.is_dlq and q.visible > limits.queue_depth:
            stale.append(f"queue {q.name}: {q.visible} messages waiting (> {limits.queue_depth})")
    d = facts.last_delivery
    if facts.any_delivery and (d is None or now - d.completed_at > limits.delivery_stale):
        since = d.completed_at.isoformat() if d else "ever"
        stale.append(f"deliveries: none succeeded since {since}")
    return stale


# --- sources (side effects) -------------------------------------------------------------------

TENANTS_SQL = """
SELECT t.tenant_id,
       count(d.device_id) FILTER (WHERE d.status = 'active') AS active_devices,
       max(s.last_reading_at) AS latest
  FROM tenants t
  LEFT JOIN devices d ON d.tenant_id = t.tenant_id
  LEFT JOIN device_state s ON s.tenant_id = d.tenant_id AND s.device_id = d.device_id
 GROUP BY t.tenant_id
 ORDER BY t.tenant_id
"""

LAST_DELIVERY_SQL = """
SELECT tenant_id, delivery_id, completed_at
  FROM deliveries
 WHERE status = 'succeeded' AND completed_at IS NOT NULL
 ORDER BY completed_at DESC
 LIMIT 1
"""


async def database_facts(
    database_url: str,
) -> tuple[list[TenantTelemetry], LastDelivery | None, bool]:
    conn = await asyncpg.connect(database_url, timeout=15)
    try:
        tenants = [
            TenantTelemetry(r["tenant_id"], int(r["active_devices"]), r["latest"])
            for r in await conn.fetch(TENANTS_SQL)
        ]
        row = await conn.fetchrow(LAST_DELIVERY_SQL)
        any_delivery = bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM deliveries)"))
    finally:
        await conn.close()
    last = LastDelivery(row["tenant_id"], row["delivery_id"], row["completed_at"]) if row else None
    return tenants, last, any_delivery


async def queue_facts(prefix: str, aws: AwsConfig) -> list[QueueDepth]:
    async with aws_client("sqs", aws) as sqs:
        urls = (await sqs.list_queues(QueueNamePrefix=prefix)).get("QueueUrls", [])
        depths = []
        for url in sorted(urls):
            attrs = (
                await sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                )
            )["Attributes"]
            depths.append(
                QueueDepth(
                    url.rsplit("/", 1)[-1],
                    int(attrs.get("ApproximateNumberOfMessages", 0)),
                    int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                )
            )
    return depths


async def verify(database_url: str, prefix: str, aws: AwsConfig, limits: Limits) -> Report:
    (tenants, last, any_delivery), queues = await asyncio.gather(
        database_facts(database_url), queue_facts(prefix, aws)
    )
    facts = Facts(tenants, queues, last, any_delivery)
    now = datetime.now(UTC)
    return Report(now, facts, assess(facts, now, limits))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetpulse-verify", description=__doc__.splitlines()[0])
    parser.add_argument("--telemetry-stale", type=float, default=15.0, help="minutes (15)")
    parser.add_argument("--queue-depth", type=int, default=1000, help="messages (1000)")
    parser.add_argument("--delivery-stale", type=float, default=24.0, help="hours (24)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def _json(report: Report) -> str:
    def default(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return json.dumps(asdict(report), default=default, indent=2)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    database_url = os.environ.get("FLEETPULSE_DATABASE_URL", "").strip()
    prefix = os.environ.get("FLEETPULSE_QUEUE_PREFIX", "").strip()
    for name, value in (
        ("FLEETPULSE_DATABASE_URL", database_url),
        ("FLEETPULSE_QUEUE_PREFIX", prefix),
    ):
        if not value:
            print(f"fleetpulse-verify: {name} is not set", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
    limits = Limits(
        timedelta(minutes=args.telemetry_stale),
        args.queue_depth,
        timedelta(hours=args.delivery_stale),
    )
    try:
        report = asyncio.run(verify(database_url, prefix, AwsConfig.from_environ(), limits))
    except (OSError, asyncpg.PostgresError, BotoCoreError, ClientError) as exc:
        print(
            f"fleetpulse-verify: cannot read the stack: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        sys.exit(EXIT_CONFIG)
    print(_json(report) if args.json else "\n".join(report.lines()), flush=True)
    sys.exit(EXIT_STALE if report.stale else 0)
