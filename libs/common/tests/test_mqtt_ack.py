"""Ack after commit: which MQTT client lets a consumer acknowledge QoS 1 only after its work?

zmqtt (``acking_client``, ``auto_ack=False``): what was not acknowledged is redelivered when the
persistent session reconnects, what was acknowledged is not. aiomqtt acknowledges on receipt:
a message the application never processed is gone after a reconnect. Ingest therefore consumes
with zmqtt.
"""

from __future__ import annotations

import asyncio
import uuid

import zmqtt

from fleetpulse.common.mqtt import MqttEndpoint, acking_client, aiomqtt_client, shared_subscription
from fleetpulse.testing.mosquitto import MosquittoBroker, unique_username

FILTER = "tenant/+/device/+/+"


def _endpoint(broker: MosquittoBroker) -> MqttEndpoint:
    user = unique_username("svc")
    broker.add_service_client(user, "pw")
    return MqttEndpoint.parse(broker.url_for(user, "pw"))


async def _publish(endpoint: MqttEndpoint, payloads: list[bytes]) -> None:
    async with aiomqtt_client(endpoint) as client:
        for payload in payloads:
            await client.publish("tenant/t1/device/d1/telemetry", payload, qos=1)


async def _receive(
    sub: zmqtt.Subscription, count: int, timeout: float = 5.0
) -> list[zmqtt.Message]:
    return [await asyncio.wait_for(sub.get_message(), timeout) for _ in range(count)]


async def _receive_nothing(sub: zmqtt.Subscription, wait: float = 1.0) -> bool:
    try:
        await asyncio.wait_for(sub.get_message(), wait)
    except TimeoutError:
        return True
    return False


async def _zmqtt_session(
    endpoint: MqttEndpoint, client_id: str, topic: str, count: int, ack: int
) -> list[bytes]:
    """Receive ``count`` messages without auto-ack, acknowledge the first ``ack``, disconnect."""
    async with (
        acking_client(endpoint, client_id=client_id) as client,
        client.subscribe(topic, qos=zmqtt.QoS.AT_LEAST_ONCE, auto_ack=False) as sub,
    ):
        messages = await _receive(sub, count) if count else []
        for message in messages[:ack]:
            await message.ack()
        if count == 0:
            assert await _receive_nothing(sub), "a message was redelivered after its ack"
        await sub.detach()  # keep the broker-side subscription, like a killed process
    return [m.payload for m in messages]


async def _ack_after_commit(broker: MosquittoBroker, topic: str) -> None:
    endpoint = _endpoint(broker)
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    await _zmqtt_session(endpoint, client_id, topic, 0, 0)  # create the persistent session
    sent = [f"m{i}".encode() for i in range(5)]
    await _publish(endpoint, sent)

    first = await _zmqtt_session(endpoint, client_id, topic, 5, ack=2)
    assert first == sent
    redelivered = await _zmqtt_session(endpoint, client_id, topic, 3, ack=3)
    assert redelivered == sent[2:]
    await _zmqtt_session(endpoint, client_id, topic, 0, 0)  # acked: nothing comes back


async def test_zmqtt_redelivers_only_unacknowledged(mosquitto: MosquittoBroker) -> None:
    await _ack_after_commit(mosquitto, FILTER)


async def test_zmqtt_redelivers_unacknowledged_on_a_shared_subscription(
    mosquitto: MosquittoBroker,
) -> None:
    await _ack_after_commit(mosquitto, shared_subscription(f"g{uuid.uuid4().hex[:6]}", FILTER))


async def test_aiomqtt_acknowledges_on_receipt(mosquitto: MosquittoBroker) -> None:
    endpoint = _endpoint(mosquitto)
    identifier = f"plain-{uuid.uuid4().hex[:8]}"
    async with aiomqtt_client(endpoint, identifier=identifier, clean_session=False) as client:
        await client.subscribe(FILTER, qos=1)
    await _publish(endpoint, [b"unprocessed"])
    async with aiomqtt_client(endpoint, identifier=identifier, clean_session=False) as client:
        message = await asyncio.wait_for(anext(aiter(client.messages)), 5)
        assert message.payload == b"unprocessed"  # received, never "committed"
    async with aiomqtt_client(endpoint, identifier=identifier, clean_session=False) as client:
        try:
            await asyncio.wait_for(anext(aiter(client.messages)), 1.0)
            redelivered = True
        except TimeoutError:
            redelivered = False
    assert not redelivered, "aiomqtt now acks manually: revisit the ingest client choice"
