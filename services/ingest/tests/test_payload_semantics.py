"""Issue 12, items 1-7: what a payload means, end to end on real parts.

A device with its own broker credentials (allowed to publish only under its own prefix)
publishes at QoS 1 to the private Mosquitto; ingest runs in-process against a fresh PostgreSQL
database (and moto's SQS for the evaluator feed). Each test names the fault KIND it guards.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import orjson
import pytest

from fleetpulse.common.aws import AwsConfig
from fleetpulse.common.messaging import unpack_records
from fleetpulse.common.mqtt import MqttEndpoint, aiomqtt_client
from fleetpulse.testing.mosquitto import Acl, MosquittoBroker, unique_username
from fleetpulse.testing.moto import receive_all

from .conftest import count, ingest_settings, register_devices, running_ingest, wait_until


class Device:
    """A device's MQTT identity: publishes (QoS 1) only under ``tenant/{t}/device/{d}/``."""

    def __init__(self, broker: MosquittoBroker, tenant: str, device: str) -> None:
        self.prefix = f"tenant/{tenant}/device/{device}/"
        user = unique_username(device)
        broker.add_client(user, "pw", [Acl("publishClientSend", self.prefix + "#")])
        self.url = broker.url_for(user, "pw")

    async def publish(self, *messages: tuple[str, bytes], retain: bool = False) -> None:
        async with aiomqtt_client(MqttEndpoint.parse(self.url)) as client:
            for suffix, payload in messages:
                await client.publish(self.prefix + suffix, payload, qos=1, retain=retain)


@pytest.fixture
async def device(mosquitto: MosquittoBroker, db_pool: asyncpg.Pool, tenant: str) -> Device:
    await register_devices(db_pool, tenant, ["d1"])
    return Device(mosquitto, tenant, "d1")


def now_ms() -> int:
    return int(time.time() * 1000)


async def received(ingest: Any, n: int) -> None:
    stats = ingest.metrics.stats
    await wait_until(lambda: _true(stats.received >= n))  # retained re-sends included


def _retained(ingest: Any) -> int:
    return int(getattr(ingest.metrics.stats, "retained", 0))  # (absent before issue 12)


async def _true(value: bool) -> bool:
    return value


async def test_metric_named_readings_is_one_reading(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, device: Device, tenant: str
) -> None:
    """Kind: BATCH FORM GUESSED FROM BYTES (item 1)."""
    payloads = [
        b'{"ts": %d, "metrics": {"readings": 5}}' % now_ms(),
        b'{"ts": %d, "metrics": {"re\\u0061dings": 6}}' % (now_ms() + 1),
        b'{"re\\u0061dings": [{"ts": %d, "metrics": {"readings": 7}}]}' % (now_ms() + 2),
    ]
    async with running_ingest(ingest_settings(database_url, mqtt_url)) as ingest:
        await device.publish(*(("telemetry", p) for p in payloads))
        await received(ingest, 3)
    rows = await db_pool.fetch(
        "SELECT metrics FROM telemetry WHERE tenant_id=$1 ORDER BY time", tenant
    )
    assert [r["metrics"] for r in rows] == [{"readings": 5}, {"readings": 6}, {"readings": 7}]
    assert await count(db_pool, "SELECT count(*) FROM quarantine") == 0


async def test_payload_without_metrics_is_quarantined_not_half_stored(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, device: Device, tenant: str
) -> None:
    """Kind: PAYLOAD HALF STORED (item 2): values vanish into an empty row."""
    foreign = [
        b'{"temp_c": 21.5}',
        b'{"ts": %d, "values": {"temp_c": 21.5}}' % now_ms(),
        b'{"metrics": {}}',
        b'{"metrics": {"a": 1}, "temp_c": 21.5}',
        b'{"metrics": {"a": {"nested": 1}}}',
        b'{"readings": [{"ts": %d}]}' % now_ms(),
    ]
    control = b'{"metrics": {"a": 1}}'
    async with running_ingest(ingest_settings(database_url, mqtt_url)) as ingest:
        await device.publish(*(("telemetry", p) for p in [*foreign, control]))
        await received(ingest, len(foreign) + 1)
    assert [r["metrics"] for r in await db_pool.fetch("SELECT metrics FROM telemetry")] == [
        {"a": 1}
    ]
    rows = await db_pool.fetch(
        "SELECT reason, tenant_id, device_id, detail, payload FROM quarantine ORDER BY id"
    )
    assert {(r["reason"], r["tenant_id"], r["device_id"]) for r in rows} == {
        ("SCHEMA_INVALID", tenant, "d1")
    }
    assert sorted(bytes(r["payload"]) for r in rows) == sorted(foreign)
    flat = next(r for r in rows if bytes(r["payload"]) == foreign[0])
    assert "temp_c" in flat["detail"]  # the reason names the refused field


