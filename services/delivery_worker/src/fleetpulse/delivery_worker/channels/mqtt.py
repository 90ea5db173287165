"""``MqttChannel``: publish the notification JSON to ``config.topic`` with ``config.qos``.

One MQTT 5 connection per worker, shared by every tenant's integrations, opened on first use and
reopened after a failure. So one tenant's topic can never drop it for the others, a topic is
checked before it is sent (MQTT's rules for a PUBLISH topic, and the tenant's namespace
``fleetpulse/{tenant}/``); a bad one is a permanent failure of that delivery only.

The broker's answer counts: a PUBACK reason code of 0x80 or more (e.g. 0x87 not authorized) is
a failed attempt, not a success. Notifications are signed like webhooks when the integration has
a secret: the Standard Webhooks headers ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature`` travel as MQTT 5 user properties over the exact payload bytes.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack, suppress
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from fleetpulse.common.mqtt import MqttEndpoint, integration_namespace, publish_topic_problem
from fleetpulse.common.webhooks import signature_headers
from fleetpulse.delivery_worker.channels.base import Notification
from fleetpulse.delivery_worker.retry import AttemptResult

#: PUBACK reasons no retry can change (the broker refuses this topic for this user).
PERMANENT_REASONS = frozenset({0x87, 0x90})  # not authorized, topic name invalid


class ConfirmingClient(aiomqtt.Client):
    """aiomqtt's client that also returns the broker's PUBACK/PUBCOMP reason code (MQTT 5).

    aiomqtt's ``publish`` drops the reason code paho hands to ``on_publish``; this keeps it per
    packet id and returns it from :meth:`publish_confirmed`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reasons: dict[int, ReasonCode] = {}

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        self._reasons[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_confirmed(
        self, topic: str, payload: bytes, qos: int, properties: Properties, timeout: float
    ) -> ReasonCode | None:
        info = self._client.publish(topic, payload, qos, False, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        try:
            if not info.is_published():
                confirmation = asyncio.Event()
                with self._pending_call(info.mid, confirmation, self._pending_publishes):
                    await self._wait_for(confirmation.wait(), timeout=timeout)
            return self._reasons.get(info.mid)
        finally:
            self._reasons.pop(info.mid, None)


class MqttChannel:
    def __init__(self, url: SecretStr | str | None, *, timeout_s: float = 15.0) -> None:
        self._endpoint = MqttEndpoint.parse(url) if url else None
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._client: ConfirmingClient | None = None

    async def send(self, notification: Notification) -> AttemptResult:
        topic = str(notification.config.get("topic") or "")
        qos = notification.config.get("qos", 1)
        if self._endpoint is None or qos not in (0, 1, 2):
            return AttemptResult(ok=False, error="no broker configured or bad qos", permanent=True)
        problem = _topic_problem(notification.tenant_id, topic)
        if problem is not None:
            return AttemptResult(ok=False, error=f"topic {topic[:200]!r} {problem}", permanent=True)
        started = time.perf_counter()
        payload = orjson.dumps(dict(notification.payload))
        try:
            client = await self._connected()
            reason = await client.publish_confirmed(
                topic, payload, int(qos), _properties(notification, payload), self._timeout_s
            )
        except (aiomqtt.MqttError, OSError, TimeoutError, ValueError) as exc:
            await self.close()
            return AttemptResult(
                ok=False,
                error=f"{type(exc).__name__}: {exc}"[:500],
                latency_ms=_ms(started),
                endpoint_failure=True,
            )
        return _result(reason, started)

    async def _connected(self) -> ConfirmingClient:
        async with self._lock:
            if self._client is None:
                assert self._endpoint is not None
                stack = AsyncExitStack()
                client = ConfirmingClient(
                    self._endpoint.host,
                    self._endpoint.port,
                    username=self._endpoint.username,
                    password=self._endpoint.password_value,
                    tls_context=self._endpoint.ssl_context(),
                    protocol=aiomqtt.ProtocolVersion.V5,
                    timeout=self._timeout_s,
                )
                self._client = await asyncio.wait_for(
                    stack.enter_async_context(client), self._timeout_s
                )
                self._stack = stack
            return self._client

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with suppress(aiomqtt.MqttError, OSError):
                await stack.aclose()


def _topic_problem(tenant_id: str, topic: str) -> str | None:
    problem = publish_topic_problem(topic)
    if problem is not None:
        return problem
    namespace = integration_namespace(tenant_id)
    if not topic.startswith(namespace):
        return f"is outside this tenant's namespace {namespace}"
    return None


def _properties(notification: Notification, payload: bytes) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ContentType = "application/json"
    if notification.secret:
        headers = signature_headers(
            notification.secret, notification.message_id, int(time.time()), payload
        )
        properties.UserProperty = list(headers.items())
    return properties


def _result(reason: ReasonCode | None, started: float) -> AttemptResult:
    if reason is None or not reason.is_failure:
        return AttemptResult(ok=True, latency_ms=_ms(started))
    code = reason.value
    return AttemptResult(
        ok=False,
        status_code=code,
        error=f"broker refused the publish: 0x{code:02x} {reason}",
        latency_ms=_ms(started),
        permanent=code in PERMANENT_REASONS,
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
