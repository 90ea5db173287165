"""Which stack the tools talk to, and how they get bearer tokens for it.

Two kinds of stack:

- ``make dev`` writes ``.dev/env`` (``$FLEETPULSE_DEV_DIR/env``); tokens are minted locally with
  the dev issuer's key (:class:`DevKeyTokens`).
- ``make up`` (Compose) writes ``.compose/env`` (``$FLEETPULSE_COMPOSE_ENV``) naming Keycloak's
  token URL and two confidential clients of the realm; tokens come from Keycloak with the OAuth 2
  client-credentials grant (:class:`ClientCredentialsTokens`). The tenant client's service
  account carries ``tenant_id`` and ``tenant-admin``/``operator``; the platform client's has
  ``platform-admin``.

Settings are read from the environment first, then from the newer of the two files (the stack
started last): ``FLEETPULSE_API_URL``, ``FLEETPULSE_TOKEN_URL``, ``FLEETPULSE_CLIENT_ID`` /
``FLEETPULSE_CLIENT_SECRET`` (tenant client), ``FLEETPULSE_PLATFORM_CLIENT_ID`` /
``FLEETPULSE_PLATFORM_CLIENT_SECRET``, ``FLEETPULSE_TENANT`` (the tenant client's tenant),
``FLEETPULSE_RECEIVER_BIND`` / ``FLEETPULSE_RECEIVER_HOST`` (where the smoke's webhook receiver
listens, and the host name the delivery worker reaches it by).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from fleetpulse.dev_oidc import DevOidcConfig, TokenRequest, mint_token
from fleetpulse.dev_oidc.config import ENV_FILE, dev_dir, read_env_file
from fleetpulse.dev_oidc.keys import load_key

DEFAULT_API_URL = "http://127.0.0.1:8000"


class StackError(ValueError):
    """The stack's settings are missing or unusable (the message names the setting)."""


class Tokens(Protocol):
    async def platform_admin(self) -> str:
        """A token with role platform-admin (creates tenants)."""
        ...

    async def tenant_admin(self, tenant_id: str) -> str:
        """A token with tenant-admin and operator in ``tenant_id``."""
        ...

    def fixed_tenant(self) -> str | None:
        """The only tenant this source can act in, if it cannot choose."""
        ...


