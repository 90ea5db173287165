"""``fleetpulse-simulate``: register (or claim) N devices and stream telemetry for a bounded run.

Examples (against ``make dev``, API URL and tokens from ``.dev/env``, or ``make up``, from
``.compose/env``: Keycloak client credentials; see :mod:`fleetpulse.simulator.stack`)::

    uv run fleetpulse-simulate --tenant acme --devices 20 --rate 50 --duration 60
    uv run fleetpulse-simulate --tenant acme --devices 5 --messages 1000 --spike-probability 0.05
    uv run fleetpulse-simulate --tenant acme --provision-key pk_... --provision-secret ps_...

``--rate`` is messages per second across the whole fleet. Without a provisioning profile the
devices are registered with a tenant-admin token (``--token``, or minted with the dev issuer's key)
and the tenant is created first with a platform-admin token unless ``--no-create-tenant``. Against
Compose the tenant is the one the realm's tenant client belongs to (``demo``) unless ``--tenant``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import replace

import httpx

from fleetpulse.simulator.fleet import ApiError, DeviceCredentials, claim, ensure_tenant, register
from fleetpulse.simulator.runner import Budget, DeviceOptions, Stats, run_device
from fleetpulse.simulator.stack import Stack, Tokens
from fleetpulse.simulator.telemetry import SensorProfile

EXIT_FAILED = 1
EXIT_USAGE = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fleetpulse-simulate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--api-url", help="API base URL (FLEETPULSE_API_URL from .dev/env)")
    parser.add_argument(
        "--tenant", help="tenant id (sim; against Compose, the tenant client's tenant)"
    )
    parser.add_argument("--devices", type=int, default=5, help="number of devices (5)")
    parser.add_argument("--device-prefix", default="sim-", help="device id prefix (sim-)")
    parser.add_argument("--rate", type=float, default=5.0, help="messages/s, whole fleet (5)")
    bound = parser.add_argument_group("bound (at least one; default --duration 60)")
    bound.add_argument("--duration", type=float, help="seconds to run")
    bound.add_argument("--messages", type=int, help="messages to send in total")
    parser.add_argument("--token", help="tenant-admin bearer token (default: minted, dev only)")
    parser.add_argument("--no-create-tenant", action="store_true", help="the tenant exists")
    parser.add_argument("--provision-key", help="claim devices with this profile key")
    parser.add_argument("--provision-secret", help="... and this profile secret")
    parser.add_argument("--spike-probability", type=float, default=0.01)
    parser.add_argument("--dropout-probability", type=float, default=0.002)
    parser.add_argument("--seed", type=int, help="reproducible readings")
    args = parser.parse_args(argv)
    if args.duration is None and args.messages is None:
        args.duration = 60.0
    if bool(args.provision_key) != bool(args.provision_secret):
        parser.error("--provision-key and --provision-secret go together")
    return args


def discover(args: argparse.Namespace) -> Stack:
    stack = Stack.discover()
    if args.api_url:
        stack = replace(stack, api_url=str(args.api_url))
    if args.tenant is None:
        args.tenant = stack.tokens.fixed_tenant() or "sim"
    return stack


async def enrol(
    args: argparse.Namespace, api: httpx.AsyncClient, tokens: Tokens
) -> list[DeviceCredentials]:
    ids = [f"{args.device_prefix}{i:04d}" for i in range(1, args.devices + 1)]
    if args.provision_key:
        return [
            await claim(api, args.tenant, args.provision_key, args.provision_secret, d) for d in ids
        ]
    if not args.no_create_tenant:
        await ensure_tenant(api, await tokens.platform_admin(), args.tenant)
    token = args.token or await tokens.tenant_admin(args.tenant)
    tags = {"simulated": "true"}
    return [await register(api, token, args.tenant, d, tags) for d in ids]


async def show_progress(stats: Stats, interactive: bool) -> None:
    every = 0.5 if interactive else 5.0
    while True:
        await asyncio.sleep(every)
        if interactive:
            print(f"\r{stats.line()}   ", end="", file=sys.stderr, flush=True)
        else:
            print(stats.line(), file=sys.stderr, flush=True)


async def simulate(args: argparse.Namespace) -> Stats:
    stack = discover(args)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30.0) as api:
        devices = await enrol(args, api, stack.tokens)
    print(f"{len(devices)} devices ready in tenant {args.tenant}", file=sys.stderr)
    stats = Stats()
    deadline = time.monotonic() + args.duration if args.duration is not None else None
    budget = Budget(messages=args.messages, deadline=deadline)
    options = DeviceOptions(
        interval_s=len(devices) / args.rate,
        profile=SensorProfile(spike_probability=args.spike_probability),
        dropout_probability=args.dropout_probability,
        seed=args.seed,
    )
    progress = asyncio.create_task(show_progress(stats, sys.stderr.isatty()))
    try:
        await asyncio.gather(*(run_device(d, options, budget, stats) for d in devices))
    finally:
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
    return stats


def summary(stats: Stats) -> str:
    elapsed = time.monotonic() - stats.started
    lines = [f"\ndone in {elapsed:.1f}s: {stats.line()}"]
    if stats.last_error:
        lines.append(f"last error: {stats.last_error}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.devices < 1 or args.rate <= 0:
        print("fleetpulse-simulate: --devices and --rate must be positive", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        stats = asyncio.run(simulate(args))
    except (ApiError, httpx.HTTPError, FileNotFoundError, ValueError) as exc:
        print(f"fleetpulse-simulate: {exc}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(130)
    print(summary(stats), file=sys.stderr)
    sys.exit(EXIT_FAILED if stats.acknowledged == 0 else 0)
