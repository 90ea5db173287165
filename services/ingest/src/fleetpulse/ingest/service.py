"""Wiring: ``bootstrap()`` builds the adapters from settings; ``serve()`` runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from fleetpulse.common.aws import aws_client
from fleetpulse.common.db import create_pool
from fleetpulse.common.errors import ConfigurationError
from fleetpulse.common.mqtt import MqttEndpoint
from fleetpulse.common.runtime import ServiceContext
from fleetpulse.ingest.batch import QuarantineThrottle
from fleetpulse.ingest.domain import RateLimiter, TimeWindow, Validator
from fleetpulse.ingest.forwarder import DiscardingForwarder, ReadingsForwarder, SqsReadingsForwarder
from fleetpulse.ingest.metrics import IngestMetrics
from fleetpulse.ingest.mqtt_source import MqttSource
from fleetpulse.ingest.pipeline import Pipeline, PipelineConfig
from fleetpulse.ingest.registry import DeviceRegistry
from fleetpulse.ingest.settings import Settings
from fleetpulse.ingest.sqs_source import SqsSource
from fleetpulse.ingest.store import RETRYABLE, PostgresTelemetryStore

log = logging.getLogger(__name__)
DAY_S = 86_400.0
STATS_EVERY_S = 10.0
HOUSEKEEPING_EVERY_S = 300.0


@dataclass(slots=True)
class Ingest:
    settings: Settings
    pool: asyncpg.Pool
    store: PostgresTelemetryStore
    registry: DeviceRegistry
    pipeline: Pipeline
    metrics: IngestMetrics
    mqtt: MqttSource | None
    sqs: SqsSource | None


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
async def bootstrap(settings: Settings) -> AsyncIterator[Ingest]:
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
            url = await _queue_url(sqs, f"{settings.queue_prefix}ingest", settings.auto_create)
            sqs_source = SqsSource(sqs, url, pipeline, wait_s=settings.sqs_wait_s)
        yield Ingest(settings, pool, store, registry, pipeline, metrics, mqtt, sqs_source)


async def _sqs_client(settings: Settings, stack: AsyncExitStack) -> Any:
    if not settings.forward_to_evaluator and "sqs" not in settings.source_names:
        return None
    return await stack.enter_async_context(aws_client("sqs", settings.aws))


async def _forwarder(settings: Settings, sqs: Any) -> ReadingsForwarder:
    if not settings.forward_to_evaluator:
        return DiscardingForwarder()
    url = await _queue_url(sqs, f"{settings.queue_prefix}evaluator", settings.auto_create)
    return SqsReadingsForwarder(sqs, url)


async def _queue_url(sqs: Any, name: str, create: bool) -> str:
    if create:
        return str((await sqs.create_queue(QueueName=name))["QueueUrl"])
    return str((await sqs.get_queue_url(QueueName=name))["QueueUrl"])


async def serve(context: ServiceContext[Settings]) -> None:
    async with bootstrap(context.settings) as ingest:
        await ingest.store.ensure_partitions()
        context.health.add_check("db", ingest.store.ping)
        if ingest.mqtt is not None:
            mqtt = ingest.mqtt
            context.health.add_check("mqtt", lambda: _true(mqtt.ready))
        await run_ingest(ingest, context.shutdown)


async def _true(value: bool) -> bool:
    return value


async def run_ingest(ingest: Ingest, stop: asyncio.Event) -> None:
    """Run sources, pipeline and housekeeping until ``stop``; drain, acknowledge, return."""
    drained = asyncio.Event()
    background = [
        asyncio.create_task(ingest.registry.follow(stop, ingest.settings.registry_poll_ms / 1000)),
        asyncio.create_task(_housekeeping(ingest, stop)),
    ]
    sources = []
    if ingest.mqtt is not None:
        sources.append(asyncio.create_task(ingest.mqtt.run(stop, drained)))
    if ingest.sqs is not None:
        sources.append(asyncio.create_task(ingest.sqs.run(stop)))
    try:
        await ingest.pipeline.run(stop)
    finally:
        drained.set()
        await asyncio.gather(*sources, *background, return_exceptions=True)


async def _housekeeping(ingest: Ingest, stop: asyncio.Event) -> None:
    last_partitions = asyncio.get_running_loop().time()
    last_rollup: float | None = None
    while not stop.is_set():
        if last_rollup is None or asyncio.get_running_loop().time() - last_rollup >= (
            HOUSEKEEPING_EVERY_S
        ):
            last_rollup = asyncio.get_running_loop().time()
            await _telemetry_housekeeping(ingest)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATS_EVERY_S)
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


async def _telemetry_housekeeping(ingest: Ingest) -> None:
    """Retention and rollups (plain PostgreSQL); a failure is logged and retried next round."""
    try:
        done = await ingest.store.housekeeping(ingest.settings.telemetry_keep_days)
    except RETRYABLE as exc:
        log.warning("telemetry housekeeping failed", extra={"error": repr(exc)})
        return
    if done:
        log.info("telemetry housekeeping", extra=done)
