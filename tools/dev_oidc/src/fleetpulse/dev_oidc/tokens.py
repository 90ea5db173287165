"""Mint the access tokens the API accepts: Keycloak's claim layout, signed RS256."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from fleetpulse.dev_oidc.keys import key_id

PLATFORM_ADMIN = "platform-admin"
KNOWN_ROLES = frozenset({"viewer", "operator", "tenant-admin", PLATFORM_ADMIN})


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """Who the token is for. ``tenant`` may be None only when ``roles`` is just platform-admin."""

    roles: tuple[str, ...]
    tenant: str | None = None
    subject: str = field(default_factory=lambda: f"dev-{uuid.uuid4().hex[:8]}")
    lifetime_s: int = 3600
    client_id: str = "fleetpulse-dev"

    def __post_init__(self) -> None:
        if not self.roles:
            raise ValueError("at least one role is required")
        unknown = set(self.roles) - KNOWN_ROLES
        if unknown:
            raise ValueError(f"unknown roles: {', '.join(sorted(unknown))}")
        if self.tenant is None and set(self.roles) != {PLATFORM_ADMIN}:
            raise ValueError("--tenant is required unless the only role is platform-admin")


def claims(request: TokenRequest, issuer: str, audience: str, now: int) -> dict[str, object]:
    body: dict[str, object] = {
        "iss": issuer,
        "aud": [audience, "account"],
        "sub": request.subject,
        "azp": request.client_id,
        "typ": "Bearer",
        "iat": now,
        "nbf": now - 5,
        "exp": now + request.lifetime_s,
        "jti": str(uuid.uuid4()),
        "preferred_username": request.subject,
        "realm_access": {"roles": list(request.roles)},
    }
    if request.tenant is not None:
        body["tenant_id"] = request.tenant
    return body


def mint_token(
    key: rsa.RSAPrivateKey,
    request: TokenRequest,
    *,
    issuer: str,
    audience: str = "fleetpulse-api",
    now: int | None = None,
) -> str:
    """A signed JWT for ``request``; ``now`` (epoch seconds) is for tests."""
    issued = int(time.time()) if now is None else now
    return jwt.encode(
        claims(request, issuer, audience, issued),
        key,
        algorithm="RS256",
        headers={"kid": key_id(key), "typ": "JWT"},
    )


def mint_id_token(
    key: rsa.RSAPrivateKey,
    request: TokenRequest,
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    now: int | None = None,
) -> str:
    """The OIDC ID token of a login: ``aud`` is the client, ``nonce`` echoed from ``/auth``."""
    issued = int(time.time()) if now is None else now
    body: dict[str, object] = {
        "iss": issuer,
        "aud": client_id,
        "azp": client_id,
        "sub": request.subject,
        "typ": "ID",
        "iat": issued,
        "exp": issued + request.lifetime_s,
        "preferred_username": request.subject,
        "realm_access": {"roles": list(request.roles)},
    }
    if nonce is not None:
        body["nonce"] = nonce
    if request.tenant is not None:
        body["tenant_id"] = request.tenant
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": key_id(key), "typ": "JWT"})
