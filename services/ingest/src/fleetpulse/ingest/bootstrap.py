"""Wiring: ``bootstrap()`` builds the adapters from settings; ``serve()`` runs them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from fleetpulse.common.aws import aws_client
from fleetpulse.common.db import create_pool
from fleetpulse.common.errors import ConfigurationError
from fleetpulse.common.health import database_ready
from fleetpulse.common.messaging import QUEUES, SqsConsumer, declare_platform_queue
from fleetpulse.common.mqtt import MqttEndpoint
from fleetpulse.common.runtime import ServiceContext, run_loops, sleep_until_stopped
from fleetpulse.ingest.batch import QuarantineThrottle
from fleetpulse.ingest.domain import RateLimiter, TimeWindow, Validator
from fleetpulse.ingest.entrypoints import MqttSource, SqsSource
from fleetpulse.ingest.forwarder import DiscardingForwarder, ReadingsForwarder, SqsReadingsForwarder
from fleetpulse.ingest.metrics import IngestMetrics
from fleetpulse.ingest.pipeline import Pipeline, PipelineConfig
from fleetpulse.ingest.registry import DeviceRegistry
from fleetpulse.ingest.settings import Settings
from fleetpulse.ingest.store import RETRYABLE, PostgresTelemetryStore

log = logging.getLogger(__name__)
DAY_S = 86_400.0
STATS_EVERY_S = 10.0
HOUSEKEEPING_EVERY_S = 300.0


@dataclass(slots=True)
class App:
    settings: Settings
    pool: asyncpg.Pool
    store: PostgresTelemetryStore
    registry: DeviceRegistry
    pipeline: Pipeline
    metrics: IngestMetrics
    mqtt: MqttSource | None
    sqs: SqsConsumer | None

    async def run(self, stop: asyncio.Event) -> None:
        """Run sources, pipeline and housekeeping until ``stop``; drain, acknowledge, return.
        The first loop to fail cancels the others (the pipeline's end still releases the
        sources) and fails the service."""
        drained = asyncio.Event()

        async def pipeline() -> None:
            try:
                await self.pipeline.run(stop)
            finally:
                drained.set()

        loops = [
            pipeline(),
            self.registry.follow(stop, self.settings.registry_poll_ms / 1000),
            _housekeeping(self, stop),
        ]
        if self.mqtt is not None:
            loops.append(self.mqtt.run(stop, drained))
        if self.sqs is not None:
            loops.append(self.sqs.run(stop))
        await run_loops(loops)


def mqtt_endpoint(settings: Settings) -> MqttEndpoint:
    if settings.mqtt_url is None:
        raise ConfigurationError("FLEETPULSE_MQTT_URL", "required when sources include mqtt")
    try:
        return MqttEndpoint.parse(settings.mqtt_url)
    except ValueError as exc:
        raise ConfigurationError("FLEETPULSE_MQTT_URL", str(exc)) from None


def build_pipeline(
    settings: Settings, pool: asyncpg.Pool, forwarder: ReadingsForwarder, metrics: IngestMetrics
) -> tuple[Pipeline, DeviceRegistry, PostgresTelemetryStore]:
    registry = DeviceRegistry(pool)
    store = PostgresTelemetryStore(pool)
    validator = Validator(
        registry.status,
        RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        TimeWindow(settings.max_future_s * 1_000_000, settings.retention_days * 86_400_000_000),
    )
    config = PipelineConfig(
        settings.batch_max_rows,
        settings.batch_max_ms,
        settings.writers,
        settings.max_pending_messages,
        settings.committed_batches,
    )
    pipeline = Pipeline(
        validator=validator,
        registry=registry,
        store=store,
        forwarder=forwarder,
        throttle=QuarantineThrottle(settings.quarantine_rows_per_minute),
        metrics=metrics,
        config=config,
    )
    return pipeline, registry, store


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[App]:
    endpoint = mqtt_endpoint(settings) if "mqtt" in settings.source_names else None
    async with AsyncExitStack() as stack:
        pool = await create_pool(
            settings.database_url,
            min_size=1,
            max_size=settings.writers + 3,
            application_name="fleetpulse-ingest",
            command_timeout=30.0,
        )
        stack.push_async_callback(pool.close)
        sqs = await _sqs_client(settings, stack)
        forwarder = await _forwarder(settings, sqs)
        metrics = IngestMetrics()
        pipeline, registry, store = build_pipeline(settings, pool, forwarder, metrics)
        metrics._pending = lambda: pipeline.pending
        mqtt = None
        if endpoint is not None:
            mqtt = MqttSource(
                endpoint,
                pipeline,
                client_id_prefix=settings.mqtt_client_id,
                connections=settings.mqtt_connections,
                share_group=settings.mqtt_share_group,
                max_inflight=settings.mqtt_max_inflight or None,
            )
        sqs_source = None
        if "sqs" in settings.source_names:
            sqs_source = await _sqs_source(settings, sqs, pipeline)
        yield App(settings, pool, store, registry, pipeline, metrics, mqtt, sqs_source)


async def _sqs_client(settings: Settings, stack: AsyncExitStack) -> Any:
    if not settings.forward_to_evaluator and "sqs" not in settings.source_names:
        return None
    return await stack.enter_async_context(aws_client("sqs", settings.aws))


async def _forwarder(settings: Settings, sqs: Any) -> ReadingsForwarder:
    if not settings.forward_to_evaluator:
        return DiscardingForwarder()
    url = await _queue_url(sqs, settings.queue_prefix, "evaluator", settings.auto_create)
    return SqsReadingsForwarder(sqs, url)


async def _sqs_source(settings: Settings, sqs: Any, pipeline: Pipeline) -> SqsConsumer:
    """The ``{prefix}ingest`` queue (IoT Core's topic rule) on the shared consumer; a message is
    deleted only once the batch holding it committed."""
    prefix, auto_create = settings.queue_prefix, settings.auto_create
    url = await _queue_url(sqs, prefix, "ingest", auto_create)
    window = settings.batch_max_rows * settings.writers
    source = SqsSource(pipeline, f"{prefix}ingest", window=window)
    redeclare = functools.partial(declare_platform_queue, sqs, prefix, "ingest")
    return SqsConsumer(
        sqs,
        url,
        source.handle,
        concurrency=window,
        wait_time_s=settings.sqs_wait_s,
        visibility_timeout_s=QUEUES["ingest"].visibility_timeout_s,
        name="ingest",
        on_missing_queue=redeclare if auto_create else None,
    )


async def _queue_url(sqs: Any, prefix: str, key: str, create: bool) -> str:
    """Declare the platform queue ``key`` from the table with ``AUTO_CREATE``, else look it up."""
    if create:
        return (await declare_platform_queue(sqs, prefix, key)).url
    return str((await sqs.get_queue_url(QueueName=f"{prefix}{key}"))["QueueUrl"])


async def serve(context: ServiceContext[Settings]) -> None:
    async with bootstrap(context.settings) as app:
        await app.store.ensure_partitions()
        pool = app.pool
        context.health.add_check("db", lambda: database_ready(pool))
        if app.mqtt is not None:
            mqtt = app.mqtt
            context.health.add_check("mqtt", lambda: _true(mqtt.ready))
        await app.run(context.shutdown)


async def _true(value: bool) -> bool:
    return value


async def _housekeeping(ingest: App, stop: asyncio.Event) -> None:
    last_partitions = asyncio.get_running_loop().time()
    last_rollup: float | None = None
    while not stop.is_set():
        if last_rollup is None or asyncio.get_running_loop().time() - last_rollup >= (
            HOUSEKEEPING_EVERY_S
        ):
            last_rollup = asyncio.get_running_loop().time()
            await _telemetry_housekeeping(ingest)
        await sleep_until_stopped(stop, STATS_EVERY_S)
        stats = ingest.metrics.stats
        log.info(
            "ingest stats",
            extra={
                "received": stats.received,
                "accepted": stats.accepted,
                "readings": stats.readings,
                "duplicates": stats.duplicates,
                "quarantined": dict(stats.quarantined),
                "pending": ingest.pipeline.pending,
            },
        )
        if asyncio.get_running_loop().time() - last_partitions > DAY_S:
            with contextlib.suppress(*RETRYABLE):
                await ingest.store.ensure_partitions()
                last_partitions = asyncio.get_running_loop().time()


async def _telemetry_housekeeping(ingest: App) -> None:
    """Retention and rollups (plain PostgreSQL); a failure is logged and retried next round."""
    try:
        done = await ingest.store.housekeeping(ingest.settings.telemetry_keep_days)
    except RETRYABLE as exc:
        log.warning("telemetry housekeeping failed", extra={"error": repr(exc)})
        return
    if done:
        log.info("telemetry housekeeping", extra=done)
