"""``fleetpulse-dispatcher``: SQS ``{prefix}dispatcher`` (alert events) -> DeliveryScheduled.

Runs three loops until SIGTERM: the SQS consumer, the group flusher (group_wait_s and
repeat_interval_s timers, stored in ``dispatch_groups`` so they survive restarts and are shared
by replicas through ``FOR UPDATE SKIP LOCKED``; it also re-checks the firing notifications
silences and inhibit rules hold, in ``dispatch_held``) and the outbox relay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from fleetpulse.common.db import translated
from fleetpulse.common.errors import TransientError
from fleetpulse.common.messaging import OutboxRelay, SqsConsumer
from fleetpulse.common.platform import platform, serve_app
from fleetpulse.common.runtime import run_loops, sleep_until_stopped
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

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, flush groups and relay until ``stop``; the first loop to fail fails all."""
        await run_loops(
            [
                self.consumer.run(stop),
                flush_groups(self.dispatcher, stop, self.settings.group_poll_s),
                self.relay.run(stop),
            ]
        )


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[App]:
    """Wire the adapters: the platform (pool, event store, clients, resources), consumer, relay."""
    async with platform(settings, NAME) as base:
        dispatcher = Dispatcher(PostgresDispatchStore(base.events))
        consumer = base.consumer(
            base.resources.dispatcher,
            message_handler(dispatcher),
            concurrency=settings.concurrency,
            name="dispatcher",
        )
        yield App(settings, base.pool, dispatcher, consumer, base.relay())


async def flush_groups(dispatcher: Dispatcher, stop: asyncio.Event, poll_s: float) -> None:
    """Flush due alert groups and re-check held notifications until ``stop``; errors are
    logged and retried."""
    while not stop.is_set():
        try:
            with translated:
                while await dispatcher.flush_due_groups() > 0:
                    pass
                while await dispatcher.release_held() > 0:
                    pass
        except TransientError as exc:
            error = type(exc.__cause__ or exc).__name__
            log.warning("group flush failed; retrying", extra={"error": error})
        await sleep_until_stopped(stop, poll_s)


#: The process's ``serve``: the app above, with the database on the readiness probe.
serve = serve_app(bootstrap)
