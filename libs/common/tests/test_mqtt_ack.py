"""Ack after commit: which MQTT client lets a consumer acknowledge QoS 1 only after its work?

zmqtt (``acking_client``, ``auto_ack=False``): what was not acknowledged is redelivered when the
persistent session reconnects, what was acknowledged is not. aiomqtt acknowledges on receipt:
a message the application never processed is gone after a reconnect. Ingest consumes
with :class:`fleetpulse.common.mqtt_subscriber.MqttSubscriber`, proven below the same way
(plus: stale acks after a reconnect, pause/resume when the consumer is full).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import zmqtt

from fleetpulse.common.mqtt import MqttEndpoint, aiomqtt_client, shared_subscription
from fleetpulse.common.mqtt_subscriber import MqttSubscriber, SubscriberError
from fleetpulse.testing.mosquitto import MosquittoBroker, unique_username
from fleetpulse.testing.mqtt import acking_client

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


# --- fleetpulse.common.mqtt_subscriber: the client ingest consumes with --------------------------


class _Collector:
    """A deliver callback that accepts up to ``room`` messages, then reports full."""

    def __init__(self, room: int = 1_000_000) -> None:
        self.messages: list[tuple[str, bytes, int | None]] = []
        self.room = room
        self.arrived = asyncio.Event()

    def __call__(self, topic: str, payload: bytes, token: int | None) -> bool:
        if len(self.messages) >= self.room:
            return False
        self.messages.append((topic, payload, token))
        self.arrived.set()
        return True

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async def enough() -> None:
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)


async def _subscriber_session(
    endpoint: MqttEndpoint, client_id: str, topic: str, count: int, ack: int
) -> list[bytes]:
    """Like ``_zmqtt_session`` with :class:`MqttSubscriber`: receive, ack the first ``ack``."""
    collector = _Collector()
    stop = asyncio.Event()
    subscriber = MqttSubscriber(
        endpoint, client_id=client_id, topic_filter=topic, deliver=collector
    )
    runner = asyncio.create_task(subscriber.run(stop))
    try:
        await asyncio.wait_for(subscriber.subscribed.wait(), 5)
        if count:
            await collector.wait_for(count)
            tokens = [m[2] for m in collector.messages[:ack]]
            assert subscriber.ack(tokens) == ack  # all PUBACKs in one write
        else:
            await asyncio.sleep(1.0)
            assert not collector.messages, "a message was redelivered after its ack"
        await asyncio.sleep(0.2)  # let the broker process the PUBACKs before we go
    finally:
        stop.set()
        await runner
        await subscriber.disconnect()
    return [m[1] for m in collector.messages]


async def _subscriber_ack_after_commit(broker: MosquittoBroker, topic: str) -> None:
    endpoint = _endpoint(broker)
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    await _subscriber_session(endpoint, client_id, topic, 0, 0)  # create the persistent session
    sent = [f"m{i}".encode() for i in range(5)]
    await _publish(endpoint, sent)

    first = await _subscriber_session(endpoint, client_id, topic, 5, ack=2)
    assert first == sent
    redelivered = await _subscriber_session(endpoint, client_id, topic, 3, ack=3)
    assert redelivered == sent[2:]
    await _subscriber_session(endpoint, client_id, topic, 0, 0)  # acked: nothing comes back


async def test_subscriber_redelivers_only_unacknowledged(mosquitto: MosquittoBroker) -> None:
    await _subscriber_ack_after_commit(mosquitto, FILTER)


async def test_subscriber_redelivers_unacknowledged_on_a_shared_subscription(
    mosquitto: MosquittoBroker,
) -> None:
    await _subscriber_ack_after_commit(
        mosquitto, shared_subscription(f"g{uuid.uuid4().hex[:6]}", FILTER)
    )


async def test_subscriber_ignores_acks_from_a_previous_connection(
    mosquitto: MosquittoBroker,
) -> None:
    """Tokens carry the connection epoch: after a reconnect an old token acks nothing; the
    broker redelivered the message on the new connection, and its new token acks it."""
    endpoint = _endpoint(mosquitto)
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    collector = _Collector()
    stop = asyncio.Event()
    subscriber = MqttSubscriber(
        endpoint, client_id=client_id, topic_filter=FILTER, deliver=collector
    )
    runner = asyncio.create_task(subscriber.run(stop))
    try:
        await asyncio.wait_for(subscriber.subscribed.wait(), 5)
        await _publish(endpoint, [b"once"])
        await collector.wait_for(1)
        old_token = collector.messages[0][2]
        assert subscriber._protocol is not None and subscriber._protocol.transport is not None
        subscriber._protocol.transport.abort()  # connection lost before the commit
        await collector.wait_for(2, timeout=10)  # redelivered after the reconnect
        assert collector.messages[1][1] == b"once"
        assert subscriber.ack([old_token]) == 0
        assert subscriber.ack([collector.messages[1][2]]) == 1
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await runner
        await subscriber.disconnect()
    assert await _subscriber_session(endpoint, client_id, FILTER, 0, 0) == []


async def test_subscriber_pauses_when_full_and_resumes(mosquitto: MosquittoBroker) -> None:
    endpoint = _endpoint(mosquitto)
    collector = _Collector(room=3)
    stop = asyncio.Event()
    subscriber = MqttSubscriber(
        endpoint,
        client_id=f"ingest-{uuid.uuid4().hex[:8]}",
        topic_filter=FILTER,
        deliver=collector,
    )
    runner = asyncio.create_task(subscriber.run(stop))
    try:
        await asyncio.wait_for(subscriber.subscribed.wait(), 5)
        sent = [f"m{i}".encode() for i in range(10)]
        await _publish(endpoint, sent)
        await collector.wait_for(3)
        await asyncio.sleep(0.3)
        assert len(collector.messages) == 3  # full: held, not dropped
        collector.room = 100
        subscriber.resume()
        await collector.wait_for(10)
        assert [m[1] for m in collector.messages] == sent
        assert subscriber.ack([m[2] for m in collector.messages]) == 10
    finally:
        stop.set()
        await runner
        await subscriber.disconnect()


async def test_subscriber_refused_credentials_fail_loudly(mosquitto: MosquittoBroker) -> None:
    endpoint = MqttEndpoint.parse(mosquitto.url_for("nobody", "wrong"))
    subscriber = MqttSubscriber(endpoint, client_id="x", topic_filter=FILTER, deliver=_Collector())
    with pytest.raises(SubscriberError, match="CONNACK refused"):
        await asyncio.wait_for(subscriber.run(asyncio.Event()), 10)
