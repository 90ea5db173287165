"""``fleetpulse-evaluator``: records from ``{prefix}evaluator`` -> rule state -> alert events.

Runs, until SIGTERM: the SQS consumer (one transaction per record batch), the clock (elapsed
durations and no_data deadlines, every ``tick_interval_s``), the catalog refresher and the outbox
relay. On SIGTERM the consumer stops receiving and finishes the batches in flight; the clock and
relay stop after their current round.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from fleetpulse.common.messaging import OutboxRelay, SqsConsumer
from fleetpulse.common.platform import platform, serve_app
from fleetpulse.common.runtime import run_loops
from fleetpulse.evaluator.alerting import PostgresAlertLog
from fleetpulse.evaluator.catalog import Catalog, PostgresCatalogSource
from fleetpulse.evaluator.coalescer import Coalescer
from fleetpulse.evaluator.entrypoints import message_handler
from fleetpulse.evaluator.service import Evaluator
from fleetpulse.evaluator.settings import Settings

NAME = "fleetpulse-evaluator"


@dataclass(slots=True)
class App:
    settings: Settings
    pool: asyncpg.Pool
    evaluator: Evaluator
    catalog: PostgresCatalogSource
    consumer: SqsConsumer
    relay: OutboxRelay | None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, tick, follow the catalog (and relay) until ``stop``; the first loop to fail
        fails all."""
        await self.catalog.refresh()  # rules are known before the first record is evaluated
        await self.evaluator.catalog_changed()
        loops: list[Coroutine[Any, Any, None]] = [
            self.consumer.run(stop),
            self.evaluator.run_clock(stop, self.settings.tick_interval_s),
            self.catalog.run(
                stop, self.settings.catalog_refresh_s, on_change=self.evaluator.catalog_changed
            ),
        ]
        if self.relay is not None:
            loops.append(self.relay.run(stop))
        await run_loops(loops)


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[App]:
    """Wire the adapters: the one place that knows them all."""
    async with platform(settings, NAME, min_pool_size=2) as base:
        catalog = Catalog()
        evaluator = Evaluator(
            base.pool,
            catalog,
            PostgresAlertLog(base.events),
            duration_grace_s=settings.duration_grace_s,
        )
        coalescer = Coalescer(
            evaluator.handle,
            max_records=settings.batch_max_records,
            linger_s=settings.batch_linger_ms / 1000,
        )
        consumer = base.consumer(
            base.resources.evaluator,
            message_handler(coalescer),
            concurrency=settings.consumer_concurrency,
            visibility_timeout_s=settings.visibility_timeout_s,
            name="evaluator",
        )
        relay = base.relay() if settings.outbox_relay else None
        source = PostgresCatalogSource(base.pool, catalog)
        yield App(settings, base.pool, evaluator, source, consumer, relay)


#: The process's ``serve``: the app above, with the database on the readiness probe.
serve = serve_app(bootstrap)


__all__ = ["App", "bootstrap", "serve"]