async def test_same_time_first_stored_wins_everywhere(
    database_url: str,
    db_pool: asyncpg.Pool,
    mqtt_url: str,
    device: Device,
    tenant: str,
    aws_config: AwsConfig,
    queue_prefix: str,
    sqs_client: Any,
) -> None:
    """Kind: SAME-TIME CLASH DISAGREES (item 3). History, the latest state and what the
    evaluator is sent agree: the first stored reading at a time wins, the rest are counted
    duplicates, within one batch and across messages."""
    evaluator_url = (await sqs_client.create_queue(QueueName=f"{queue_prefix}evaluator"))[
        "QueueUrl"
    ]
    t1, t2 = now_ms() - 2000, now_ms() - 1000
    in_one_batch = b'{"readings": [{"ts": %d, "metrics": {"temp_c": 10}}, ' % t1
    in_one_batch += b'{"ts": %d, "metrics": {"temp_c": 99}}]}' % t1
    first = b'{"ts": %d, "metrics": {"temp_c": 20}}' % t2
    later = b'{"ts": %d, "metrics": {"temp_c": 98, "rpm": 5}}' % t2
    settings = ingest_settings(
        database_url,
        mqtt_url,
        forward_to_evaluator=True,
        aws_endpoint_url=aws_config.endpoint_url,
        queue_prefix=queue_prefix,
    )
    async with running_ingest(settings) as ingest:
        await device.publish(("telemetry", in_one_batch), ("telemetry", first))
        await received(ingest, 2)
        await device.publish(("telemetry", later))
        await received(ingest, 3)
        assert ingest.metrics.stats.duplicates == 2
    history = await db_pool.fetch(
        "SELECT (extract(epoch FROM time) * 1000)::bigint AS ms, metrics FROM telemetry "
        "WHERE tenant_id = $1 ORDER BY time",
        tenant,
    )
    assert [(r["ms"], r["metrics"]) for r in history] == [
        (t1, {"temp_c": 10}),
        (t2, {"temp_c": 20}),
    ]
    state = await db_pool.fetchrow(
        "SELECT (extract(epoch FROM last_reading_at) * 1000)::bigint AS ms, metrics "
        "FROM device_state WHERE tenant_id = $1 AND device_id = 'd1'",
        tenant,
    )
    assert (state["ms"], state["metrics"]) == (t2, {"temp_c": 20})
    assert await count(db_pool, "SELECT sum(duplicates) FROM ingest_duplicate_counts") == 2
    forwarded = [
        record
        for message in await receive_all(sqs_client, evaluator_url, timeout_s=5, quiet_s=1)
        for record in unpack_records(message["Body"])
    ]
    assert sorted((r["ts"], orjson.dumps(r["metrics"])) for r in forwarded) == sorted(
        [(_iso(t1), b'{"temp_c":10.0}'), (_iso(t2), b'{"temp_c":20.0}')]
    )


def _iso(ms: int) -> str:
    from fleetpulse.ingest.domain import iso_from_us

    return iso_from_us(ms * 1000)


