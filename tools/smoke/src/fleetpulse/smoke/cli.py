"""``fleetpulse-smoke``: run the end-to-end check against a running stack.

Reads ``FLEETPULSE_API_URL``, ``FLEETPULSE_OIDC_ISSUER`` and the dev issuer's key from the
environment or ``$FLEETPULSE_DEV_DIR/env`` (``.dev/env``, written by ``make dev``) and mints its own
tokens with that key, so it runs against the dev stack (or any stack trusting the dev issuer).
Exit 0 when every step passed; 1 naming the first failing step; 2 on a configuration problem.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass

import httpx

from fleetpulse.dev_oidc import DevOidcConfig, TokenRequest, mint_token
from fleetpulse.dev_oidc.config import read_env_file
from fleetpulse.dev_oidc.keys import load_key
from fleetpulse.smoke.check import SmokeCheck, Tokens, new_tenant_id
from fleetpulse.smoke.receiver import WebhookReceiver
from fleetpulse.smoke.steps import StepError, Steps

EXIT_FAILED = 1
EXIT_CONFIG = 2


@dataclass(frozen=True, slots=True)
class SmokeConfig:
    api_url: str
    oidc: DevOidcConfig

    @classmethod
    def discover(cls, api_url: str | None) -> SmokeConfig:
        oidc = DevOidcConfig.discover()
        env = {**read_env_file(oidc.key_path.parent / "env"), **os.environ}
        return cls(api_url or env.get("FLEETPULSE_API_URL", "http://127.0.0.1:8000"), oidc)

    def tokens(self, tenant_id: str) -> Tokens:
        key = load_key(self.oidc.key_path)

        def token(request: TokenRequest) -> str:
            return mint_token(key, request, issuer=self.oidc.issuer, audience=self.oidc.audience)

        return Tokens(
            platform_admin=token(TokenRequest(roles=("platform-admin",), subject="smoke")),
            tenant_admin=token(
                TokenRequest(roles=("tenant-admin", "operator"), tenant=tenant_id, subject="smoke")
            ),
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetpulse-smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", help="API base URL (FLEETPULSE_API_URL, .dev/env)")
    parser.add_argument("--tenant", help="tenant to create (default: smoke-<random>)")
    parser.add_argument("--step-timeout", type=float, default=60.0, help="seconds per step (60)")
    parser.add_argument("--mqtt-host", help="broker host devices use, if not what the API says")
    return parser.parse_args(argv)


async def smoke(args: argparse.Namespace, config: SmokeConfig, tenant_id: str) -> Steps:
    steps = Steps(say=say, timeout_s=args.step_timeout)
    receiver = WebhookReceiver()
    try:
        async with httpx.AsyncClient(base_url=config.api_url, timeout=15.0) as api:
            check = SmokeCheck(
                api, config.tokens(tenant_id), tenant_id, receiver, steps, mqtt_host=args.mqtt_host
            )
            await check.run()
    finally:
        await receiver.stop()
    return steps


def say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tenant_id = args.tenant or new_tenant_id()
    try:
        config = SmokeConfig.discover(args.api_url)
        config.tokens(tenant_id)
    except (FileNotFoundError, ValueError) as exc:
        print(f"fleetpulse-smoke: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    say(f"smoke check against {config.api_url} (tenant {tenant_id})")
    started = time.monotonic()
    try:
        steps = asyncio.run(smoke(args, config, tenant_id))
    except StepError as failed:
        say(f"FAIL {failed.step}: {failed.reason}")
        sys.exit(EXIT_FAILED)
    say(f"PASS {len(steps.passed)} steps in {time.monotonic() - started:.1f}s")