@dataclass(frozen=True, slots=True)
class DevKeyTokens:
    """Tokens minted with the dev issuer's key (``make dev``): any tenant, any role."""

    oidc: DevOidcConfig
    subject: str = "fleetpulse-tools"

    def _mint(self, roles: tuple[str, ...], tenant: str | None) -> str:
        request = TokenRequest(roles=roles, tenant=tenant, subject=self.subject)
        key = load_key(self.oidc.key_path)
        return str(mint_token(key, request, issuer=self.oidc.issuer, audience=self.oidc.audience))

    async def platform_admin(self) -> str:
        return self._mint(("platform-admin",), None)

    async def tenant_admin(self, tenant_id: str) -> str:
        return self._mint(("tenant-admin", "operator"), tenant_id)

    def fixed_tenant(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    client_secret: str


@dataclass(frozen=True, slots=True)
class ClientCredentialsTokens:
    """Tokens from an OIDC token endpoint with the client-credentials grant (Keycloak)."""

    token_url: str
    tenant_client: Client
    platform_client: Client | None = None
    tenant: str | None = None

    async def _fetch(self, client: Client) -> str:
        async with httpx.AsyncClient(timeout=15.0) as http:
            response = await http.post(
                self.token_url,
                data={"grant_type": "client_credentials"},
                auth=(client.client_id, client.client_secret),
            )
        if response.status_code != 200:
            raise StackError(
                f"token endpoint {self.token_url} refused client {client.client_id}: "
                f"HTTP {response.status_code} {response.text[:200]}"
            )
        return str(response.json()["access_token"])

    async def platform_admin(self) -> str:
        if self.platform_client is None:
            raise StackError("FLEETPULSE_PLATFORM_CLIENT_ID is not set: cannot create tenants")
        return await self._fetch(self.platform_client)

    async def tenant_admin(self, tenant_id: str) -> str:
        token = await self._fetch(self.tenant_client)
        claimed = token_tenant(token)
        if claimed != tenant_id:
            raise StackError(
                f"client {self.tenant_client.client_id} acts in tenant {claimed!r}, not {tenant_id!r}"
            )
        return token

    def fixed_tenant(self) -> str | None:
        return self.tenant


def token_tenant(token: str) -> str | None:
    """The ``tenant_id`` claim of a JWT, read without verifying it (the API verifies)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise StackError(f"the token endpoint returned no JWT: {exc}") from None
    tenant = claims.get("tenant_id")
    return str(tenant) if tenant is not None else None


@dataclass(frozen=True, slots=True)
class Stack:
    api_url: str
    tokens: Tokens
    receiver_bind: str = "127.0.0.1"
    receiver_host: str | None = None  # None: the bind address

    @classmethod
    def discover(cls, environ: Mapping[str, str] | None = None) -> Stack:
        """From ``environ`` (default ``os.environ``), then the newer of ``.dev/env`` and
        ``.compose/env``. :class:`StackError` names what is missing."""
        env = dict(os.environ if environ is None else environ)
        settings = {**read_env_file(_newest_env_file(env)), **env}
        api_url = settings.get("FLEETPULSE_API_URL") or DEFAULT_API_URL
        bind = settings.get("FLEETPULSE_RECEIVER_BIND") or "127.0.0.1"
        host = settings.get("FLEETPULSE_RECEIVER_HOST") or None
        token_url = settings.get("FLEETPULSE_TOKEN_URL")
        if not token_url:
            oidc = DevOidcConfig.discover(settings)
            if not oidc.key_path.exists():
                raise StackError(
                    f"no dev issuer key at {oidc.key_path} and no FLEETPULSE_TOKEN_URL: "
                    "start a stack (make dev or make up) first"
                )
            return cls(api_url, DevKeyTokens(oidc), bind, host)
        return cls(api_url, client_credentials(settings, token_url), bind, host)


def client_credentials(settings: Mapping[str, str], token_url: str) -> ClientCredentialsTokens:
    client_id = settings.get("FLEETPULSE_CLIENT_ID")
    secret = settings.get("FLEETPULSE_CLIENT_SECRET")
    if not client_id or not secret:
        raise StackError(
            "FLEETPULSE_TOKEN_URL needs FLEETPULSE_CLIENT_ID and FLEETPULSE_CLIENT_SECRET"
        )
    platform = None
    if platform_id := settings.get("FLEETPULSE_PLATFORM_CLIENT_ID"):
        platform_secret = settings.get("FLEETPULSE_PLATFORM_CLIENT_SECRET")
        if not platform_secret:
            raise StackError(
                "FLEETPULSE_PLATFORM_CLIENT_ID needs FLEETPULSE_PLATFORM_CLIENT_SECRET"
            )
        platform = Client(platform_id, platform_secret)
    return ClientCredentialsTokens(
        token_url, Client(client_id, secret), platform, settings.get("FLEETPULSE_TENANT") or None
    )


def compose_env_file(env: Mapping[str, str]) -> Path:
    return Path(env.get("FLEETPULSE_COMPOSE_ENV") or Path.cwd() / ".compose" / "env")


def _newest_env_file(env: Mapping[str, str]) -> Path:
    """An explicitly named stack (FLEETPULSE_DEV_DIR or FLEETPULSE_COMPOSE_ENV) wins; else the
    env file written last."""
    if env.get("FLEETPULSE_DEV_DIR"):
        return dev_dir(env) / ENV_FILE
    if env.get("FLEETPULSE_COMPOSE_ENV"):
        return compose_env_file(env)
    candidates = [p for p in (dev_dir(env) / ENV_FILE, compose_env_file(env)) if p.exists()]
    if not candidates:
        return dev_dir(env) / ENV_FILE
    return max(candidates, key=lambda p: p.stat().st_mtime)
