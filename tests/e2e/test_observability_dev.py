"""One trace per alert, and Grafana's panels, on the real dev stack (issue 14, sections 2 and 4).

One private dev stack for the module whose services append every finished span to a file
(``fleetpulse-dev --traces-file``, the ``FLEETPULSE_TRACES_FILE`` setting). Through the API the
test makes a tenant, a device, a threshold rule and two webhook integrations (one answering 204,
one always 500) with routes, then publishes one breach as the device, one malformed message, and
lets the simulator stream a few seconds of telemetry into the same tenant.

- trace: the ``AlertOpened`` event's ``traceparent`` names one trace id; the ingest batch span,
  dispatcher and delivery-worker spans and the ``traceparent`` header of the webhook request the
  receiver got all carry it.
- Grafana: every panel of every provisioned dashboard, rendered as Grafana's PostgreSQL data source
  renders it (``fleetpulse.testing.grafana``), runs against the stack's database and returns rows,
  with the tenant variable on All and on the one tenant.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from aiohttp import web

from fleetpulse.dev_oidc import TokenRequest, mint_token
from fleetpulse.dev_oidc.keys import load_key
from fleetpulse.devstack.services import AUDIENCE
from fleetpulse.devstack.stack import DevStack, private_stack
from fleetpulse.simulator.fleet import API, DeviceCredentials, bearer, check, register
from fleetpulse.testing import grafana

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
BIN = Path(sys.executable).parent
COMPOSE = Path(__file__).resolve().parents[2] / "compose"
STEP_TIMEOUT_S = 60.0

# TimescaleDB's time_bucket(interval, timestamptz) on plain PostgreSQL (the test database): what
# Grafana's $__timeGroup expands to when the data source says timescaledb: true. date_bin with
# TimescaleDB's default origin (Monday 2000-01-03) buckets exactly as time_bucket does.
TIME_BUCKET = """
CREATE OR REPLACE FUNCTION time_bucket(bucket_width interval, ts timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS
$$ SELECT date_bin(bucket_width, ts, timestamptz '2000-01-03 00:00:00+00') $$
"""


@dataclass
class Receiver:
    """A real HTTP receiver: /ok answers 204, /fail 500; every request is kept with headers."""

    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/ok", self._ok)
        app.router.add_post("/fail", self._fail)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _keep(self, request: web.Request) -> None:
        body = json.loads(await request.read())
        self.requests.append(
            (request.path, {k.lower(): v for k, v in request.headers.items()}, body)
        )

    async def _ok(self, request: web.Request) -> web.Response:
        await self._keep(request)
        return web.Response(status=204)

    async def _fail(self, request: web.Request) -> web.Response:
        await self._keep(request)
        return web.Response(status=500)


@dataclass
class World:
    stack: DevStack
    traces: Path
    database_url: str
    tenant: str
    alert_event: asyncpg.Record
    receiver: Receiver


def say(_: str) -> None:
    pass


async def until(what: str, probe: Any, timeout_s: float = STEP_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def publish(device: DeviceCredentials, payload: bytes) -> None:
    async with device.mqtt_client() as client:
        await client.publish(device.topic("telemetry"), payload, qos=1)


def reading(temp_c: float, seq: int) -> bytes:
    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"ts": ts, "seq": seq, "metrics": {"temperature_c": temp_c}}).encode()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevStack, Path]]:
    root = tmp_path_factory.mktemp("observability")
    traces = root / "spans.jsonl"
    database = f"fleetpulse_obs_{uuid.uuid4().hex[:8]}"
    with private_stack(SERVER, database, root, say, traces_file=traces) as stack:
        yield stack, traces


@pytest.fixture(scope="module")
async def world(running: tuple[DevStack, Path]) -> AsyncIterator[World]:
    stack, traces = running
    config = stack.config
    key = load_key(config.dev_dir / "oidc-key.pem")

    def token(roles: tuple[str, ...], tenant: str | None = None) -> str:
        request = TokenRequest(roles=roles, tenant=tenant, subject="observability-test")
        return str(mint_token(key, request, issuer=config.issuer, audience=AUDIENCE))

    tenant = f"obs-{uuid.uuid4().hex[:6]}"
    receiver = Receiver()
    await receiver.start()
    db = await asyncpg.connect(config.database_url)
    try:
        async with httpx.AsyncClient(base_url=config.api_url, timeout=30.0) as api:
            body = {"tenant_id": tenant, "name": "observability test"}
            admin = bearer(token(("platform-admin",)))
            check(await api.post(f"{API}/tenants", json=body, headers=admin), 201)
            auth = bearer(token(("tenant-admin", "operator"), tenant))
            device = await register(api, token(("tenant-admin",), tenant), tenant, "obs-1", {})
            rule = {
                "name": "too hot",
                "kind": "threshold",
                "metric": "temperature_c",
                "operator": "gt",
                "threshold": 50.0,
                "duration_s": 0,
                "severity": "critical",
            }
            check(await api.post(f"{API}/rules", json=rule, headers=auth), 201)
            for name in ("ok", "fail"):
                hook = {"name": f"receiver {name}", "kind": "webhook", "url": receiver.url(name)}
                created = check(await api.post(f"{API}/integrations", json=hook, headers=auth), 201)
                route = {
                    "name": f"everything to {name}",
                    "integration_id": created.json()["integration_id"],
                    "match": {},
                }
                check(await api.post(f"{API}/routes", json=route, headers=auth), 201)
        await asyncio.sleep(3.0)  # the evaluator's catalog refresh
        await publish(device, reading(20.0, 1))
        seq = 2

        async def opened() -> asyncpg.Record | None:
            nonlocal seq
            row = await db.fetchrow(
                "SELECT * FROM events WHERE tenant_id = $1 AND type = 'AlertOpened'", tenant
            )
            if row is None:
                seq += 1
                await publish(device, reading(80.0, seq))
                await asyncio.sleep(1.0)
            return row

        alert_event = await until("AlertOpened", opened)
        await until(
            "the alert.opened webhook",
            lambda: _async(any(path == "/ok" for path, _, _ in receiver.requests)),
        )
        await publish(device, b"{not json")
        simulate(stack, tenant)
        await until(
            "the malformed message quarantined",
            lambda: db.fetchval("SELECT count(*) FROM quarantine WHERE tenant_id = $1", tenant),
        )
        yield World(stack, traces, config.database_url, tenant, alert_event, receiver)
    finally:
        await db.close()
        if receiver.runner is not None:
            await receiver.runner.cleanup()


async def _async(value: Any) -> Any:
    return value


def simulate(stack: DevStack, tenant: str) -> None:
    """A short simulator run into the tenant (its tokens minted with the stack's dev key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}
    env["FLEETPULSE_DEV_DIR"] = str(stack.config.dev_dir)
    result = subprocess.run(
        [
            BIN / "fleetpulse-simulate",
            f"--api-url={stack.config.api_url}",
            f"--tenant={tenant}",
            "--no-create-tenant",
            "--devices=3",
            "--rate=9",
            "--duration=8",
            "--seed=14",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# one trace per alert ------------------------------------------------------------------------------


def spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trace_of(span: dict[str, Any]) -> str:
    return str(span["context"]["trace_id"]).removeprefix("0x")


def service_of(span: dict[str, Any]) -> str:
    return str(span["resource"]["attributes"].get("service.name", ""))


async def test_one_breach_is_one_trace_from_ingest_to_the_webhook(world: World) -> None:
    traceparent = json.loads(world.alert_event["metadata"]).get("traceparent")
    assert traceparent, f"AlertOpened has no traceparent: {world.alert_event['metadata']}"
    trace_id = traceparent.split("-")[1]

    def services_in_trace() -> set[str]:
        return {service_of(s) for s in spans(world.traces) if trace_of(s) == trace_id}

    wanted = {"fleetpulse-ingest", "fleetpulse-evaluator", "fleetpulse-dispatcher"}
    wanted.add("fleetpulse-delivery-worker")
    try:
        await until(
            "every service's span in the trace", lambda: _async(wanted <= services_in_trace()), 30
        )
    except AssertionError:
        seen = sorted(
            {(service_of(s), s["name"]) for s in spans(world.traces) if trace_of(s) == trace_id}
        )
        raise AssertionError(f"trace {trace_id} has only {seen}") from None
    in_trace = [s for s in spans(world.traces) if trace_of(s) == trace_id]
    names = {(service_of(s), s["name"]) for s in in_trace}
    assert ("fleetpulse-ingest", "ingest.batch") in names
    batch = next(s for s in in_trace if s["name"] == "ingest.batch")
    assert batch["parent_id"] is None, "the MQTT hop carries no context: the trace starts here"
    # the webhook request itself carried the trace
    headers = [
        h
        for path, h, body in world.receiver.requests
        if path == "/ok" and body.get("type") == "alert.opened"
    ]
    assert headers, world.receiver.requests
    assert headers[0].get("traceparent", "").split("-")[1:2] == [trace_id], headers[0]
    # positive control: other traces exist (API requests, the simulator's batches), so the
    # match above is not everything matching everything
    api = [s for s in spans(world.traces) if service_of(s) == "fleetpulse-provision-api"]
    assert api, "the API is not instrumented"
    assert {trace_of(s) for s in api} - {trace_id}


# Grafana ------------------------------------------------------------------------------------------


def dashboards() -> list[tuple[str, dict[str, Any]]]:
    return [
        (p.stem, json.loads(p.read_text()))
        for p in sorted((COMPOSE / "grafana" / "dashboards").glob("*.json"))
    ]


def datasource_is_timescale() -> bool:
    path = COMPOSE / "grafana" / "provisioning" / "datasources" / "timescaledb.yml"
    source = yaml.safe_load(path.read_text())["datasources"][0]
    return bool(source["jsonData"].get("timescaledb"))


async def options_of(
    conn: asyncpg.Connection,
    variables: list[grafana.Variable],
    selection: grafana.Selection,
    time_range: grafana.TimeRange,
    timescaledb: bool,
) -> None:
    """Run each variable's query in order (later ones may use earlier ones), as Grafana does."""
    for variable in variables:
        sql = grafana.render(
            variable.query, variables, selection, time_range, timescaledb=timescaledb
        )
        rows = await conn.fetch(sql)
        selection.options[variable.name] = [str(r[0]) for r in rows]
        assert rows, f"variable {variable.name} has no options: {sql}"
        if variable.name not in selection.values:
            selection.values[variable.name] = (
                grafana.ALL if variable.include_all else selection.options[variable.name][0]
            )


@pytest.mark.parametrize(
    "timescaledb", [datasource_is_timescale(), False], ids=["as-provisioned", "plain-macros"]
)
@pytest.mark.parametrize("tenant_choice", ["all", "one", "two"])
async def test_every_grafana_panel_returns_rows(
    world: World, tenant_choice: str, timescaledb: bool
) -> None:
    conn = await asyncpg.connect(world.database_url)
    try:
        await conn.execute(TIME_BUCKET)
        now = datetime.now(UTC)
        time_range = grafana.TimeRange(now - timedelta(hours=1), now + timedelta(minutes=1))
        failures: list[str] = []
        ran = 0
        for name, board in dashboards():
            variables = grafana.variables(board)
            chosen: dict[str, str | list[str]] = {}
            if any(v.name == "tenant" for v in variables):
                chosen["tenant"] = {
                    "all": grafana.ALL,
                    "one": [world.tenant],
                    "two": [world.tenant, "o'neill"],  # multi-select, a quote to escape
                }[tenant_choice]
            selection = grafana.Selection(values=chosen)
            await options_of(conn, variables, selection, time_range, timescaledb)
            for panel in grafana.panels(board):
                sql = grafana.render(
                    panel.sql, variables, selection, time_range, timescaledb=timescaledb
                )
                ran += 1
                try:
                    rows = await conn.fetch(sql)
                except asyncpg.PostgresError as exc:
                    failures.append(f"{name} / {panel.title}: {exc}\n  {sql}")
                    continue
                if not rows:
                    failures.append(f"{name} / {panel.title}: no rows\n  {sql}")
        assert ran >= 25
        assert failures == [], "\n".join(failures)
    finally:
        await conn.close()


# make smoke / make simulate in Compose's mode: client-credentials tokens, reachable receiver ----


def outward_address() -> str:
    """This machine's address on its default route (not loopback), if it has one."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))
        address = str(probe.getsockname()[0])
        if not address.startswith("127."):
            return address
    return "localhost"


@contextlib.asynccontextmanager
async def token_endpoint(stack: DevStack, tenant: str) -> AsyncIterator[str]:
    """A client-credentials token endpoint as the realm's two machine clients give it (the
    platform bot: platform-admin; the tenant bot: tenant-admin + operator in ``tenant``), signing
    with the stack's issuer key, so the API trusts its tokens as it trusts Keycloak's."""
    key = load_key(stack.config.dev_dir / "oidc-key.pem")
    clients = {
        "platform-bot": ("p-secret", TokenRequest(roles=("platform-admin",), subject="pb")),
        "tenant-bot": (
            "t-secret",
            TokenRequest(roles=("tenant-admin", "operator"), tenant=tenant, subject="tb"),
        ),
    }

    async def issue(request: web.Request) -> web.Response:
        form = await request.post()
        auth = request.headers.get("Authorization", "").removeprefix("Basic ")
        client_id, _, secret = base64.b64decode(auth).decode().partition(":")
        known = clients.get(client_id)
        if form.get("grant_type") != "client_credentials" or known is None or known[0] != secret:
            return web.json_response({"error": "unauthorized_client"}, status=401)
        token = mint_token(key, known[1], issuer=stack.config.issuer, audience=AUDIENCE)
        return web.json_response({"access_token": token, "token_type": "Bearer"})

    app = web.Application()
    app.router.add_post("/token", issue)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/token"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def test_smoke_and_simulate_run_with_client_credentials_like_compose(
    world: World, tmp_path: Path
) -> None:
    tenant = f"cc-{uuid.uuid4().hex[:6]}"
    async with token_endpoint(world.stack, tenant) as token_url:
        env_file = tmp_path / "compose-env"
        env_file.write_text(
            f"export FLEETPULSE_API_URL={world.stack.config.api_url}\n"
            f"export FLEETPULSE_TOKEN_URL={token_url}\n"
            "export FLEETPULSE_CLIENT_ID=tenant-bot\nexport FLEETPULSE_CLIENT_SECRET=t-secret\n"
            "export FLEETPULSE_PLATFORM_CLIENT_ID=platform-bot\n"
            "export FLEETPULSE_PLATFORM_CLIENT_SECRET=p-secret\n"
            f"export FLEETPULSE_TENANT={tenant}\n"
            "export FLEETPULSE_RECEIVER_BIND=0.0.0.0\n"
            f"export FLEETPULSE_RECEIVER_HOST={outward_address()}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}
        env["FLEETPULSE_COMPOSE_ENV"] = str(env_file)
        smoke = await asyncio.create_subprocess_exec(
            str(BIN / "fleetpulse-smoke"),
            "--step-timeout",
            "60",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(smoke.communicate(), 400)
        assert smoke.returncode == 0, out.decode()
        assert f"(tenant {tenant})" in out.decode() and "PASS" in out.decode()
        simulate_run = await asyncio.create_subprocess_exec(
            str(BIN / "fleetpulse-simulate"),
            "--devices=2",
            "--messages=6",
            "--rate=6",
            "--no-create-tenant",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(simulate_run.communicate(), 120)
        assert simulate_run.returncode == 0, out.decode()
        assert f"devices ready in tenant {tenant}" in out.decode()
    # positive control: the tenant client cannot act in another tenant
    async with token_endpoint(world.stack, "someone-else") as token_url:
        text = env_file.read_text()
        text = re.sub(r"FLEETPULSE_TOKEN_URL=\S+", f"FLEETPULSE_TOKEN_URL={token_url}", text)
        env_file.write_text(text)
        refused = await asyncio.create_subprocess_exec(
            str(BIN / "fleetpulse-smoke"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(refused.communicate(), 60)
        assert refused.returncode == 2, out.decode()
        assert "acts in tenant 'someone-else'" in out.decode()
