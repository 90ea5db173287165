"""HTTP API latency: get-device, list-devices, list-alerts with 10,000 devices and 100,000 events.

    uv run python benchmarks/api.py [--rate 200] [--seconds 20] [--baseline old.json] [--save new.json]

Loads a fresh database on the local PostgreSQL (FLEETPULSE_TEST_POSTGRES_URL): 10,000 devices
(DeviceRegistered + DeviceCredentialsIssued each) and 42,000 alerts (AlertOpened + AlertResolved
for 38,000 of them, 4,000 still open), i.e. 100,000 events with their projection rows. Starts the
API in its own process (uvicorn on uvloop, the real wiring, a fake credentials backend), serves a
JWKS for its tokens, then for each endpoint drives an open-loop load of ``--rate`` requests/s
(requests are sent on schedule whether or not earlier ones finished, so queueing shows in the
latency) and a closed-loop run with 16 concurrent clients for the saturation throughput.
Target: p99 under 50 ms at 200 requests/s.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import uvloop
from _common import parser, percentile, report
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from fleetpulse.common.crypto import SecretBox
from fleetpulse.common.db.pool import connect
from fleetpulse.testing.ports import free_port, wait_for_port
from fleetpulse.testing.postgres import create_migrated_database, drop_database, unique_name

TENANT = "bench"
DEVICES = 10_000
ALERTS = 42_000
RESOLVED = 38_000
KID = "bench-key"
REALM = "/realms/fleetpulse"


# --- data --------------------------------------------------------------------------------------

LOAD_SQL = f"""
INSERT INTO tenants VALUES ('{TENANT}', 'Bench', now(), 1);
INSERT INTO events (event_id, stream_id, version, type, tenant_id, data, metadata)
SELECT gen_random_uuid(), 'device-{TENANT}-d' || lpad(i::text, 5, '0'), v,
       CASE v WHEN 1 THEN 'DeviceRegistered' ELSE 'DeviceCredentialsIssued' END, '{TENANT}',
       CASE v WHEN 1 THEN jsonb_build_object('device_id', 'd' || lpad(i::text, 5, '0'),
                                             'name', 'device ' || i, 'tags',
                                             jsonb_build_object('site', 's' || (i % 20)),
                                             'registered_at', now())
              ELSE jsonb_build_object('device_id', 'd' || lpad(i::text, 5, '0'),
                                      'username', '{TENANT}.d' || lpad(i::text, 5, '0'),
                                      'client_id', '{TENANT}.d' || lpad(i::text, 5, '0'),
                                      'credentials_version', 1) END,
       '{{"actor": "bench"}}'::jsonb
FROM generate_series(0, {DEVICES - 1}) i, generate_series(1, 2) v ORDER BY i, v;
INSERT INTO devices (tenant_id, device_id, name, tags, credentials_version, registered_at,
                     updated_at, version)
SELECT '{TENANT}', 'd' || lpad(i::text, 5, '0'), 'device ' || i,
       jsonb_build_object('site', 's' || (i % 20)), 1, now(), now(), 2
FROM generate_series(0, {DEVICES - 1}) i;
INSERT INTO events (event_id, stream_id, version, type, tenant_id, data, metadata)
SELECT gen_random_uuid(), 'alert-{TENANT}-a' || i, v,
       CASE v WHEN 1 THEN 'AlertOpened' ELSE 'AlertResolved' END, '{TENANT}',
       jsonb_build_object('alert_id', 'a' || i), '{{"actor": "bench"}}'::jsonb
FROM generate_series(0, {ALERTS - 1}) i, generate_series(1, 2) v
WHERE v = 1 OR i < {RESOLVED} ORDER BY i, v;
INSERT INTO alerts (tenant_id, alert_id, fingerprint, rule_id, device_id, severity, status,
                    opened_at, resolved_at, version)
SELECT '{TENANT}', 'a' || i, '{TENANT}:r' || (i / {DEVICES}) || ':d' || lpad((i % {DEVICES})::text, 5, '0'),
       'r' || (i / {DEVICES}), 'd' || lpad((i % {DEVICES})::text, 5, '0'), 'major',
       CASE WHEN i < {RESOLVED} THEN 'resolved' ELSE 'open' END,
       now() - make_interval(secs => {ALERTS} - i),
       CASE WHEN i < {RESOLVED} THEN now() ELSE NULL END,
       CASE WHEN i < {RESOLVED} THEN 2 ELSE 1 END
