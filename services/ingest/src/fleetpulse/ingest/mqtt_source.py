"""MQTT source: ``connections`` persistent zmqtt sessions in one shared-subscription group.

Messages are received with ``auto_ack=False`` and acknowledged by the pipeline after their batch
committed (see ``libs/common/tests/test_mqtt_ack.py``); unacknowledged ones are redelivered when
the session reconnects. Each connection holds at most the broker's ``max_inflight_messages``
unacknowledged messages, so several connections keep batches full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import zmqtt

from fleetpulse.common.mqtt import MqttEndpoint, acking_client, shared_subscription
from fleetpulse.ingest.batch import Envelope
from fleetpulse.ingest.pipeline import Pipeline, now_us

log = logging.getLogger(__name__)
TOPIC_FILTER = "tenant/+/device/+/+"


class MqttSource:
    def __init__(
        self,
        endpoint: MqttEndpoint,
        pipeline: Pipeline,
        *,
        client_id_prefix: str,
        connections: int,
        share_group: str,
        receive_buffer: int = 2000,
    ) -> None:
        self._endpoint = endpoint
        self._pipeline = pipeline
        self._prefix = client_id_prefix
        self._connections = connections
        self._topic = shared_subscription(share_group, TOPIC_FILTER)
        self._receive_buffer = receive_buffer
        self._subscribed = 0

    @property
    def ready(self) -> bool:
        return self._subscribed == self._connections

    async def run(self, stop: asyncio.Event, drained: asyncio.Event) -> None:
        """Consume until ``stop``; keep connections open until ``drained`` so acks can go out."""
        await asyncio.gather(
            *(self._connection(i, stop, drained) for i in range(self._connections))
        )

    async def _connection(self, index: int, stop: asyncio.Event, drained: asyncio.Event) -> None:
        source = ("mqtt", index)
        self._pipeline.register_source(source, _acknowledge)
        client = acking_client(self._endpoint, client_id=f"{self._prefix}-{index}")
        async with (
            client,
            client.subscribe(
                self._topic,
                qos=zmqtt.QoS.AT_LEAST_ONCE,
                auto_ack=False,
                receive_buffer_size=self._receive_buffer,
            ) as subscription,
        ):
            self._subscribed += 1
            reader = asyncio.create_task(self._read(subscription, source))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if reader.done():
                reader.result()  # the client gave up reconnecting: fail loudly
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await subscription.detach()  # keep the broker-side subscription for the restart
            await drained.wait()
            self._subscribed -= 1

    async def _read(self, subscription: zmqtt.Subscription, source: tuple[str, int]) -> None:
        submit = self._pipeline.submit
        while True:
            message = await subscription.get_message()
            await submit(Envelope(source, message.topic, message.payload, now_us(), message))


async def _acknowledge(messages: list[Any]) -> None:
    for message in messages:
        try:
            await message.ack()
        # Connection lost (zmqtt raises MQTTError, or RuntimeError/OSError from a transport closed
        # under it): the broker redelivers the rest on reconnect, the writes are idempotent.
        except (zmqtt.MQTTError, RuntimeError, OSError) as exc:
            log.warning("mqtt ack failed", extra={"error": str(exc)})
            return
