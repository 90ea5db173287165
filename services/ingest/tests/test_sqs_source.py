"""The SQS source (AWS IoT topic rule -> ``{prefix}ingest``) against moto: same pipeline as MQTT."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import asyncpg
import orjson

from fleetpulse.common.aws import AwsConfig
from fleetpulse.common.messaging import unpack_records
from fleetpulse.ingest.bootstrap import bootstrap
from fleetpulse.ingest.settings import Settings
from fleetpulse.ingest.sqs_source import unwrap
from fleetpulse.testing.moto import receive_all

from .conftest import count, register_devices, wait_until


def iot_rule_body(topic: str, payload: bytes, received_at_ms: int) -> str:
    """What ``infra/terraform/iot.tf``'s rule sends."""
    return orjson.dumps(
        {
            "topic": topic,
            "payload_b64": base64.b64encode(payload).decode(),
            "received_at_ms": received_at_ms,
        }
    ).decode()


def test_unwrap_accepts_the_rule_shape_and_the_plain_payload_form() -> None:
    body = iot_rule_body("tenant/t/device/d/telemetry", b'{"metrics": {}}', 1_700_000_000_123)
    m = unwrap(body)
    assert (m.topic, m.payload, m.received_us, m.defect) == (
        "tenant/t/device/d/telemetry",
        b'{"metrics": {}}',
        1_700_000_000_123_000,
        None,
    )
    inline = unwrap('{"topic": "tenant/t/device/d/heartbeat", "payload": {"a": 1}}')
    assert (inline.payload, inline.received_us, inline.defect) == (b'{"a":1}', None, None)
    b64 = unwrap(orjson.dumps({"topic": "x", "payload": base64.b64encode(b"{}").decode()}).decode())
    assert b64.payload == b"{}"
    for bad in [
        "nope",
        "[1]",
        '{"payload_b64": "e30="}',
        '{"topic": "x", "payload_b64": "!!"}',
        '{"topic": "x"}',
    ]:
        m = unwrap(bad)
        assert m.defect is not None and m.topic is None, bad


async def test_sqs_messages_land_once_committed_and_bad_ones_are_quarantined(
    database_url: str,
    db_pool: asyncpg.Pool,
    aws_config: AwsConfig,
    queue_prefix: str,
    sqs_client: Any,
    tenant: str,
) -> None:
    await register_devices(db_pool, tenant, ["d1"])
    ingest_url = (await sqs_client.create_queue(QueueName=f"{queue_prefix}ingest"))["QueueUrl"]
    evaluator_url = (await sqs_client.create_queue(QueueName=f"{queue_prefix}evaluator"))[
        "QueueUrl"
    ]
    now_ms = int(time.time() * 1000)
    topic = f"tenant/{tenant}/device/d1/telemetry"
    bodies = [
        iot_rule_body(topic, b'{"ts": %d, "seq": 7, "metrics": {"temp_c": 21.5}}' % now_ms, now_ms),
        iot_rule_body(topic, b'{"metrics": {"temp_c": 22.5}}', now_ms - 5),  # ts from the rule
        orjson.dumps(
            {"topic": topic, "payload": {"ts": now_ms - 9, "metrics": {"rpm": 3}}}
        ).decode(),
        "this is not what the rule sends",
    ]
    for body in bodies:
        await sqs_client.send_message(QueueUrl=ingest_url, MessageBody=body)
    settings = Settings.model_validate(
        {
            "database_url": database_url,
            "sources": "sqs",
            "aws_endpoint_url": aws_config.endpoint_url,
            "queue_prefix": queue_prefix,
            "forward_to_evaluator": True,
            "health_port": 0,
            "batch_max_ms": 50,
            "sqs_wait_s": 1,
            "mqtt_client_id": f"ingest-{uuid.uuid4().hex[:8]}",
        }
    )
    stop = asyncio.Event()
    async with bootstrap(settings) as ingest:
        await ingest.store.ensure_partitions()
        # Hold the commit: received messages must stay in the queue (in flight) meanwhile.
        locker = await asyncpg.connect(database_url)
        locking = locker.transaction()
        await locking.start()
        await locker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
        task = asyncio.create_task(ingest.run(stop))
        try:
            await wait_until(lambda: _in_flight(sqs_client, ingest_url, len(bodies)), timeout=10)
            await asyncio.sleep(0.5)
            assert await _visible_and_in_flight(sqs_client, ingest_url) == (0, len(bodies))
            assert ingest.metrics.stats.received == 0
            await locking.rollback()
            await locker.close()
            await wait_until(lambda: _true(ingest.metrics.stats.received == len(bodies)))
            await wait_until(lambda: _queue_empty(sqs_client, ingest_url), timeout=10)
        finally:
            stop.set()
            if not locker.is_closed():
                await locker.close()
            await asyncio.wait_for(task, 30)
    rows = await db_pool.fetch(
        "SELECT (extract(epoch FROM time) * 1000)::bigint AS ms, seq, metrics FROM telemetry "
        "WHERE tenant_id = $1 ORDER BY time",
        tenant,
    )
    assert [(r["ms"], r["seq"], r["metrics"]) for r in rows] == [
        (now_ms - 9, None, {"rpm": 3}),
        (now_ms - 5, None, {"temp_c": 22.5}),
        (now_ms, 7, {"temp_c": 21.5}),
    ]
    quarantined = await db_pool.fetch("SELECT topic, reason, detail, payload FROM quarantine")
    assert [(q["topic"], q["reason"]) for q in quarantined] == [
        (f"sqs:{queue_prefix}ingest", "BAD_JSON")
    ]
    assert "not JSON" in quarantined[0]["detail"]
    assert bytes(quarantined[0]["payload"]) == b"this is not what the rule sends"
    forwarded = [
        record
        for message in await receive_all(sqs_client, evaluator_url, timeout_s=5, quiet_s=1)
        for record in unpack_records(message["Body"])
    ]
    assert sorted(orjson.dumps(r["metrics"]) for r in forwarded) == [
        b'{"rpm":3.0}',
        b'{"temp_c":21.5}',
        b'{"temp_c":22.5}',
    ]
    assert {r["tenant_id"] for r in forwarded} == {tenant}
    assert await count(db_pool, "SELECT count(*) FROM quarantine") == 1


async def _visible_and_in_flight(sqs: Any, url: str) -> tuple[int, int]:
    attributes = (
        await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


async def _in_flight(sqs: Any, url: str, expected: int) -> bool:
    return (await _visible_and_in_flight(sqs, url))[1] == expected


async def _queue_empty(sqs: Any, url: str) -> bool:
    return await _visible_and_in_flight(sqs, url) == (0, 0)


async def _true(value: bool) -> bool:
    return value
