"""``fleetpulse-provision-api``: the HTTP API on uvicorn (uvloop), wired in :func:`bootstrap`.

:meth:`App.run` serves HTTP and runs the catalog projection and the outbox relay beside it, as
one task group (the first to fail fails the service).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import httpx
import uvicorn
from fastapi import FastAPI

from fleetpulse.common.aws import aws_client
from fleetpulse.common.crypto import SecretBox
from fleetpulse.common.db import create_pool, translated
from fleetpulse.common.errors import ConfigurationError, TransientError
from fleetpulse.common.eventstore import EventNotifications, PostgresEventStore, ProjectionRunner
from fleetpulse.common.health import database_ready
from fleetpulse.common.messaging import (
    OutboxRelay,
    SnsPublisher,
    declare_topic,
    guard_publishes,
    queue_names,
    topic_arn,
)
from fleetpulse.common.mqtt import MqttEndpoint
from fleetpulse.common.projections.alerts import AlertsProjection
from fleetpulse.common.projections.catalog import CatalogProjection
from fleetpulse.common.runtime import ServiceContext, run_loops
from fleetpulse.provision_api.api.deps import Services
from fleetpulse.provision_api.auth import JwksCache, TokenVerifier, http_fetch
from fleetpulse.provision_api.credentials import CredentialIssuer
from fleetpulse.provision_api.credentials.iot_core import IotCoreCredentialIssuer
from fleetpulse.provision_api.credentials.mosquitto import DynsecAdmin, MosquittoCredentialIssuer
from fleetpulse.provision_api.destinations import DestinationPolicy
from fleetpulse.provision_api.entrypoints import EdgeLimits, create_app
from fleetpulse.provision_api.http_protocol import BoundedHttpToolsProtocol
from fleetpulse.provision_api.queries import Connectivity, Queries
from fleetpulse.provision_api.ratelimit import PostgresRateLimiter
from fleetpulse.provision_api.service import Commands
from fleetpulse.provision_api.settings import Settings
from fleetpulse.provision_api.writer import CommandWriter

log = logging.getLogger(__name__)
NAME = "fleetpulse-provision-api"


@dataclass(slots=True)
class App:
    settings: Settings
    services: Services
    store: PostgresEventStore

    async def run(self, stop: asyncio.Event) -> None:
        """Serve HTTP, follow the catalog and relay until ``stop``; then let requests finish."""
        settings = self.settings
        asgi = instrumented(
            create_app(
                self.services, edge_limits(settings), cors_origins=settings.cors_origin_list
            ),
            settings,
        )
        server = ApiServer(uvicorn_config(asgi, settings))
        async with (
            EventNotifications(settings.database_url) as notifications,
            outbox_relay(settings, self.store) as relay,
        ):
            loops = [
                serve_http(server, stop, self.services.stopping),
                ProjectionRunner(self.store, CatalogProjection()).run(stop, notifications),
            ]
            if relay is not None:
                loops.append(relay.run(stop))
            await run_loops(loops)


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
) -> AsyncIterator[App]:
    """Wire every adapter; ``issuer`` replaces the configured credentials backend (tests)."""
    pool = await create_pool(
        settings.database_url,
        min_size=2,
        max_size=settings.db_pool_size,
        application_name=NAME,
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
            yield App(settings, services, store)
    finally:
        await pool.close()


async def _failing(pool: asyncpg.Pool) -> list[str]:
    try:
        with translated:
            ready = await asyncio.wait_for(database_ready(pool), timeout=2.0)
    except TransientError:
        return ["database"]
    return [] if ready else ["database"]


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
    async with bootstrap(context.settings) as app:
        services = app.services
        context.health.add_check("database", lambda: _ready(services))
        await app.run(context.shutdown)


async def serve_http(server: uvicorn.Server, stop: asyncio.Event, stopping: asyncio.Event) -> None:
    """Serve until ``stop``, then tell streams (``stopping``) and uvicorn to finish; a server
    that ends by itself sets ``stop`` and fails with its error."""
    serving = asyncio.create_task(server.serve())
    await _until(stop, serving)
    stopping.set()
    server.should_exit = True
    await serving


@asynccontextmanager
async def outbox_relay(
    settings: Settings, store: PostgresEventStore
) -> AsyncIterator[OutboxRelay | None]:
    """The leader-elected relay that publishes this service's (and every) committed event to SNS."""
    if not settings.outbox_relay:
        yield None
        return
    prefix, auto_create = settings.queue_prefix, settings.auto_create
    async with aws_client("sns", settings.aws) as sns, aws_client("sqs", settings.aws) as sqs:
        name = queue_names(prefix).domain_events
        arn = await (declare_topic(sns, name) if auto_create else topic_arn(sns, name))
        guard = guard_publishes(sqs, sns, prefix, arn, auto_create=auto_create)
        publisher = SnsPublisher(sns, arn, before_publish=guard)
        yield OutboxRelay(store, publisher, dsn=settings.database_url)


async def _ready(services: Services) -> bool:
    return not await services.readiness()


async def _until(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done() and not stop.is_set():
        stop.set()
        task.result()
