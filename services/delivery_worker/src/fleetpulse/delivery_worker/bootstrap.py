"""``fleetpulse-delivery-worker``: SQS ``{prefix}deliveries`` -> webhook / email / MQTT / SNS.

Retries are scheduled by sending the message again with ``DelaySeconds`` (at most 15 minutes;
a longer wait takes several hops, each finding the delivery not yet due and sending it on)
rather than by stretching its visibility: every hop is a fresh message with a receive count of
one, so the queue's ``maxReceiveCount`` (shared with the rest of the platform, and meant for
poison messages) never cuts a day-long schedule short. An exhausted delivery is appended as
``DeliveryAbandoned`` and its message is sent to ``{prefix}deliveries-dlq`` explicitly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from fleetpulse.common.aws import aws_client
from fleetpulse.common.crypto import SecretBox
from fleetpulse.common.db import create_pool
from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.common.messaging import (
    OutboxRelay,
    SnsPublisher,
    SqsConsumer,
    queue_ref,
    redeclare_platform,
    resolve_platform,
)
from fleetpulse.common.runtime import ServiceContext
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

log = logging.getLogger(__name__)
NAME = "fleetpulse-delivery-worker"
DLQ_SUFFIX = "-dlq"


@dataclass(slots=True)
class App:
    pool: asyncpg.Pool
    consumer: SqsConsumer
    relay: OutboxRelay
    channels: dict[str, Channel]


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
    pool = await create_pool(
        settings.database_url, max_size=settings.db_pool_size, application_name=NAME
    )
    try:
        async with aws_client("sqs", settings.aws) as sqs, aws_client("sns", settings.aws) as sns:
            prefix, auto_create = settings.queue_prefix, settings.auto_create
            resources = await resolve_platform(sqs, sns, prefix, auto_create=auto_create)
            dlq = await queue_ref(sqs, resources.deliveries.name + DLQ_SUFFIX)
            channels = build_channels(settings, sns)
            worker = build_worker(settings, pool, channels)
            consumer = SqsConsumer(
                sqs,
                resources.deliveries.url,
                message_handler(worker, Requeuer(sqs, resources.deliveries.url, dlq.url)),
                concurrency=settings.concurrency,
                visibility_timeout_s=60,
                name="delivery-worker",
                on_missing_queue=redeclare_platform(sqs, sns, prefix, auto_create=auto_create),
            )
            relay = OutboxRelay(
                PostgresEventStore(pool),
                SnsPublisher(sns, resources.domain_events_arn),
                dsn=settings.database_url,
            )
            try:
                yield App(pool, consumer, relay, channels)
            finally:
                for channel in channels.values():
                    await channel.close()
    finally:
        await pool.close()


async def serve(context: ServiceContext[Settings]) -> None:
    async with bootstrap(context.settings) as app:
        context.health.add_check("db", lambda: _ping(app.pool))
        await asyncio.gather(app.consumer.run(context.shutdown), app.relay.run(context.shutdown))


async def _ping(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT 1"))


__all__ = ["App", "Requeuer", "bootstrap", "message_handler", "serve"]
