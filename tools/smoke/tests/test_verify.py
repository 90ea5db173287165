"""fleetpulse-verify: the staleness rules (pure) and the report against a local stack
(a migrated PostgreSQL database and moto's SQS), through the command itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from fleetpulse.common.aws import AwsConfig
from fleetpulse.smoke.verify import (
    Facts,
    LastDelivery,
    Limits,
    QueueDepth,
    TenantTelemetry,
    assess,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BIN = Path(sys.executable).parent


def facts(**changes: Any) -> Facts:
    base: dict[str, Any] = {
        "tenants": [TenantTelemetry("acme", 2, NOW - timedelta(minutes=1))],
        "queues": [QueueDepth("p-ingest", 3, 1), QueueDepth("p-ingest-dlq", 0, 0)],
        "last_delivery": LastDelivery("acme", "d1", NOW - timedelta(hours=1)),
        "any_delivery": True,
    }
    return Facts(**{**base, **changes})


def test_a_healthy_stack_has_nothing_stale() -> None:
    assert assess(facts(), NOW, Limits()) == []


def test_each_kind_of_staleness_is_named() -> None:
    stale = assess(
        facts(
            tenants=[
                TenantTelemetry("acme", 2, NOW - timedelta(minutes=16)),
                TenantTelemetry("fresh", 1, NOW - timedelta(minutes=14)),
                TenantTelemetry("silent", 3, None),
                TenantTelemetry("empty", 0, None),  # no active devices: nothing to expect
            ],
            queues=[QueueDepth("p-ingest", 1001, 0), QueueDepth("p-ingest-dlq", 0, 2)],
            last_delivery=LastDelivery("acme", "d1", NOW - timedelta(hours=25)),
        ),
        NOW,
        Limits(),
    )
    assert stale == [
        f"tenant acme: no telemetry since {(NOW - timedelta(minutes=16)).isoformat()}",
        "tenant silent: 3 active devices, no telemetry ever",
        "queue p-ingest: 1001 messages waiting (> 1000)",
        "dead-letter queue p-ingest-dlq holds 2 messages",
        f"deliveries: none succeeded since {(NOW - timedelta(hours=25)).isoformat()}",
    ]


def test_no_delivery_yet_is_not_stale_but_only_failures_are() -> None:
    assert assess(facts(last_delivery=None, any_delivery=False), NOW, Limits()) == []
    assert assess(facts(last_delivery=None, any_delivery=True), NOW, Limits()) == [
        "deliveries: none succeeded since ever"
    ]


async def seed(database_url: str) -> datetime:
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        for tenant in ("fresh", "stale"):
            await conn.execute(
                "INSERT INTO tenants (tenant_id, name, created_at, version) VALUES ($1, $1, $2, 1)",
                tenant,
                now,
            )
            await conn.execute(
                "INSERT INTO devices (tenant_id, device_id, registered_at, updated_at, version)"
                " VALUES ($1, 'd1', $2, $2, 1)",
                tenant,
                now,
            )
        for tenant, at in (
            ("fresh", now - timedelta(minutes=1)),
            ("stale", now - timedelta(hours=2)),
        ):
            await conn.execute(
                "INSERT INTO device_state (tenant_id, device_id, last_seen, last_reading_at)"
                " VALUES ($1, 'd1', $2, $2)",
                tenant,
                at,
            )
        await conn.execute(
            "INSERT INTO deliveries (tenant_id, delivery_id, alert_id, alert_event_id, integration_id,"
            " status, scheduled_at, completed_at, version) VALUES"
            " ('fresh', 'dl-1', 'a1', gen_random_uuid(), 'i1', 'succeeded', $1, $1, 1),"
            " ('fresh', 'dl-2', 'a1', gen_random_uuid(), 'i2', 'abandoned', $1, $1, 1)",
            now - timedelta(minutes=5),
        )
    finally:
        await conn.close()
    return now


async def verify_command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """fleetpulse-verify in a thread (the test's event loop keeps serving)."""
    return await asyncio.to_thread(
        subprocess.run,
        [BIN / "fleetpulse-verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_verify_reports_a_local_stack(
    database_url: str, aws_config: AwsConfig, sqs_client: Any, queue_prefix: str
) -> None:
    await seed(database_url)
    urls = {}
    for name in ("ingest", "ingest-dlq", "deliveries", "deliveries-dlq"):
        urls[name] = (await sqs_client.create_queue(QueueName=queue_prefix + name))["QueueUrl"]
    await sqs_client.send_message(QueueUrl=urls["ingest"], MessageBody="{}")
    await sqs_client.send_message(QueueUrl=urls["deliveries-dlq"], MessageBody="{}")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")},
        "FLEETPULSE_DATABASE_URL": database_url,
        "FLEETPULSE_QUEUE_PREFIX": queue_prefix,
        "FLEETPULSE_AWS_ENDPOINT_URL": str(aws_config.endpoint_url),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    result = await verify_command([], env)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "telemetry  fresh: latest" in out and "telemetry  stale: latest" in out
    assert f"queue      {queue_prefix}ingest: 1 visible" in out
    assert "delivery   last succeeded" in out and "(fresh/dl-1)" in out
    stale = [line for line in out.splitlines() if line.startswith("STALE")]
    assert len(stale) == 2, out
    assert stale[0].startswith("STALE tenant stale: no telemetry since")
    assert stale[1] == f"STALE dead-letter queue {queue_prefix}deliveries-dlq holds 1 messages"

    # Positive control: drained DLQ, generous telemetry limit -> nothing stale, exit 0.
    await sqs_client.purge_queue(QueueUrl=urls["deliveries-dlq"])
    ok = await verify_command(["--telemetry-stale", "180", "--json"], env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["stale"] == []
    assert {t["tenant_id"] for t in report["facts"]["tenants"]} == {"fresh", "stale"}


def test_verify_names_a_missing_setting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}
    result = subprocess.run(
        [BIN / "fleetpulse-verify"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "FLEETPULSE_DATABASE_URL is not set" in result.stderr
