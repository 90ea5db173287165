"""The operator console in a real browser (Debian's Chromium driven by playwright-core) against a
private dev stack serving the built console, as ``make dev`` does.

An admin logs in through the dev issuer's PKCE flow, registers a device (password shown once),
creates a rule (the form counts the devices it matches), a webhook integration (whsec_ shown
once) and a route; the device publishes a breach over MQTT; the alert appears on the open alerts
page without a reload (server-sent events); the admin acknowledges it and sees the delivery.
A viewer sees no write controls, a second tenant sees none of it, a token without a tenant gets
a clear screen. Every page is screenshotted (``console/e2e-artifacts/``) and checked with axe-core:
no serious or critical violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from fleetpulse.dev_oidc.keys import load_key
from fleetpulse.dev_oidc.tokens import TokenRequest, mint_token
from fleetpulse.devstack.stack import DevStack, private_stack
from fleetpulse.simulator.fleet import DeviceCredentials

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "console"
ARTIFACTS = CONSOLE / "e2e-artifacts"
SERVER = os.environ.get("FLEETPULSE_DEV_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
CHROMIUM = os.environ.get("FLEETPULSE_CHROMIUM", "/usr/bin/chromium")
TOKEN_LIFETIME_S = 70  # oidc-client-ts renews 60 s before expiry: every ~10 s here

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def built_console() -> Path:
    """console/dist, built now if missing (CI builds it in .ci/run; so does make dev)."""
    dist = CONSOLE / "dist"
    if not (CONSOLE / "node_modules").is_dir() or shutil.which("npm") is None:
        pytest.fail("console/node_modules is missing: run `make console` (.ci/run does)")
    if not (dist / "index.html").is_file():
        subprocess.run(["npm", "run", "build"], cwd=CONSOLE, check=True, timeout=600)
    return dist


class Receiver(ThreadingHTTPServer):
    """A webhook endpoint answering 204 and remembering the event types it got."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.types: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/hooks/fleetpulse"


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.types.append(json.loads(body).get("type", "?"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DevStack]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    dist = built_console()

    def short_tokens(stack: DevStack) -> None:
        stack.oidc_token_lifetime_s = TOKEN_LIFETIME_S

    database = f"fleetpulse_console_{uuid.uuid4().hex[:8]}"
    with private_stack(
        SERVER, database, tmp_path, say=lambda _: None, before_start=short_tokens, console_dist=dist
    ) as running:
        assert running.console_running
        yield running


def create_tenants(stack: DevStack) -> None:
    key = load_key(stack.dev.oidc_key)
    token = mint_token(key, TokenRequest(roles=("platform-admin",)), issuer=stack.config.issuer)
    for tenant in ("acme", "globex"):
        response = httpx.post(
            f"{stack.config.api_url}/api/v1/tenants",
            json={"tenant_id": tenant, "name": tenant.title()},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 201, response.text


async def seed_history(database_url: str, device_id: str) -> None:
    """A day of 5-minute readings before now, straight into telemetry, for the device chart."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            INSERT INTO telemetry (time, tenant_id, device_id, metrics)
            SELECT now() - make_interval(mins => 5 * i), 'acme', $1,
                   jsonb_build_object('temperature_c', round((4 + 2 * sin(i / 12.0))::numeric, 2))
            FROM generate_series(3, 288) AS i
            """,
            device_id,
        )
    finally:
        await conn.close()


async def publish_breaches(device: DeviceCredentials, stop: asyncio.Event) -> int:
    """Breaching readings every 2 s until the browser saw the alert (rules reach the evaluator
    within about 2 s); returns how many were sent."""
    sent = 0
    async with device.mqtt_client() as client:
        # and one message ingest must quarantine (BAD_JSON), for the quarantine page
        await client.publish(device.topic("telemetry"), b"{not json", qos=1)
        while not stop.is_set():
            reading = {"ts": datetime.now(UTC).isoformat(), "metrics": {"temperature_c": 35.5}}
            await client.publish(device.topic("telemetry"), json.dumps(reading), qos=1)
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
    return sent


async def drive_browser(stack: DevStack, receiver: Receiver) -> dict[str, Any]:
    env = {
        **os.environ,
        "CONSOLE_URL": stack.config.console_url,
        "ARTIFACTS": str(ARTIFACTS),
        "WEBHOOK_URL": receiver.url,
        "CHROMIUM": CHROMIUM,
    }
    log = (ARTIFACTS / "browser.log").open("w")
    process = await asyncio.create_subprocess_exec(
        "node",
        "e2e/console.e2e.mjs",
        cwd=CONSOLE,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    assert process.stdin is not None and process.stdout is not None
    seen = asyncio.Event()
    publisher: asyncio.Task[int] | None = None
    result: dict[str, Any] = {}
    try:
        async for raw in process.stdout:
            line = raw.decode().strip()
            if line.startswith("NEED_BREACH "):
                wanted = json.loads(line.removeprefix("NEED_BREACH "))
                device = DeviceCredentials(
                    tenant_id="acme",
                    device_id=wanted["device_id"],
                    host=stack.config.host,
                    port=stack.config.ports.mqtt,
                    client_id=wanted["username"],
                    username=wanted["username"],
                    password=wanted["password"],
                    topic_prefix=f"tenant/acme/device/{wanted['device_id']}/",
                )
                await seed_history(stack.config.database_url, device.device_id)
                publisher = asyncio.create_task(publish_breaches(device, seen))
                process.stdin.write(b"BREACH_STARTED\n")
                await process.stdin.drain()
            elif line == "ALERT_SEEN":
                seen.set()
            elif line.startswith("RESULT "):
                result = json.loads(line.removeprefix("RESULT "))
        await asyncio.wait_for(process.wait(), 60)
    finally:
        seen.set()
        if publisher is not None:
            result["breaches_sent"] = await publisher
        if process.returncode is None:
            process.kill()
        log.close()
    return result


def serious(axe: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Per page, the axe violations of serious or critical impact, readable."""
    found: dict[str, list[str]] = {}
    for page, violations in axe.items():
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        if bad:
            found[page] = [f"{v['id']} ({v['impact']}): {v['help']} {v['nodes']}" for v in bad]
    return found


def test_console_end_to_end_in_chromium(stack: DevStack, receiver: Receiver) -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    create_tenants(stack)
    result = asyncio.run(drive_browser(stack, receiver))
    (ARTIFACTS / "result.json").write_text(json.dumps(result, indent=1))
    browser_log = (ARTIFACTS / "browser.log").read_text()
    assert "error" not in result, (
        f"{result.get('error')}\nsteps: {result.get('steps')}\n{browser_log}"
    )
    assert result["alertAppearedWithoutReload"] is True
    assert result["acknowledged"] is True
    assert result["webhookSecretPrefix"] == "whsec_"
    assert result["rotatedPasswordDiffers"] is True
    assert "alert.opened" in receiver.types
    assert result["viewer"] == {
        "registerButtons": 0,
        "deviceWriteButtons": 0,
        "alertsSeen": 1,
        "alertWriteButtons": 0,
        "ruleWriteButtons": 0,
    }
    assert result["operator"] == {"registerButtons": 0, "silenceButtons": 1, "ruleWriteButtons": 0}
    assert result["globex"] == {
        "devices": 0,
        "alerts": 0,
        "rules": 0,
        "integrations": 0,
        "routes": 0,
        "directDevice": "404 Not Found",
        "liveOwnEvents": 2,  # positive control: DeviceRegistered, DeviceCredentialsIssued
        "liveOtherEvents": 0,
    }
    assert "not assigned to a tenant" in result["noTenant"]
    assert result["refreshGrants"] >= 1, "the session never refreshed its token"
    assert result["signedOut"] is True
    assert result["apiErrors"] == []
    assert len(result["screenshots"]) >= 12
    assert all(Path(p).stat().st_size > 10_000 for p in result["screenshots"])
    assert serious(result["axe"]) == {}, json.dumps(serious(result["axe"]), indent=1)
