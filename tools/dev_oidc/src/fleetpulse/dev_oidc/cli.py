"""``fleetpulse-dev-token``: print a bearer token the dev stack's API accepts."""

from __future__ import annotations

import argparse
import sys

from fleetpulse.dev_oidc.config import DevOidcConfig
from fleetpulse.dev_oidc.keys import load_key
from fleetpulse.dev_oidc.tokens import TokenRequest, mint_token

EXIT_USAGE = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fleetpulse-dev-token",
        description="Print a dev bearer token (key and issuer from .dev/ or FLEETPULSE_* env).",
    )
    parser.add_argument("--tenant", help="tenant_id claim (not needed for platform-admin)")
    parser.add_argument(
        "--roles", default="tenant-admin", help="comma-separated realm roles (tenant-admin)"
    )
    parser.add_argument("--subject", help="sub claim (default: a random dev-xxxx)")
    parser.add_argument("--lifetime", type=int, default=3600, help="seconds until exp (3600)")
    return parser.parse_args(argv)


def build_request(args: argparse.Namespace) -> TokenRequest:
    roles = tuple(role.strip() for role in args.roles.split(",") if role.strip())
    extra = {"subject": args.subject} if args.subject else {}
    return TokenRequest(roles=roles, tenant=args.tenant, lifetime_s=args.lifetime, **extra)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = DevOidcConfig.discover()
    try:
        request = build_request(args)
        key = load_key(config.key_path)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fleetpulse-dev-token: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    print(mint_token(key, request, issuer=config.issuer, audience=config.audience))
