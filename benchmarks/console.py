"""The console's fleet page with 10,000 devices, in Chromium: it shows the first rows fast and
scrolls without loading the whole fleet (cursor pages of 100, a virtualised list).

    uv run python benchmarks/console.py [--devices 10000] [--save out.json]

Starts a private dev stack serving the built console (``make console`` first), loads the devices
(and the latest state of a third of them) straight into its database, logs in through the dev
issuer's PKCE page, then ``console/e2e/fleet.bench.mjs`` measures: time to the first rows, rows
and API requests at first paint, rows in the DOM, time per further page while scrolling to the
end 20 times, API time per page, and frame times of three seconds of continuous scrolling.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
from _common import parser, report

from fleetpulse.common.db.pool import connect
from fleetpulse.dev_oidc.keys import load_key
from fleetpulse.dev_oidc.tokens import TokenRequest, mint_token
from fleetpulse.devstack.stack import DevStack, private_stack

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = ROOT / "console"
SERVER = os.environ.get("FLEETPULSE_DEV_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
TENANT = "bench"


async def load_fleet(database_url: str, devices: int) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute(
            """
            INSERT INTO devices (tenant_id, device_id, name, tags, registered_at, updated_at, version)
            SELECT $1, 'dev-' || lpad(i::text, 5, '0'), 'Device ' || i,
                   jsonb_build_object('site', 'site-' || (i % 20), 'kind', 'reefer'), now(), now(), 2
            FROM generate_series(1, $2) AS i
            """,
            TENANT,
            devices,
        )
        await conn.execute(
            """
            INSERT INTO device_state (tenant_id, device_id, last_seen, last_reading_at, metrics)
            SELECT $1, 'dev-' || lpad(i::text, 5, '0'), now() - make_interval(secs => i % 600),
                   now(), jsonb_build_object('temp_c', 3 + (i % 7), 'door_open', i % 2 = 0)
            FROM generate_series(1, $2, 3) AS i
            """,
            TENANT,
            devices,
        )
        await conn.execute("ANALYZE devices; ANALYZE device_state")
    finally:
        await conn.close()


def create_tenant(stack: DevStack) -> None:
    token = mint_token(
        load_key(stack.dev.oidc_key),
        TokenRequest(roles=("platform-admin",)),
        issuer=stack.config.issuer,
    )
    response = httpx.post(
        f"{stack.config.api_url}/api/v1/tenants",
        json={"tenant_id": TENANT, "name": "Bench"},
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()


def measure(stack: DevStack) -> dict[str, float]:
    env = {
        **os.environ,
        "CONSOLE_URL": stack.config.console_url,
        "TENANT": TENANT,
        "CHROMIUM": os.environ.get("FLEETPULSE_CHROMIUM", "/usr/bin/chromium"),
    }
    completed = subprocess.run(
        ["node", "e2e/fleet.bench.mjs"], cwd=CONSOLE, env=env, capture_output=True, text=True
    )
    line = next(x for x in completed.stdout.splitlines() if x.startswith("RESULT "))
    figures = json.loads(line.removeprefix("RESULT "))
    if "error" in figures:
        raise RuntimeError(figures["error"])
    return {k: float(v) for k, v in figures.items()}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=10_000)
    args = p.parse_args()
    if not (CONSOLE / "dist" / "index.html").is_file():
        sys.exit("console/dist is missing: run `make console` first")
    database = f"fleetpulse_bench_console_{uuid.uuid4().hex[:8]}"
    with (
        tempfile.TemporaryDirectory() as root,
        private_stack(
            SERVER, database, Path(root), say=lambda _: None, console_dist=CONSOLE / "dist"
        ) as stack,
    ):
        create_tenant(stack)
        asyncio.run(load_fleet(stack.config.database_url, args.devices))
        figures = {"devices in the tenant": float(args.devices), **measure(stack)}
    report("console", figures, args.baseline, args.save)


if __name__ == "__main__":
    main()