async def test_retained_message_resent_on_resubscribe_is_not_stored_again(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, device: Device, tenant: str
) -> None:
    """Kind: RETAINED MESSAGE RE-INGESTED (item 4). A retained publish received live (RETAIN 0)
    is stored once; the broker re-sends it (RETAIN 1) on every re-subscription: counted, not
    stored, though it carries no ``ts`` (a new receive time would make it look new)."""
    settings = ingest_settings(
        database_url,
        mqtt_url,
        mqtt_share_group="",  # a plain subscription: the broker sends it retained messages
        mqtt_connections=1,
        mqtt_client_id=f"ingest-{uuid.uuid4().hex[:8]}",
    )
    resent: list[int] = []
    try:
        async with running_ingest(settings) as ingest:
            await device.publish(("telemetry", b'{"metrics": {"kept": 1}}'), retain=True)
            await received(ingest, 1)
            resent.append(_retained(ingest))  # positive control: live, so stored
        for _ in range(2):  # restart = reconnect + re-subscribe: the broker re-sends it
            async with running_ingest(settings) as ingest:
                await received(ingest, 1)  # the re-sent retained message
                await device.publish(("telemetry", b'{"metrics": {"live": 1}}'))
                await received(ingest, 2)
                resent.append(_retained(ingest))
    finally:  # the broker is shared by the session's tests: clear the retained message
        await device.publish(("telemetry", b""), retain=True)
    rows = await db_pool.fetch("SELECT metrics FROM telemetry WHERE tenant_id = $1", tenant)
    assert sorted(orjson.dumps(r["metrics"]) for r in rows) == [
        b'{"kept":1.0}',
        b'{"live":1.0}',
        b'{"live":1.0}',
    ]
    assert resent == [0, 1, 1]  # counted each time it was re-sent
    assert await count(db_pool, "SELECT sum(duplicates) FROM ingest_duplicate_counts") == 2


async def test_retained_publish_while_ingest_is_away_is_stored_once(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, device: Device, tenant: str
) -> None:
    """Kind: RETAINED MESSAGE RE-INGESTED (item 4). Published while ingest's persistent session
    is offline, the broker both queues it for the session (RETAIN 0) and, on the re-subscribe,
    sends the retained copy (RETAIN 1): stored once, the copy counted."""
    settings = ingest_settings(
        database_url,
        mqtt_url,
        mqtt_share_group="",
        mqtt_connections=1,
        mqtt_client_id=f"ingest-{uuid.uuid4().hex[:8]}",
    )
    try:
        async with running_ingest(settings):
            pass  # creates the persistent session and its subscription
        await device.publish(("telemetry", b'{"metrics": {"away": 1}}'), retain=True)
        async with running_ingest(settings) as ingest:
            await received(ingest, 2)
            await device.publish(("telemetry", b'{"metrics": {"live": 1}}'))  # control
            await received(ingest, 3)
            retained = _retained(ingest)
    finally:
        await device.publish(("telemetry", b""), retain=True)
    rows = await db_pool.fetch("SELECT metrics FROM telemetry WHERE tenant_id = $1", tenant)
    assert sorted(orjson.dumps(r["metrics"]) for r in rows) == [b'{"away":1.0}', b'{"live":1.0}']
    assert retained == 1


async def test_wrong_topic_under_device_prefix_is_the_tenants_to_see(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, device: Device, tenant: str
) -> None:
    """Kind: BAD_TOPIC UNATTRIBUTED (item 5): the tenant's quarantine query
    (``GET /api/v1/quarantine`` filters on tenant_id) must find it."""
    async with running_ingest(ingest_settings(database_url, mqtt_url)) as ingest:
        await device.publish(
            ("firmware", b'{"metrics": {"a": 1}}'),
            ("telemetry/extra", b'{"metrics": {"a": 1}}'),
            ("telemetry", b'{"metrics": {"a": 1}}'),  # positive control
        )
        await received(ingest, 3)
    rows = await db_pool.fetch(
        "SELECT topic, reason, device_id FROM quarantine WHERE tenant_id = $1 ORDER BY id", tenant
    )
    assert [(r["reason"], r["device_id"]) for r in rows] == [("BAD_TOPIC", "d1")] * 2
    assert (
        await count(db_pool, "SELECT count(*) FROM quarantine WHERE tenant_id <> $1", tenant) == 0
    )
    assert await count(db_pool, "SELECT count(*) FROM telemetry WHERE tenant_id = $1", tenant) == 1


