"""MQTT source: ``connections`` persistent sessions in one shared-subscription group (or one
session with a plain subscription when the group is empty, see ``Settings.mqtt_share_group``).

Each connection is a :class:`fleetpulse.common.mqtt_subscriber.MqttSubscriber` (chosen over
zmqtt on profile evidence, see its module docstring): PUBLISH packets are parsed in
``data_received`` and offered to the pipeline synchronously, and the pipeline acknowledges after
their batch committed, all PUBACKs of a batch in one write per connection (see
``libs/common/tests/test_mqtt_ack.py``). Unacknowledged messages are redelivered when the session
reconnects. Retained messages the broker re-sends on a (re)subscription (RETAIN flag set) are
not new telemetry: they are counted as duplicates and acknowledged, never stored (a retained
message published while ingest is subscribed arrives with RETAIN 0 and is stored once). Each
connection holds at most the broker's ``max_inflight_messages``
unacknowledged messages (MQTT 3.1.1 cannot negotiate it; ``max_inflight`` tells the pipeline
the broker's value): once a batch holds its share of a connection's window (window /
writers) and nothing more is buffered, the pipeline writes it at once, so while
batch N commits batch N+1 fills from the rest, and batch N's acks reopen the window
(acknowledged per committed batch, in the order the batches were collected). Without it a
single connection waited ``batch_max_ms``
for messages the broker would not send before the acks. (Mosquitto 2.0.11, measured: it holds
the window until the first PUBACK, after which each PUBACK releases up to a whole window of
queued messages, so under load it rarely binds there.) When the pipeline's buffer is full a
connection stops reading its socket until there is room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fleetpulse.common.mqtt import MqttEndpoint, shared_subscription
from fleetpulse.common.mqtt_subscriber import MqttSubscriber
from fleetpulse.ingest.batch import Envelope
from fleetpulse.ingest.pipeline import Pipeline, now_us

log = logging.getLogger(__name__)
TOPIC_FILTER = "tenant/+/device/+/#"


def subscription_filter(share_group: str) -> str:
    """The shared subscription, or the plain filter when ``share_group`` is empty (one replica)."""
    return shared_subscription(share_group, TOPIC_FILTER) if share_group else TOPIC_FILTER


class _Connection:
    """One subscriber wired to the pipeline: deliver -> offer, ack after commit."""

    def __init__(self, source: MqttSource, index: int) -> None:
        self.key = ("mqtt", index)
        self._offer = source._pipeline.offer
        self._when_space = source._pipeline.when_space
        self.subscriber = MqttSubscriber(
            source._endpoint,
            client_id=f"{source._prefix}-{index}",
            topic_filter=source._topic,
            deliver=self.deliver,
            deliver_retained=self.deliver_retained,
        )

    def deliver(self, topic: str, payload: bytes, token: int | None) -> bool:
        if self._offer(Envelope(self.key, topic, payload, now_us(), token)):
            return True
        self._when_space(self.subscriber.resume)
        return False

    def deliver_retained(self, topic: str, payload: bytes, token: int | None) -> bool:
        """A retained message re-sent because ingest (re)subscribed: not new telemetry. It goes
        through the pipeline only to be counted (as a duplicate) and acknowledged after commit."""
        envelope = Envelope(self.key, topic, payload, now_us(), token, retained=True)
        if self._offer(envelope):
            return True
        self._when_space(self.subscriber.resume)
        return False

    async def acknowledge(self, tokens: list[Any]) -> None:
        # A connection lost since these were received: nothing is written, the broker
        # redelivers them on the new connection, and the writes are idempotent.
        self.subscriber.ack(tokens)


class MqttSource:
    def __init__(
        self,
        endpoint: MqttEndpoint,
        pipeline: Pipeline,
        *,
        client_id_prefix: str,
        connections: int,
        share_group: str,
        max_inflight: int | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._pipeline = pipeline
        self._prefix = client_id_prefix
        self._topic = subscription_filter(share_group)
        self._connections = [_Connection(self, i) for i in range(connections)]
        for connection in self._connections:
            pipeline.register_source(connection.key, connection.acknowledge, window=max_inflight)

    @property
    def ready(self) -> bool:
        return all(c.subscriber.ready for c in self._connections)

    async def run(self, stop: asyncio.Event, drained: asyncio.Event) -> None:
        """Consume until ``stop``; keep connections open until ``drained`` so acks can go out."""
        runners = [asyncio.create_task(c.subscriber.run(stop)) for c in self._connections]
        try:
            await asyncio.gather(*runners)
        except BaseException:
            for runner in runners:
                runner.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
            await self._disconnect()
            raise
        for connection in self._connections:
            connection.subscriber.pause()  # deliver nothing more; the broker keeps the rest
        await drained.wait()
        await self._disconnect()

    async def _disconnect(self) -> None:
        for connection in self._connections:
            with contextlib.suppress(OSError, RuntimeError):
                await connection.subscriber.disconnect()
