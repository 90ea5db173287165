"""The platform a queue-driven service stands on, built once: the database pool and event store,
the SQS and SNS clients, the platform's queues and topic (declared from
:data:`~fleetpulse.common.messaging.resources.QUEUES` with ``AUTO_CREATE``, else looked up), and
factories for an SQS consumer and the outbox relay wired to them.

A service's ``bootstrap()`` opens :func:`platform` and adds its own handlers and loops::

    async with platform(settings, NAME) as base:
        consumer = base.consumer(base.resources.dispatcher, handle, name="dispatcher")
        relay = base.relay()
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import asyncpg
from pydantic import SecretStr

from fleetpulse.common.aws import AwsConfig, aws_client
from fleetpulse.common.db import create_pool
from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.common.health import database_ready
from fleetpulse.common.messaging import (
    MessageHandler,
    OutboxRelay,
    PlatformResources,
    QueueRef,
    SnsPublisher,
    SqsConsumer,
    guard_publishes,
    redeclare_platform,
    resolve_platform,
)
from fleetpulse.common.runtime import ServiceContext
from fleetpulse.common.settings import ServiceSettings

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


class PlatformSettings(Protocol):
    """The settings :func:`platform` reads (every queue-driven service's ``Settings`` has them)."""

    @property
    def database_url(self) -> SecretStr: ...
    @property
    def db_pool_size(self) -> int: ...
    @property
    def queue_prefix(self) -> str: ...
    @property
    def auto_create(self) -> bool: ...
    @property
    def aws(self) -> AwsConfig: ...


@dataclass(slots=True)
class Platform:
    """What :func:`platform` built; owned by it (closed when its block ends)."""

    settings: PlatformSettings
    pool: asyncpg.Pool
    events: PostgresEventStore
    sqs: SQSClient
    sns: SNSClient
    resources: PlatformResources

    def consumer(
        self, queue: QueueRef, handler: MessageHandler, *, name: str, **options: Any
    ) -> SqsConsumer:
        """An :class:`SqsConsumer` of ``queue`` that declares the platform again when the queue
        goes missing (``AUTO_CREATE`` only); ``options`` are the consumer's keyword arguments."""
        settings = self.settings
        missing = redeclare_platform(
            self.sqs, self.sns, settings.queue_prefix, auto_create=settings.auto_create
        )
        return SqsConsumer(
            self.sqs, queue.url, handler, name=name, on_missing_queue=missing, **options
        )

    def relay(self) -> OutboxRelay:
        """The leader-elected relay publishing committed events to ``{prefix}domain-events``
        (with ``AUTO_CREATE``, each batch only once the topic has its subscriptions)."""
        settings, arn = self.settings, self.resources.domain_events_arn
        guard = guard_publishes(
            self.sqs, self.sns, settings.queue_prefix, arn, auto_create=settings.auto_create
        )
        publisher = SnsPublisher(self.sns, arn, before_publish=guard)
        return OutboxRelay(self.events, publisher, dsn=self.settings.database_url)


@asynccontextmanager
async def platform(
    settings: PlatformSettings, name: str, *, min_pool_size: int = 1
) -> AsyncIterator[Platform]:
    """Open the pool and the AWS clients, resolve the platform's resources; close all on exit."""
    pool = await create_pool(
        settings.database_url,
        min_size=min_pool_size,
        max_size=settings.db_pool_size,
        application_name=name,
    )
    try:
        async with aws_client("sqs", settings.aws) as sqs, aws_client("sns", settings.aws) as sns:
            resources = await resolve_platform(
                sqs, sns, settings.queue_prefix, auto_create=settings.auto_create
            )
            yield Platform(settings, pool, PostgresEventStore(pool), sqs, sns, resources)
    finally:
        await pool.close()


class PooledApp(Protocol):
    """A service's app as :func:`serve_app` runs it: its database pool and ``run(stop)``."""

    @property
    def pool(self) -> asyncpg.Pool: ...

    async def run(self, stop: asyncio.Event) -> None: ...


A = TypeVar("A", bound=PooledApp)
S = TypeVar("S", bound=ServiceSettings)


def serve_app(
    bootstrap: Callable[[S], AbstractAsyncContextManager[A]],
) -> Callable[[ServiceContext[S]], Coroutine[Any, Any, None]]:
    """The ``serve`` of a queue-driven service: bootstrap its app, report the database on the
    readiness probe, run until the process is told to stop."""

    async def serve(context: ServiceContext[S]) -> None:
        async with bootstrap(context.settings) as app:
            pool = app.pool
            context.health.add_check("db", lambda: database_ready(pool))
            await app.run(context.shutdown)

    return serve


__all__ = ["Platform", "PlatformSettings", "PooledApp", "platform", "serve_app"]
