"""``fleetpulse-dispatcher``: SQS ``{prefix}dispatcher`` (alert events) -> DeliveryScheduled.

Runs three loops until SIGTERM: the SQS consumer, the group flusher (group_wait_s and
repeat_interval_s timers, stored in ``dispatch_groups`` so they survive restarts and are shared
by replicas through ``FOR UPDATE SKIP LOCKED``; it also re-checks the firing notifications
silences and inhibit rules hold, in ``dispatch_held``) and the outbox relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from fleetpulse.common.aws import aws_client
from fleetpulse.common.db import TRANSIENT_ERRORS, create_pool
from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.common.messaging import (
    OutboxRelay,
    SnsPublisher,
    SqsConsumer,
    redeclare_platform,
    resolve_platform,
)
from fleetpulse.common.runtime import ServiceContext
from fleetpulse.dispatcher.entrypoints import message_handler
from fleetpulse.dispatcher.service import Dispatcher
from fleetpulse.dispatcher.settings import Settings
from fleetpulse.dispatcher.store import PostgresDispatchStore

log = logging.getLogger(__name__)
NAME = "fleetpulse-dispatcher"


@dataclass(slots=True)
class App:
    settings: Settings
    pool: asyncpg.Pool
    dispatcher: Dispatcher
    consumer: SqsConsumer
    relay: OutboxRelay


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[App]:
    """Wire the adapters: pool, event store, SQS/SNS clients, resources, consumer, relay."""
    pool = await create_pool(
        settings.database_url, max_size=settings.db_pool_size, application_name=NAME
    )
    try:
        async with aws_client("sqs", settings.aws) as sqs, aws_client("sns", settings.aws) as sns:
            prefix, auto_create = settings.queue_prefix, settings.auto_create
            resources = await resolve_platform(sqs, sns, prefix, auto_create=auto_create)
            events = PostgresEventStore(pool)
            dispatcher = Dispatcher(PostgresDispatchStore(events))
            consumer = SqsConsumer(
                sqs,
                resources.dispatcher.url,
                message_handler(dispatcher),
                concurrency=settings.concurrency,
                name="dispatcher",
                on_missing_queue=redeclare_platform(sqs, sns, prefix, auto_create=auto_create),
            )
            relay = OutboxRelay(
                events, SnsPublisher(sns, resources.domain_events_arn), dsn=settings.database_url
            )
            yield App(settings, pool, dispatcher, consumer, relay)
    finally:
        await pool.close()


async def flush_groups(dispatcher: Dispatcher, stop: asyncio.Event, poll_s: float) -> None:
    """Flush due alert groups and re-check held notifications until ``stop``; errors are
    logged and retried."""
    while not stop.is_set():
        try:
            while await dispatcher.flush_due_groups() > 0:
                pass
            while await dispatcher.release_held() > 0:
                pass
        except TRANSIENT_ERRORS as exc:
            log.warning("group flush failed; retrying", extra={"error": type(exc).__name__})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_s)


async def serve(context: ServiceContext[Settings]) -> None:
    async with bootstrap(context.settings) as app:
        context.health.add_check("db", lambda: _ping(app.pool))
        await asyncio.gather(
            app.consumer.run(context.shutdown),
            flush_groups(app.dispatcher, context.shutdown, context.settings.group_poll_s),
            app.relay.run(context.shutdown),
        )


async def _ping(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT 1"))
