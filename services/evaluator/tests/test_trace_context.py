"""``fleetpulse-evaluator`` as a real process on SQS (moto) and PostgreSQL keeps each message's
trace (issue 14, section 4): records of several SQS messages evaluated in one transaction open
alerts whose ``AlertOpened`` metadata carries the ``traceparent`` of the message that caused
them, and an alert the clock opens (an elapsed ``duration_s``) starts a trace of its own at an
``evaluator.clock`` span, which the spans file shows."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fleetpulse.common.messaging import SqsBatchPublisher, declare_platform
from fleetpulse.testing.ports import free_port, wait_for_port

pytestmark = pytest.mark.slow
T = "acme"
SCRIPT = str(Path(sys.executable).parent / "fleetpulse-evaluator")
TRACE_A = "00-" + "a" * 32 + "-" + "1" * 16 + "-01"
TRACE_B = "00-" + "b" * 32 + "-" + "2" * 16 + "-01"


@pytest.fixture
def evaluator(
    database_url: str, moto_server: str, queue_prefix: str, tmp_path: Path
) -> Iterator[tuple[Path, Any]]:
    spans = tmp_path / "spans.jsonl"
    port = free_port()
    env = {
        **os.environ,
        "FLEETPULSE_DATABASE_URL": database_url,
        "FLEETPULSE_AWS_ENDPOINT_URL": moto_server,
        "FLEETPULSE_QUEUE_PREFIX": queue_prefix,
        "FLEETPULSE_AUTO_CREATE": "true",
        "FLEETPULSE_TICK_INTERVAL_S": "0.5",
        "FLEETPULSE_DURATION_GRACE_S": "0",
        "FLEETPULSE_CATALOG_REFRESH_S": "0.5",
        "FLEETPULSE_BATCH_LINGER_MS": "500",  # both messages in one transaction
        "FLEETPULSE_OUTBOX_RELAY": "false",
        "FLEETPULSE_TRACES_FILE": str(spans),
        "FLEETPULSE_HEALTH_PORT": str(port),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }

    def start() -> subprocess.Popen[bytes]:
        log = (tmp_path / "evaluator.log").open("wb")
        process = subprocess.Popen([SCRIPT], env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(port, timeout=30)
        return process

    holder: dict[str, subprocess.Popen[bytes]] = {}
    try:
        yield spans, lambda: holder.setdefault("p", start())
    finally:
        process = holder.get("p")
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


async def _setup(pool: asyncpg.Pool, devices: list[str]) -> None:
    now = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO devices (tenant_id, device_id, tags, registered_at, updated_at, version) "
        "VALUES ($1, $2, '{}', $3, $3, 1)",
        [(T, d, now) for d in devices],
    )
    for rule_id, definition in (
        ("hot", {"metric": "temp_c", "operator": "gt", "threshold": 80}),
        ("slow", {"metric": "load", "operator": "gt", "threshold": 1, "duration_s": 1}),
    ):
        await pool.execute(
            "INSERT INTO rules (tenant_id, rule_id, name, kind, severity, definition, "
            "created_at, updated_at, version) VALUES ($1, $2, $2, 'threshold', 'major', $3, "
            "$4, $4, 1)",
            T,
            rule_id,
            definition,
            now,
        )


def _record(device: str, **metrics: Any) -> dict[str, Any]:
    ts = datetime.now(UTC).isoformat()
    return {"type": "reading", "tenant_id": T, "device_id": device, "ts": ts, "seq": None,
            "metrics": metrics}  # fmt: skip


async def _opened(pool: asyncpg.Pool, count: int, timeout_s: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    rows: list[Any] = []
    while time.monotonic() < deadline:
        rows = await pool.fetch(
            "SELECT data, metadata FROM events WHERE type = 'AlertOpened' ORDER BY position"
        )
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(rows)} AlertOpened, wanted {count}")


async def test_each_alert_keeps_the_trace_of_its_message_and_the_clock_starts_one(
    db_pool: asyncpg.Pool,
    evaluator: tuple[Path, Any],
    sqs_client: Any,
    sns_client: Any,
    queue_prefix: str,
) -> None:
    spans_file, start = evaluator
    await _setup(db_pool, ["d1", "d2", "d3"])
    resources = await declare_platform(sqs_client, sns_client, queue_prefix)
    publisher = SqsBatchPublisher(sqs_client, resources.evaluator.url)
    await publisher.publish([_record("d1", temp_c=90)], {"traceparent": TRACE_A})
    await publisher.publish([_record("d2", temp_c=95)], {"traceparent": TRACE_B})
    await publisher.publish([_record("d3", load=5)], {"traceparent": TRACE_A})
    start()
    rows = await _opened(db_pool, 3)
    by_device = {(r["data"]["device_id"], r["data"]["rule_id"]): r["metadata"] for r in rows}
    assert by_device[("d1", "hot")]["traceparent"].split("-")[1] == "a" * 32
    assert by_device[("d2", "hot")]["traceparent"].split("-")[1] == "b" * 32
    # opened by the clock a second later: its own trace, started at the evaluator's clock span
    clock = by_device[("d3", "slow")]["traceparent"].split("-")[1]
    assert clock not in ("a" * 32, "b" * 32)
    deadline = time.monotonic() + 15
    names: set[str] = set()
    while time.monotonic() < deadline and "evaluator.clock duration" not in names:
        await asyncio.sleep(0.5)
        if spans_file.exists():
            spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
            names = {s["name"] for s in spans if s["context"]["trace_id"][2:] == clock}
    assert "evaluator.clock duration" in names, names