FROM generate_series(0, {ALERTS - 1}) i;
ANALYZE;
"""  # noqa: S608 - built from the module constants above


async def load(url: str) -> int:
    conn = await connect(url)
    try:
        await conn.execute(LOAD_SQL)
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


# --- identity ----------------------------------------------------------------------------------


class Issuer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{REALM}"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": "fleetpulse-api",
            "sub": "bench",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tenant_id": TENANT,
            "realm_access": {"roles": ["viewer"]},
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})

    async def serve(self) -> web.AppRunner:
        jwk = {
            **jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True),
            "kid": KID,
            "use": "sig",
            "alg": "RS256",
        }

        async def jwks(_: web.Request) -> web.Response:
            return web.json_response({"keys": [jwk]})

        app = web.Application()
        app.router.add_get(f"{REALM}/protocol/openid-connect/certs", jwks)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


# --- the API in its own process ----------------------------------------------------------------


def start_api(database_url: str, issuer: Issuer, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FLEETPULSE_DATABASE_URL": database_url,
        "FLEETPULSE_OIDC_ISSUER": issuer.url,
        "FLEETPULSE_OIDC_JWKS_URL": f"{issuer.url}/protocol/openid-connect/certs",
        "FLEETPULSE_WEBHOOK_ENCRYPTION_KEY": SecretBox.generate_key(),
        "FLEETPULSE_API_HOST": "127.0.0.1",
        "FLEETPULSE_API_PORT": str(port),
        "FLEETPULSE_HEALTH_PORT": "0",
        "FLEETPULSE_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, __file__, "--serve"], env=env)


async def serve_api() -> None:
    """The server side: the real wiring with the in-memory credentials fake."""
    import uvicorn

    from fleetpulse.common.settings import load_settings
    from fleetpulse.provision_api.app import create_app
    from fleetpulse.provision_api.bootstrap import bootstrap, uvicorn_config
    from fleetpulse.provision_api.credentials import InMemoryCredentialIssuer
    from fleetpulse.provision_api.settings import Settings

    settings = await load_settings(Settings)
    async with bootstrap(settings, issuer=InMemoryCredentialIssuer()) as booted:
        await uvicorn.Server(uvicorn_config(create_app(booted.services), settings)).serve()


# --- load --------------------------------------------------------------------------------------

Client = aiohttp.ClientSession
Request = Callable[[Client], Awaitable[int]]


async def _get(client: Client, path: str, params: dict[str, Any] | None = None) -> int:
    """GET and read the whole body (the latency a caller sees); returns the status."""
    async with client.get(path, params=params) as response:
        await response.read()
        return response.status


def endpoints() -> dict[str, Request]:
    def get_device(c: Client) -> Awaitable[int]:
        return _get(c, f"/api/v1/devices/d{random.randrange(DEVICES):05d}")

    def list_devices(c: Client) -> Awaitable[int]:
        return _get(c, "/api/v1/devices", {"limit": 50, "tag": f"site:s{random.randrange(20)}"})

    def list_alerts(c: Client) -> Awaitable[int]:
        return _get(
            c, "/api/v1/alerts", {"limit": 50, "status": random.choice(["open", "resolved"])}
        )

    return {"get-device": get_device, "list-devices": list_devices, "list-alerts": list_alerts}


async def _timed(
    client: Client, request: Request, latencies: list[float], errors: list[int]
) -> None:
    started = time.perf_counter()
    status = await request(client)
    latencies.append((time.perf_counter() - started) * 1000)
    if status != 200:
        errors.append(status)


async def open_loop(
    client: Client, request: Request, rate: float, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[int] = []
    tasks = []
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_timed(client, request, latencies, errors)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50": percentile(sorted(latencies), 0.5),
        "p99": percentile(sorted(latencies), 0.99),
        "errors": float(len(errors)),
    }


async def closed_loop(
    client: Client, request: Request, seconds: float, concurrency: int = 16
) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            if await request(client) != 200:
                raise RuntimeError("request failed")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def main(rate: float, seconds: float) -> dict[str, float]:
    name = unique_name("fp_bench_api")
    url = await create_migrated_database(name)
    issuer = Issuer()
    runner = await issuer.serve()
    port = free_port()
    process = None
    try:
        events = await load(url)
        print(f"loaded {DEVICES:,} devices, {ALERTS:,} alerts, {events:,} events")
        process = start_api(url, issuer, port)
        await asyncio.to_thread(wait_for_port, port, "127.0.0.1", 60)
        figures: dict[str, float] = {}
        async with aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{port}",
            connector=aiohttp.TCPConnector(limit=64),
            headers={"Authorization": f"Bearer {issuer.token()}"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as client:
            for label, request in endpoints().items():
                await open_loop(client, request, rate, 2)  # warm up pools and caches
                result = await open_loop(client, request, rate, seconds)
                figures[f"{label} achieved req/s @ {rate:g}/s"] = result["rps"]
                figures[f"{label} p50 ms"] = result["p50"]
                figures[f"{label} p99 ms"] = result["p99"]
                figures[f"{label} non-200"] = result["errors"]
                figures[f"{label} max req/s (16 clients)"] = await closed_loop(
                    client, request, min(seconds, 10)
                )
        return figures
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        await runner.cleanup()
        await drop_database(name)


if __name__ == "__main__":
    if "--serve" in sys.argv:
        uvloop.run(serve_api())
        sys.exit(0)
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=200.0, help="open-loop requests per second")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per endpoint")
    args = p.parse_args()
    results = uvloop.run(main(args.rate, args.seconds))
    report(f"provision_api ({uuid.uuid4().hex[:6]})", results, args.baseline, args.save)
