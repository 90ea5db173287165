"""``fleetpulse-smoke``: run the end-to-end check against a running stack.

Against ``make dev`` it reads ``FLEETPULSE_API_URL`` and the dev issuer's key from the environment
or ``$FLEETPULSE_DEV_DIR/env`` (``.dev/env``) and mints its own tokens. Against ``make up`` it
reads ``.compose/env`` (written by ``compose/up.sh``): the API URL, Keycloak's token URL and the
realm's confidential clients, whose client-credentials tokens it uses, in the tenant the tenant
client belongs to; its webhook receiver then listens where the containers reach it
(``FLEETPULSE_RECEIVER_BIND``, advertised as ``FLEETPULSE_RECEIVER_HOST``). See
:mod:`fleetpulse.simulator.stack`. Exit 0 when every step passed; 1 naming the first failing step;
2 on a configuration problem.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import replace

import httpx

from fleetpulse.simulator.stack import Stack
from fleetpulse.smoke.check import SmokeCheck, Tokens, new_tenant_id
from fleetpulse.smoke.receiver import WebhookReceiver
from fleetpulse.smoke.steps import StepError, Steps

EXIT_FAILED = 1
EXIT_CONFIG = 2


async def tokens_for(stack: Stack, tenant_id: str) -> Tokens:
    return Tokens(
        platform_admin=await stack.tokens.platform_admin(),
        tenant_admin=await stack.tokens.tenant_admin(tenant_id),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetpulse-smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", help="API base URL (FLEETPULSE_API_URL, .dev/env)")
    parser.add_argument("--tenant", help="tenant to create (default: smoke-<random>)")
    parser.add_argument("--step-timeout", type=float, default=60.0, help="seconds per step (60)")
    parser.add_argument("--mqtt-host", help="broker host devices use, if not what the API says")
    return parser.parse_args(argv)


async def smoke(args: argparse.Namespace, stack: Stack, tokens: Tokens, tenant_id: str) -> Steps:
    steps = Steps(say=say, timeout_s=args.step_timeout)
    receiver = WebhookReceiver(host=stack.receiver_bind, public_host=stack.receiver_host)
    try:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=15.0) as api:
            check = SmokeCheck(api, tokens, tenant_id, receiver, steps, mqtt_host=args.mqtt_host)
            await check.run()
    finally:
        await receiver.stop()
    return steps


def say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        stack = Stack.discover()
        if args.api_url:
            stack = replace(stack, api_url=args.api_url)
        tenant_id = args.tenant or stack.tokens.fixed_tenant() or new_tenant_id()
        tokens = asyncio.run(tokens_for(stack, tenant_id))
    except (FileNotFoundError, ValueError, httpx.HTTPError) as exc:
        print(f"fleetpulse-smoke: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    say(f"smoke check against {stack.api_url} (tenant {tenant_id})")
    started = time.monotonic()
    try:
        steps = asyncio.run(smoke(args, stack, tokens, tenant_id))
    except StepError as failed:
        say(f"FAIL {failed.step}: {failed.reason}")
        sys.exit(EXIT_FAILED)
    say(f"PASS {len(steps.passed)} steps in {time.monotonic() - started:.1f}s")