async def test_values_that_overflow_aggregates_are_quarantined(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, device: Device, tenant: str
) -> None:
    """Kind: VALUE OVERFLOWS STORAGE OR QUERIES (item 6, ingest's side)."""
    hour = now_ms() // 3_600_000 * 3_600_000
    big = [
        b'{"ts": %d, "metrics": {"big": %s}}' % (hour + i, v)
        for i, v in enumerate([b"1e308", b"1e308", b"-1e308", b"1.5e200"])
    ]
    fine = b'{"ts": %d, "metrics": {"big": 1e100}}' % (hour + 10)
    async with running_ingest(ingest_settings(database_url, mqtt_url)) as ingest:
        await device.publish(*(("telemetry", p) for p in [*big, fine]))
        await received(ingest, len(big) + 1)
    assert await count(db_pool, "SELECT count(*) FROM telemetry") == 1
    assert await count(
        db_pool,
        "SELECT count(*) FROM quarantine WHERE reason = 'SCHEMA_INVALID' AND tenant_id = $1",
        tenant,
    ) == len(big)
    # what is stored aggregates without overflow, even summed many times over
    total = await db_pool.fetchval(
        "SELECT sum((metrics->>'big')::float8) * 1e6 FROM telemetry, generate_series(1, 1000)"
    )
    assert total == pytest.approx(1e109)


async def test_a_row_postgres_refuses_is_isolated_and_ingest_goes_on(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, device: Device, tenant: str
) -> None:
    """Kind: PERMANENT DB ERROR RETRIED FOREVER (item 7). A CHECK constraint refuses one
    reading of a batch of good ones: the good ones are stored, the bad message quarantined
    STORAGE_REJECTED, and acknowledgements go on (the broker does not redeliver)."""
    await db_pool.execute(
        "ALTER TABLE telemetry_readings ADD CONSTRAINT no_poison "
        "CHECK (NOT -666 = ANY (metric_values))"
    )
    base = now_ms() - 10_000
    good = [b'{"ts": %d, "metrics": {"a": %d}}' % (base + i, i) for i in range(30)]
    poison = b'{"ts": %d, "metrics": {"poison": -666}}' % (base + 100)
    messages = [*good[:17], poison, *good[17:]]
    settings = ingest_settings(database_url, mqtt_url, batch_max_ms=500, mqtt_connections=1)
    async with running_ingest(settings) as ingest:
        await device.publish(*(("telemetry", p) for p in messages))
        await received(ingest, len(messages))
        await device.publish(("telemetry", b'{"metrics": {"after": 1}}'))
        await received(ingest, len(messages) + 1)
        assert ingest.metrics.stats.write_errors >= 1
    assert await count(db_pool, "SELECT count(*) FROM telemetry") == 31
    rows = await db_pool.fetch(
        "SELECT reason, tenant_id, device_id, detail, payload FROM quarantine"
    )
    assert [(r["reason"], r["tenant_id"], r["device_id"], bytes(r["payload"])) for r in rows] == [
        ("STORAGE_REJECTED", tenant, "d1", poison)
    ]
    assert "23514" in rows[0]["detail"]  # check_violation, named for the tenant
    # acknowledged: a new session of the same client gets nothing redelivered
    assert await count(db_pool, "SELECT sum(stored) FROM quarantine_counts") == 1


async def test_a_failure_that_is_not_the_datas_fault_drops_nothing(
    database_url: str, db_pool: asyncpg.Pool, mqtt_url: str, device: Device, tenant: str
) -> None:
    """Item 7, the other side: a permanent failure the same for every row (here an undefined
    table, as after a botched deploy) is not the data's fault: nothing is quarantined or
    acknowledged meanwhile, and everything is stored once the database is fixed."""
    messages = [b'{"ts": %d, "metrics": {"a": %d}}' % (now_ms() - i, i) for i in range(10)]
    async with running_ingest(ingest_settings(database_url, mqtt_url)) as ingest:
        await db_pool.execute("ALTER TABLE device_state RENAME TO device_state_away")
        try:
            await device.publish(*(("telemetry", p) for p in messages))
            await wait_until(lambda: _true(ingest.metrics.stats.write_errors >= 2))
            assert ingest.metrics.stats.received == 0  # nothing acknowledged
        finally:
            await db_pool.execute("ALTER TABLE device_state_away RENAME TO device_state")
        await received(ingest, len(messages))
    assert await count(db_pool, "SELECT count(*) FROM telemetry") == len(messages)
    assert await count(db_pool, "SELECT count(*) FROM quarantine") == 0
