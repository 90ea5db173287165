"""Delivery: webhook deliveries/s to a local receiver, and alert event -> webhook received latency.

    uv run python benchmarks/delivery.py [--deliveries 5000] [--concurrency 64]
        [--alerts 200] [--rate 20] [--baseline old.json] [--save new.json]

1. throughput: ``--deliveries`` DeliveryScheduled events are seeded in a fresh migrated database
   (local PostgreSQL, FLEETPULSE_TEST_POSTGRES_URL); the delivery worker's handler
   (``DeliveryWorker.handle``: claim, open the sealed secret, sign, POST, record
   DeliveryAttempted + DeliverySucceeded with the projection) runs them ``--concurrency`` at a
   time against ``fleetpulse-webhook-receiver`` in its own process, which verifies every
   signature. SQS is left out here, as in the evaluator benchmark: moto could not carry it.
2. latency: the whole platform on real parts: a private moto server (SNS + SQS), the dispatcher
   and the delivery worker (their ``bootstrap()``, outbox relays included) and a receiver in
   this process. ``--alerts`` AlertOpened events are appended at ``--rate`` per second; for each,
   the time from its append committing to its webhook arriving, p50/p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import uvloop
from _common import parser, percentile, report
from aiohttp import web
from pydantic import SecretStr

from fleetpulse.common.crypto import SecretBox
from fleetpulse.common.db import create_pool
from fleetpulse.common.eventstore import NewEvent, PostgresEventStore, metadata
from fleetpulse.common.projections.alerts import AlertsProjection
from fleetpulse.common.projections.catalog import CatalogProjection
from fleetpulse.common.projections.deliveries import DeliveriesProjection
from fleetpulse.common.webhooks import generate_secret
from fleetpulse.delivery_worker import bootstrap as worker_main
from fleetpulse.delivery_worker.breaker import CircuitBreakers
from fleetpulse.delivery_worker.channels.webhook import WebhookChannel
from fleetpulse.delivery_worker.service import DeliveryWorker, Done
from fleetpulse.delivery_worker.settings import Settings as WorkerSettings
from fleetpulse.delivery_worker.store import PostgresDeliveryStore
from fleetpulse.dispatcher import bootstrap as dispatcher_main
from fleetpulse.dispatcher.settings import Settings as DispatcherSettings
from fleetpulse.testing.ports import free_port, wait_for_port
from fleetpulse.testing.postgres import create_migrated_database, drop_database, unique_name

T = "bench"
KEY = SecretBox.generate_key()
SECRET = generate_secret()


async def append(store: PostgresEventStore, stream: str, type_: str, data: dict[str, Any]) -> None:
    async with store.pool.acquire() as conn, conn.transaction():
        [event] = await store.append(
            stream, [NewEvent(type_, data, metadata(actor="bench"))], tenant_id=T, conn=conn
        )
        for projection in (CatalogProjection(), AlertsProjection(), DeliveriesProjection()):
            await projection.apply(conn, event)


async def webhook_integration(store: PostgresEventStore, url: str, *, route: bool) -> str:
    integration_id = "i" + uuid.uuid4().hex[:8]
    await append(
        store,
        f"integration-{T}-{integration_id}",
        "IntegrationCreated",
        {
            "integration_id": integration_id,
            "name": "bench",
            "kind": "webhook",
            "config": {"url": url},
            "secret_sealed": SecretBox(KEY).seal(SECRET, f"{T}:{integration_id}"),
        },
    )
    if route:
        await append(
            store,
            f"route-{T}-r1",
            "RouteCreated",
            {
                "route_id": "r1",
                "name": "all",
                "integration_id": integration_id,
                "match": {},
                "group_by": [],
                "group_wait_s": 0,
                "repeat_interval_s": None,
            },
        )
    return integration_id


async def seed_deliveries(store: PostgresEventStore, integration_id: str, n: int) -> list[Any]:
    events = []
    projection = DeliveriesProjection()
    async with store.pool.acquire() as conn, conn.transaction():
        for i in range(n):
            delivery_id = f"dlv_{i:07d}"
            [event] = await store.append(
                f"delivery-{T}-{delivery_id}",
                [
                    NewEvent(
                        "DeliveryScheduled",
                        {
                            "delivery_id": delivery_id,
                            "alert_id": f"a{i}",
                            "alert_event_id": str(uuid.uuid4()),
                            "alert_event_type": "AlertOpened",
                            "integration_id": integration_id,
                            "route_id": "r1",
                            "notification_type": "firing",
                            "payload": {
                                "type": "alert.opened",
                                "timestamp": datetime.now(UTC).isoformat(),
                                "data": {
                                    "alert_id": f"a{i}",
                                    "severity": "critical",
                                    "device_id": f"d{i}",
                                    "rule_id": "r1",
                                    "status": "firing",
                                },
                            },
                        },
                    )
                ],
                tenant_id=T,
                conn=conn,
            )
            await projection.apply(conn, event)
            events.append(event)
    return events


@contextlib.contextmanager
def process(args: list[str], port: int) -> Any:
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )
    try:
        wait_for_port(port, timeout=30)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def throughput(pool: asyncpg.Pool, deliveries: int, concurrency: int) -> float:
    store = PostgresEventStore(pool)
    port = free_port()
    receiver = [
        sys.executable,
        "-m",
        "fleetpulse.webhook_receiver",
        "--secret",
        SECRET,
        "--port",
        str(port),
        "--quiet",
    ]
    with process(receiver, port):
        integration = await webhook_integration(store, f"http://127.0.0.1:{port}/hook", route=False)
        events = await seed_deliveries(store, integration, deliveries)
        channel = WebhookChannel(allow_private=True, max_connections=concurrency)
        worker = DeliveryWorker(
            PostgresDeliveryStore(store),
            {"webhook": channel},
            SecretBox(KEY),
            CircuitBreakers(max_in_flight=concurrency),
        )
        slots = asyncio.Semaphore(concurrency)

        async def one(event: Any) -> Any:
            async with slots:
                return await worker.handle(event)

        try:
            started = time.perf_counter()
            outcomes = await asyncio.gather(*(one(e) for e in events))
            elapsed = time.perf_counter() - started
        finally:
            await channel.close()
    assert all(o == Done() for o in outcomes), {type(o).__name__ for o in outcomes}
    succeeded = await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'succeeded'")
    assert succeeded == deliveries, succeeded
    return deliveries / elapsed


@contextlib.asynccontextmanager
async def arrival_receiver() -> AsyncIterator[tuple[str, dict[str, float]]]:
    arrivals: dict[str, float] = {}

    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        arrivals.setdefault(body["data"]["alert_id"], time.perf_counter())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", arrivals
    finally:
        await runner.cleanup()


async def latency(url: str, alerts: int, rate: float) -> tuple[list[float], float]:
    pool = await create_pool(url, max_size=8)
    store = PostgresEventStore(pool)
    moto_port = free_port()
    moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)]
    common: dict[str, Any] = {
        "database_url": SecretStr(url),
        "aws_endpoint_url": f"http://127.0.0.1:{moto_port}",
        "queue_prefix": "bench-",
        "auto_create": True,
        "health_port": 0,
    }
    stop = asyncio.Event()
    try:
        with process(moto, moto_port):
            async with (
                arrival_receiver() as (hook_url, arrivals),
                dispatcher_main.bootstrap(DispatcherSettings(**common)) as dispatcher,
                worker_main.bootstrap(
                    WorkerSettings(
                        **common, webhook_encryption_key=SecretStr(KEY), allow_private_webhooks=True
                    )
                ) as worker,
            ):
                await webhook_integration(store, hook_url, route=True)
                tasks = [
                    asyncio.create_task(c)
                    for c in (
                        dispatcher.consumer.run(stop),
                        dispatcher.relay.run(stop),
                        worker.consumer.run(stop),
                        worker.relay.run(stop),
                    )
                ]
                await asyncio.sleep(2.0)  # relays elected, consumers polling
                committed = await offer_alerts(store, alerts, rate)
                deadline = time.perf_counter() + 60
                while len(arrivals) < alerts and time.perf_counter() < deadline:
                    await asyncio.sleep(0.05)
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await pool.close()
    samples = [arrivals[a] - committed[a] for a in committed if a in arrivals]
    return samples, len(arrivals) / alerts


async def offer_alerts(store: PostgresEventStore, alerts: int, rate: float) -> dict[str, float]:
    committed: dict[str, float] = {}
    started = time.perf_counter()
    for i in range(alerts):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        alert_id = f"al{i:06d}"
        await append(
            store,
            f"alert-{T}-{alert_id}",
            "AlertOpened",
            {
                "alert_id": alert_id,
                "fingerprint": f"{T}:r1:d{i}",
                "rule_id": "r1",
                "rule_name": "hot",
                "device_id": f"d{i}",
                "severity": "critical",
                "opened_at": datetime.now(UTC).isoformat(),
                "metric": "temp",
                "value": 90.0,
                "threshold": 80.0,
                "reason": "temp > 80",
            },
        )
        committed[alert_id] = time.perf_counter()
    return committed


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--deliveries", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--alerts", type=int, default=200)
    p.add_argument(
        "--rate", type=float, default=20.0, help="alert events/s offered in the latency phase"
    )
    args = p.parse_args()
    names = [unique_name("fp_bench_delivery"), unique_name("fp_bench_delivery_e2e")]
    try:
        url = await create_migrated_database(names[0])
        pool = await create_pool(url, min_size=4, max_size=16)
        try:
            rate = await throughput(pool, args.deliveries, args.concurrency)
        finally:
            await pool.close()
        samples, received = await latency(
            await create_migrated_database(names[1]), args.alerts, args.rate
        )
    finally:
        for name in names:
            await drop_database(name)
    report(
        f"delivery: {args.deliveries} webhooks, concurrency {args.concurrency}; "
        f"{args.alerts} alerts at {args.rate:g}/s through moto",
        {
            "deliveries/s to a local receiver": rate,
            "alerts offered": args.alerts,
            "webhooks received (%)": received * 100,
            "alert event -> webhook received p50 ms": percentile(samples, 0.5) * 1000,
            "alert event -> webhook received p99 ms": percentile(samples, 0.99) * 1000,
        },
        args.baseline,
        args.save,
    )


if __name__ == "__main__":
    uvloop.run(main())
