"""``fleetpulse-delivery-worker``: SQS ``{prefix}deliveries`` -> webhook / email / MQTT / SNS.

Retries are scheduled by sending the message again with ``DelaySeconds`` (at most 15 minutes;
a longer wait takes several hops, each finding the delivery not yet due and sending it on)
rather than by stretching its visibility: every hop is a fresh message with a receive count of
one, so the queue's ``maxReceiveCount`` (``QUEUES`` in ``common/messaging/resources.py``, meant for
poison messages) never cuts a day-long schedule short. An exhausted delivery is appended as
``DeliveryAbandoned`` and its message is sent to ``{prefix}deliveries-dlq`` explicitly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from fleetpulse.common.crypto import SecretBox
from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.common.messaging import OutboxRelay, SqsConsumer, queue_ref
from fleetpulse.common.messaging.resources import DLQ_SUFFIX
from fleetpulse.common.platform import platform, serve_app
from fleetpulse.common.runtime import run_loops
from fleetpulse.delivery_worker.adapters import Requeuer
from fleetpulse.delivery_worker.breaker import CircuitBreakers
from fleetpulse.delivery_worker.channels.base import Channel
from fleetpulse.delivery_worker.channels.email import EmailChannel, SmtpConfig
from fleetpulse.delivery_worker.channels.mqtt import MqttChannel
from fleetpulse.delivery_worker.channels.sns import SnsChannel
from fleetpulse.delivery_worker.channels.webhook import WebhookChannel
from fleetpulse.delivery_worker.entrypoints import message_handler
from fleetpulse.delivery_worker.service import DeliveryWorker
from fleetpulse.delivery_worker.settings import Settings
from fleetpulse.delivery_worker.store import PostgresDeliveryStore

NAME = "fleetpulse-delivery-worker"
#: The consumer's receive visibility (extended while a handler runs); a dead worker's messages
#: come back after a minute rather than after the queue's five.
RECEIVE_VISIBILITY_S = 60


@dataclass(slots=True)
class App:
    pool: asyncpg.Pool
    consumer: SqsConsumer
    relay: OutboxRelay
    channels: dict[str, Channel]

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and relay until ``stop``; the first loop to fail fails both."""
        await run_loops([self.consumer.run(stop), self.relay.run(stop)])


def build_channels(settings: Settings, sns: Any) -> dict[str, Channel]:
    smtp = SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
        ca_file=settings.smtp_ca_file,
        sender=settings.smtp_from,
    )
    return {
        "webhook": WebhookChannel(
            allow_private=settings.allow_private_webhooks,
            timeout_s=settings.webhook_timeout_s,
            max_connections=settings.concurrency,
        ),
        "email": EmailChannel(smtp),
        "mqtt": MqttChannel(settings.mqtt_url),
        "sns": SnsChannel(sns),
    }


def build_worker(
    settings: Settings, pool: asyncpg.Pool, channels: dict[str, Channel]
) -> DeliveryWorker:
    breakers = CircuitBreakers(
        failures=settings.breaker_failures,
        open_s=settings.breaker_open_s,
        max_in_flight=settings.per_integration_concurrency,
    )
    return DeliveryWorker(
        PostgresDeliveryStore(PostgresEventStore(pool)),
        channels,
        SecretBox(settings.webhook_encryption_key.get_secret_value()),
        breakers,
        lease_s=settings.webhook_timeout_s * 4,
    )


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[App]:
    """Wire the adapters: the platform, the channels, the worker, its consumer and the relay."""
    async with platform(settings, NAME) as base:
        deliveries = base.resources.deliveries
        dlq = await queue_ref(base.sqs, deliveries.name + DLQ_SUFFIX)
        channels = build_channels(settings, base.sns)
        worker = build_worker(settings, base.pool, channels)
        consumer = base.consumer(
            deliveries,
            message_handler(worker, Requeuer(base.sqs, deliveries.url, dlq.url)),
            concurrency=settings.concurrency,
            visibility_timeout_s=RECEIVE_VISIBILITY_S,
            name="delivery-worker",
        )
        try:
            yield App(base.pool, consumer, base.relay(), channels)
        finally:
            for channel in channels.values():
                await channel.close()


#: The process's ``serve``: the app above, with the database on the readiness probe.
serve = serve_app(bootstrap)


__all__ = ["App", "bootstrap", "serve"]
