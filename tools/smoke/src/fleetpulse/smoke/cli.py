"""``fleetpulse-smoke``: run the end-to-end check against a running stack.

``--mode dev`` (default), against a local stack.
Against ``make dev`` it reads ``FLEETPULSE_API_URL`` and the dev issuer's key from the environment
or ``$FLEETPULSE_DEV_DIR/env`` (``.dev/env``) and mints its own tokens. Against ``make up`` it
reads ``.compose/env`` (written by ``compose/up.sh``): the API URL, Keycloak's token URL and the
realm's confidential clients, whose client-credentials tokens it uses, in the tenant the tenant
client belongs to; its webhook receiver then listens where the containers reach it
(``FLEETPULSE_RECEIVER_BIND``, advertised as ``FLEETPULSE_RECEIVER_HOST``). See
:mod:`fleetpulse.simulator.stack`. Exit 0 when every step passed; 1 naming the first failing step;
2 on a configuration problem.

``--mode aws`` (a deployed stack, deploy.yml): one client-credentials token from the token
endpoint (``FLEETPULSE_SMOKE_TOKEN_URL``, ``FLEETPULSE_SMOKE_CLIENT_ID``,
``FLEETPULSE_SMOKE_CLIENT_SECRET``; the realm's fleetpulse-smoke client is platform-admin and
tenant-admin of tenant ``FLEETPULSE_SMOKE_TENANT``, default ``smoke``), the device publishes
with MQTT over TLS (system CAs, or ``FLEETPULSE_SMOKE_MQTT_CA_FILE``), and delivery is proven by
the deliveries API (an MQTT integration inside the platform): nothing public has to listen.

Exit 0 when every step passed; 1 naming the first failing step; 2 on a configuration problem.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import time
from dataclasses import dataclass, replace

import httpx

from fleetpulse.simulator.stack import Client, ClientCredentialsTokens, Stack
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


@dataclass(frozen=True, slots=True)
class AwsSmokeConfig:
    api_url: str
    token_url: str
    client_id: str
    client_secret: str
    tenant_id: str
    mqtt_ca_file: str | None

    @classmethod
    def from_env(cls, api_url: str | None, environ: dict[str, str] | None = None) -> AwsSmokeConfig:
        """Raises ValueError naming the first missing setting."""
        env = dict(os.environ if environ is None else environ)

        def need(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ValueError(f"{name} is not set (--mode aws)")
            return value

        return cls(
            api_url=api_url or need("FLEETPULSE_API_URL"),
            token_url=need("FLEETPULSE_SMOKE_TOKEN_URL"),
            client_id=env.get("FLEETPULSE_SMOKE_CLIENT_ID") or "fleetpulse-smoke",
            client_secret=need("FLEETPULSE_SMOKE_CLIENT_SECRET"),
            tenant_id=env.get("FLEETPULSE_SMOKE_TENANT") or "smoke",
            mqtt_ca_file=env.get("FLEETPULSE_SMOKE_MQTT_CA_FILE") or None,
        )

    def tls(self) -> ssl.SSLContext:
        """Verifying TLS context for the device's MQTT connection (hostname checked)."""
        return ssl.create_default_context(cafile=self.mqtt_ca_file)

    async def tokens(self) -> Tokens:
        """One client-credentials token (the smoke client is platform- and tenant-admin)."""
        client = Client(self.client_id, self.client_secret)
        tokens = ClientCredentialsTokens(self.token_url, client, platform_client=client)
        token = await tokens.platform_admin()
        return Tokens(platform_admin=token, tenant_admin=token)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetpulse-smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", help="API base URL (FLEETPULSE_API_URL, .dev/env)")
    parser.add_argument("--tenant", help="tenant to create (default: smoke-<random>)")
    parser.add_argument("--step-timeout", type=float, default=60.0, help="seconds per step (60)")
    parser.add_argument("--mqtt-host", help="broker host devices use, if not what the API says")
    parser.add_argument("--mqtt-port", type=int, help="broker port, if not what the API says")
    parser.add_argument(
        "--mode",
        choices=("dev", "aws"),
        default="dev",
        help="dev: dev-issuer tokens, webhook receiver; aws: client credentials, TLS, deliveries API",
    )
    return parser.parse_args(argv)


async def smoke_aws(args: argparse.Namespace, config: AwsSmokeConfig) -> Steps:
    steps = Steps(say=say, timeout_s=args.step_timeout)
    tokens = await steps.run("client-credentials token", config.tokens())
    async with httpx.AsyncClient(base_url=config.api_url, timeout=15.0) as api:
        check = SmokeCheck(
            api,
            tokens,
            config.tenant_id,
            None,
            steps,
            mqtt_host=args.mqtt_host,
            mqtt_port=args.mqtt_port,
            mqtt_tls=config.tls(),
        )
        await check.run()
    return steps


async def smoke(args: argparse.Namespace, stack: Stack, tokens: Tokens, tenant_id: str) -> Steps:
    steps = Steps(say=say, timeout_s=args.step_timeout)
    receiver = WebhookReceiver(host=stack.receiver_bind, public_host=stack.receiver_host)
    try:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=15.0) as api:
            check = SmokeCheck(
                api,
                tokens,
                tenant_id,
                receiver,
                steps,
                mqtt_host=args.mqtt_host,
                mqtt_port=args.mqtt_port,
            )
            await check.run()
    finally:
        await receiver.stop()
    return steps


def say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.mode == "aws":
        main_aws(args)
        return
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


def main_aws(args: argparse.Namespace) -> None:
    try:
        config = AwsSmokeConfig.from_env(args.api_url)
    except ValueError as exc:
        print(f"fleetpulse-smoke: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    say(f"smoke check (aws) against {config.api_url} (tenant {config.tenant_id})")
    started = time.monotonic()
    try:
        steps = asyncio.run(smoke_aws(args, config))
    except StepError as failed:
        say(f"FAIL {failed.step}: {failed.reason}")
        sys.exit(EXIT_FAILED)
    say(f"PASS {len(steps.passed)} steps in {time.monotonic() - started:.1f}s")
