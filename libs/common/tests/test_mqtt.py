"""fleetpulse.common.mqtt against the private broker, and the broker fixture itself."""

from __future__ import annotations

import asyncio
import uuid

import aiomqtt
import pytest
from pydantic import SecretStr

from fleetpulse.common.mqtt import (
    Backoff,
    MqttEndpoint,
    aiomqtt_client,
    run_with_reconnect,
    shared_subscription,
)
from fleetpulse.testing.mosquitto import Acl, DynsecError, MosquittoBroker, unique_username


def test_parse_plain_url() -> None:
    endpoint = MqttEndpoint.parse("mqtt://ingest:s%40cret@broker.local:1884")
    assert (endpoint.host, endpoint.port, endpoint.username, endpoint.tls) == (
        "broker.local",
        1884,
        "ingest",
        False,
    )
    assert endpoint.password_value == "s@cret"
    assert endpoint.ssl_context() is None


def test_parse_tls_url_defaults_port_8883() -> None:
    endpoint = MqttEndpoint.parse(SecretStr("mqtts://u:p@broker.example.com"))
    assert endpoint.port == 8883
    assert endpoint.tls
    assert endpoint.ssl_context() is not None


def test_secret_never_in_repr_or_str() -> None:
    endpoint = MqttEndpoint.parse("mqtt://user:hunter2@h:1")
    assert "hunter2" not in repr(endpoint)
    assert "hunter2" not in str(endpoint)
    assert str(endpoint) == "mqtt://user:***@h:1"


@pytest.mark.parametrize("url", ["http://h:1", "mqtt://", "mqtt://h:notaport", "h:1883"])
def test_parse_rejects_malformed(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - message varies by cause
        MqttEndpoint.parse(url)


def test_shared_subscription() -> None:
    assert (
        shared_subscription("ingest", "tenant/+/device/+/+") == "$share/ingest/tenant/+/device/+/+"
    )
    for group in ("a/b", "+", "#", ""):
        with pytest.raises(ValueError, match="share group"):
            shared_subscription(group, "x")


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    delays = [backoff.next() for _ in range(6)]
    assert 0.5 <= delays[0] <= 1.0
    assert all(4.0 <= d <= 8.0 for d in delays[3:])
    backoff.reset()
    assert backoff.next() <= 1.0


def _service(broker: MosquittoBroker) -> MqttEndpoint:
    user = unique_username("svc")
    broker.add_service_client(user, "pw")
    return MqttEndpoint.parse(broker.url_for(user, "pw"))


async def test_anonymous_and_wrong_password_are_refused(mosquitto: MosquittoBroker) -> None:
    for url in (f"mqtt://{mosquitto.host}:{mosquitto.port}", mosquitto.url_for("nobody", "x")):
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt_client(MqttEndpoint.parse(url)):
                pass


async def test_device_acl_limits_publishing_to_its_prefix(mosquitto: MosquittoBroker) -> None:
    observer = _service(mosquitto)
    device = unique_username("dev")
    mosquitto.add_client(device, "pw", [Acl("publishClientSend", "tenant/t1/device/d1/#")])
    async with aiomqtt_client(observer) as watcher:
        await watcher.subscribe("tenant/#", qos=1)
        async with aiomqtt_client(MqttEndpoint.parse(mosquitto.url_for(device, "pw"))) as dev:
            await dev.publish("tenant/t2/device/d9/telemetry", b"forbidden", qos=1)
            await dev.publish("tenant/t1/device/d1/telemetry", b"allowed", qos=1)
        message = await asyncio.wait_for(anext(aiter(watcher.messages)), 5)
    assert message.payload == b"allowed"


def test_dynsec_errors_are_raised(mosquitto: MosquittoBroker) -> None:
    user = unique_username()
    mosquitto.add_client(user, "pw")
    with pytest.raises(DynsecError):
        mosquitto.add_client(user, "pw")
    mosquitto.remove_client(user)


async def test_shared_group_splits_messages(mosquitto: MosquittoBroker) -> None:
    endpoint = _service(mosquitto)
    topic = shared_subscription(f"g{uuid.uuid4().hex[:6]}", "tenant/+/device/+/+")
    received: list[list[bytes]] = [[], []]
    async with aiomqtt_client(endpoint) as a, aiomqtt_client(endpoint) as b:
        await a.subscribe(topic, qos=1)
        await b.subscribe(topic, qos=1)
        async with aiomqtt_client(endpoint) as pub:
            for i in range(20):
                await pub.publish("tenant/t/device/d/telemetry", str(i).encode(), qos=1)

        async def drain(client: aiomqtt.Client, into: list[bytes]) -> None:
            async for message in client.messages:
                into.append(bytes(message.payload))

        tasks = [asyncio.create_task(drain(c, r)) for c, r in ((a, received[0]), (b, received[1]))]
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
    assert len(received[0]) + len(received[1]) == 20
    assert received[0] and received[1]


@pytest.mark.slow
async def test_reconnects_after_broker_restart(mosquitto_broker: MosquittoBroker) -> None:
    endpoint = _service(mosquitto_broker)
    stop = asyncio.Event()
    sessions = 0

    async def session(client: aiomqtt.Client) -> None:
        nonlocal sessions
        sessions += 1
        if sessions == 1:
            await asyncio.to_thread(mosquitto_broker.restart, down_for=0.5)
            await client.publish("tenant/t/device/d/telemetry", b"x", qos=1)  # fails: lost
        await client.publish("tenant/t/device/d/telemetry", b"y", qos=1)

    await asyncio.wait_for(
        run_with_reconnect(
            lambda: aiomqtt_client(endpoint),
            session,
            stop=stop,
            backoff=Backoff(initial=0.2, maximum=1.0),
        ),
        timeout=20,
    )
    assert sessions == 2
    assert mosquitto_broker.running


async def test_run_with_reconnect_returns_when_stopped(mosquitto: MosquittoBroker) -> None:
    endpoint = _service(mosquitto)
    stop = asyncio.Event()

    async def forever(client: aiomqtt.Client) -> None:
        stop.set()
        await asyncio.sleep(3600)

    await asyncio.wait_for(
        run_with_reconnect(lambda: aiomqtt_client(endpoint), forever, stop=stop), timeout=5
    )
