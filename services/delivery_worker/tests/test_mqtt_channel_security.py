"""The MQTT channel against a real Mosquitto (dynamic security) with the delivery user's ACL:
issue 13 items 5 (tenant namespace, signed notifications), 7 (a bad topic never drops the shared
connection) and 11 (a publish the broker refuses is a failed attempt)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio

from fleetpulse.common.mqtt import MqttEndpoint
from fleetpulse.common.webhooks import WebhookVerificationError, generate_secret, verify
from fleetpulse.delivery_worker.channels.base import Notification
from fleetpulse.delivery_worker.channels.mqtt import MqttChannel
from fleetpulse.delivery_worker.retry import Verdict, decide
from fleetpulse.testing.mosquitto import Acl, unique_username

pytestmark = pytest.mark.security
PAYLOAD = {"type": "alert.opened", "timestamp": "2030-01-01T00:00:00Z", "data": {"alert_id": "a1"}}
SECRET = generate_secret()


def notification(tenant: str, topic: str, secret: str | None = None) -> Notification:
    return Notification("dlv_1", tenant, "i1", {"topic": topic, "qos": 1}, PAYLOAD, secret)


@pytest_asyncio.fixture
async def channel(mosquitto: Any) -> AsyncIterator[MqttChannel]:
    """Publishes as a user allowed only fleetpulse/t1/# (narrower than the delivery user's
    fleetpulse/#, so the broker has something to refuse)."""
    user = unique_username("notify")
    mosquitto.add_client(user, "pw", [Acl("publishClientSend", "fleetpulse/t1/#")])
    channel = MqttChannel(mosquitto.url_for(user, "pw"), timeout_s=5.0)
    yield channel
    await channel.close()


@pytest_asyncio.fixture
async def listener(mosquitto: Any) -> AsyncIterator[aiomqtt.Client]:
    user = unique_username("listen")
    mosquitto.add_client(
        user,
        "pw",
        [Acl("subscribePattern", "#"), Acl("publishClientReceive", "#")],
    )
    endpoint = MqttEndpoint.parse(mosquitto.url_for(user, "pw"))
    async with aiomqtt.Client(
        endpoint.host,
        endpoint.port,
        username=endpoint.username,
        password=endpoint.password_value,
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe("#", qos=1)
        yield client


async def next_message(client: aiomqtt.Client) -> aiomqtt.Message:
    return await asyncio.wait_for(anext(aiter(client.messages)), 10)


async def test_a_publish_the_broker_refuses_is_a_failed_attempt(
    channel: MqttChannel, listener: aiomqtt.Client
) -> None:
    refused = await channel.send(notification("t2", "fleetpulse/t2/alerts"))
    assert not refused.ok  # used to be recorded as succeeded (QoS 1 PUBACK without a reason)
    assert refused.status_code == 0x87
    assert decide(refused, attempt=1).verdict is Verdict.ABANDON
    allowed = await channel.send(notification("t1", "fleetpulse/t1/alerts"))
    assert allowed.ok, allowed.error  # positive control: the same connection, an allowed topic
    message = await next_message(listener)
    assert str(message.topic) == "fleetpulse/t1/alerts"


@pytest.mark.parametrize(
    "topic",
    [
        "fleetpulse/t1/al\x00erts",
        "fleetpulse/t1/al\x01erts",
        "fleetpulse/t1/al\nerts",
        "fleetpulse/t1/\x7f",
        "fleetpulse/t1/+",
        "fleetpulse/t1/#",
        "$SYS/broker",
        "fleetpulse/t1/" + "x" * 65536,
        "fleetpulse/t1/\ud800",
        "",
        "fleetpulse/t2/alerts",  # another tenant's namespace
        "tenant/t1/device/d1/telemetry",  # the devices' namespace
        "fleet/b-alerts",
    ],
)
async def test_a_bad_topic_fails_alone_and_the_shared_connection_stays(
    channel: MqttChannel, listener: aiomqtt.Client, topic: str
) -> None:
    first = await channel.send(notification("t1", "fleetpulse/t1/before"))
    assert first.ok, first.error
    connection = channel._client
    bad = await channel.send(notification("t1", topic))
    assert not bad.ok
    assert bad.permanent, bad.error
    after = await channel.send(notification("t1", "fleetpulse/t1/after"))
    assert after.ok, after.error
    assert channel._client is connection  # the connection other tenants share was not dropped
    topics = [str((await next_message(listener)).topic) for _ in range(2)]
    assert topics == ["fleetpulse/t1/before", "fleetpulse/t1/after"]


async def test_notifications_are_signed_like_webhooks(
    channel: MqttChannel, listener: aiomqtt.Client
) -> None:
    result = await channel.send(notification("t1", "fleetpulse/t1/signed", SECRET))
    assert result.ok, result.error
    message = await next_message(listener)
    assert message.properties is not None
    headers = dict(message.properties.UserProperty)
    assert headers["webhook-id"] == "dlv_1"
    payload = bytes(message.payload)  # type: ignore[arg-type]
    verify(SECRET, headers, payload)
    assert json.loads(payload)["data"]["alert_id"] == "a1"
    with pytest.raises(WebhookVerificationError):  # positive control: a wrong secret fails
        verify(generate_secret(), headers, payload)
