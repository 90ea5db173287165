"""``fleetpulse-provision-api``: the HTTP API on uvicorn (uvloop), wired in :func:`bootstrap`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import uvicorn
from fastapi import FastAPI

from fleetpulse.common.aws import aws_client
from fleetpulse.common.crypto import SecretBox
from fleetpulse.common.db import TRANSIENT_ERRORS, create_pool
from fleetpulse.common.errors import ConfigurationError
from fleetpulse.common.eventstore import EventNotifications, PostgresEventStore, ProjectionRunner
from fleetpulse.common.messaging import (
    OutboxRelay,
    SnsPublisher,
    declare_topic,
    queue_names,
    topic_arn,
)
from fleetpulse.common.mqtt import MqttEndpoint
from fleetpulse.common.projections.alerts import AlertsProjection
from fleetpulse.common.projections.catalog import CatalogProjection
from fleetpulse.common.runtime import ServiceContext
from fleetpulse.provision_api.api.deps import Services
from fleetpulse.provision_api.app import EdgeLimits, create_app
from fleetpulse.provision_api.auth import JwksCache, TokenVerifier, http_fetch
from fleetpulse.provision_api.credentials import CredentialIssuer
from fleetpulse.provision_api.credentials.iot_core import IotCoreCredentialIssuer
from fleetpulse.provision_api.credentials.mosquitto import DynsecAdmin, MosquittoCredentialIssuer
from fleetpulse.provision_api.destinations import DestinationPolicy
from fleetpulse.provision_api.http_protocol import BoundedHttpToolsProtocol
from fleetpulse.provision_api.queries import Connectivity, Queries
from fleetpulse.provision_api.ratelimit import PostgresRateLimiter
from fleetpulse.provision_api.service import Commands
from fleetpulse.provision_api.settings import Settings
from fleetpulse.provision_api.writer import CommandWriter

log = logging.getLogger(__name__)


@asynccontextmanager
async def credential_issuer(settings: Settings) -> AsyncIterator[CredentialIssuer]:
    if settings.credentials_backend == "iot-core":
        yield IotCoreCredentialIssuer(
            lambda: aws_client("iot", settings.aws), policy_name=settings.iot_policy_name
        )
        return
    if settings.mqtt_url is None:
        raise ConfigurationError(
            "FLEETPULSE_MQTT_URL", "required when CREDENTIALS_BACKEND=mosquitto"
        )
    admin = DynsecAdmin(MqttEndpoint.parse(settings.mqtt_url))
    await admin.start()
    try:
        yield MosquittoCredentialIssuer(admin)
    finally:
        await admin.close()


@asynccontextmanager
async def bootstrap(
    settings: Settings, *, issuer: CredentialIssuer | None = None
) -> AsyncIterator[tuple[Services, PostgresEventStore]]:
    """Wire every adapter; ``issuer`` replaces the configured credentials backend (tests)."""
    pool = await create_pool(
        settings.database_url,
        min_size=2,
        max_size=settings.db_pool_size,
        application_name="fleetpulse-provision-api",
    )
    try:
        async with httpx.AsyncClient(timeout=5.0) as http, contextlib.AsyncExitStack() as stack:
            if issuer is None:
                issuer = await stack.enter_async_context(credential_issuer(settings))
            store = PostgresEventStore(pool)
            queries = Queries(pool)
            queries = Queries(
                pool,
                timescale=await queries.timescale(),
                connectivity=Connectivity(settings.device_online_s, settings.device_stale_s),
            )
            writer = CommandWriter(store, [CatalogProjection(), AlertsProjection()])
            keys = JwksCache(
                http_fetch(http),
                issuer=settings.oidc_issuer,
                jwks_url=settings.oidc_jwks_url,
                ttl_s=settings.jwks_cache_s,
                min_refresh_s=settings.jwks_min_refresh_s,
            )
            services = Services(
                commands=Commands(
                    writer,
                    issuer,
                    SecretBox(settings.webhook_encryption_key.get_secret_value()),
                    destinations=DestinationPolicy(
                        allow_private_webhooks=settings.allow_private_webhooks,
                        platform_prefix=settings.queue_prefix,
                    ),
                ),
                queries=queries,
                verifier=TokenVerifier(
                    keys, issuer=settings.oidc_issuer, audience=settings.oidc_audience
                ),
                provision_limiter=PostgresRateLimiter(
                    pool, settings.provision_rate_per_minute, scope="provision"
                ),
                mqtt_host=settings.mqtt_public_host,
                mqtt_port=settings.mqtt_public_port,
                readiness=lambda: _failing(pool),
                stream_poll_s=settings.stream_poll_s,
            )
            yield services, store
    finally:
        await pool.close()


async def _failing(pool: asyncpg.Pool) -> list[str]:
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout=2.0)
    except TRANSIENT_ERRORS:
        return ["database"]
    return []


def edge_limits(settings: Settings) -> EdgeLimits:
    return EdgeLimits(
        forwarded_allow_ips=settings.forwarded_allow_ips,
        max_body_bytes=settings.max_body_bytes,
        max_in_flight_per_source=settings.max_in_flight_per_source,
    )


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGTERM and tells us to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_config(app: object, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.api_host,
        port=settings.api_port,
        loop="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        # The client address comes from edge.ForwardedSource (right-most untrusted hop), not from
        # uvicorn, which with "*" takes the left-most, client-written X-Forwarded-For entry.
        proxy_headers=False,
        # httptools, with the request line and headers bounded (it would buffer any size).
        http=BoundedHttpToolsProtocol,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_graceful_shutdown=20,
    )


def instrumented(app: FastAPI, settings: Settings) -> FastAPI:
    """Server spans for every request (the contrib FastAPI instrumentation, which continues an
    incoming ``traceparent``) when traces are exported; health probes are left out."""
    if settings.otlp_endpoint or settings.traces_file:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz")
    return app


async def serve(context: ServiceContext[Settings]) -> None:
    settings = context.settings
    async with bootstrap(settings) as (services, store):
        context.health.add_check("database", lambda: _ready(services))
        app = instrumented(
            create_app(services, edge_limits(settings), cors_origins=settings.cors_origin_list),
            settings,
        )
        server = ApiServer(uvicorn_config(app, settings))
        async with (
            EventNotifications(settings.database_url) as notifications,
            outbox_relay(settings, store) as relay,
        ):
            background = [
                ProjectionRunner(store, CatalogProjection()).run(context.shutdown, notifications)
            ]
            if relay is not None:
                background.append(relay.run(context.shutdown))
            workers = [asyncio.create_task(job) for job in background]
            serving = asyncio.create_task(server.serve())
            await _until(context.shutdown, serving)
            services.stopping.set()
            server.should_exit = True
            await serving
            await asyncio.gather(*workers)


@asynccontextmanager
async def outbox_relay(
    settings: Settings, store: PostgresEventStore
) -> AsyncIterator[OutboxRelay | None]:
    """The leader-elected relay that publishes this service's (and every) committed event to SNS."""
    if not settings.outbox_relay:
        yield None
        return
    async with aws_client("sns", settings.aws) as sns:
        name = queue_names(settings.queue_prefix).domain_events
        arn = await (declare_topic(sns, name) if settings.auto_create else topic_arn(sns, name))
        yield OutboxRelay(store, SnsPublisher(sns, arn), dsn=settings.database_url)


async def _ready(services: Services) -> bool:
    return not await services.readiness()


async def _until(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done() and not stop.is_set():
        stop.set()
        task.result()
