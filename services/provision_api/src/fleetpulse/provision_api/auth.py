"""Bearer-token authentication (Keycloak realm ``fleetpulse``) and role checks.

RS256 only; ``iss`` must equal the configured issuer, ``aud`` must contain the audience, ``exp``
and ``nbf`` are checked. Signing keys come from the JWKS (the issuer's discovery document's
``jwks_uri`` unless a URL is configured), cached, and fetched again when a token names an unknown
``kid`` (key rotation at the issuer needs no restart), at most once per ``min_refresh_s``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt import PyJWK

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256"]
ROLE_GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "operator": frozenset({"viewer", "operator"}),
    "tenant-admin": frozenset({"viewer", "operator", "tenant-admin"}),
    "platform-admin": frozenset({"platform-admin"}),
}


class AuthenticationError(Exception):
    """The token is missing, malformed, expired, not ours or signed by an unknown key."""


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    tenant_id: str | None
    roles: frozenset[str]

    @property
    def permissions(self) -> frozenset[str]:
        """The roles this principal holds, with the ones they imply."""
        granted: set[str] = set()
        for role in self.roles:
            granted |= ROLE_GRANTS.get(role, frozenset())
        return frozenset(granted)

    def may(self, role: str) -> bool:
        return role in self.permissions


Fetch = Callable[[str], Awaitable[dict[str, Any]]]


class JwksCache:
    """Signing keys by ``kid``, fetched from the JWKS URL (or the issuer's discovery document)."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        issuer: str,
        jwks_url: str | None = None,
        ttl_s: float = 300.0,
        min_refresh_s: float = 10.0,
    ) -> None:
        self._fetch = fetch
        self._issuer = issuer.rstrip("/")
        self._jwks_url = jwks_url
        self._ttl_s, self._min_refresh_s = ttl_s, min_refresh_s
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.generation = 0

    async def key(self, kid: str) -> PyJWK:
        if kid not in self._keys or self._expired():
            await self._refresh(force=kid not in self._keys)
        try:
            return self._keys[kid]
        except KeyError:
            raise AuthenticationError("token signed by an unknown key") from None

    def _expired(self) -> bool:
        return time.monotonic() - self._fetched_at > self._ttl_s

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            since = time.monotonic() - self._fetched_at
            if since < self._min_refresh_s or (not force and since <= self._ttl_s):
                return
            try:
                self._keys = _rsa_keys(await self._fetch(await self._keys_url()))
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.warning("cannot fetch signing keys", extra={"error": type(exc).__name__})
                raise AuthenticationError("signing keys unavailable") from None
            self._fetched_at = time.monotonic()
            self.generation += 1

    async def _keys_url(self) -> str:
        if self._jwks_url is None:
            discovery = await self._fetch(f"{self._issuer}/.well-known/openid-configuration")
            self._jwks_url = str(discovery["jwks_uri"])
        return self._jwks_url


def _rsa_keys(jwks: dict[str, Any]) -> dict[str, PyJWK]:
    keys = {}
    for entry in jwks.get("keys", []):
        if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig" or "kid" not in entry:
            continue
        try:
            keys[str(entry["kid"])] = PyJWK.from_dict(entry, algorithm="RS256")
        except jwt.PyJWTError:
            log.warning("skipping an unusable JWKS entry", extra={"kid": entry.get("kid")})
    return keys


class TokenVerifier:
    """Verifies bearer tokens; a verified token is remembered until it expires or the keys change,
    so a client reusing its token costs one dictionary lookup instead of an RSA verification."""

    def __init__(
        self,
        keys: JwksCache,
        *,
        issuer: str,
        audience: str,
        leeway_s: float = 5.0,
        cache_size: int = 10_000,
    ) -> None:
        self._keys, self._issuer, self._audience, self._leeway = keys, issuer, audience, leeway_s
        self._cache: dict[str, tuple[Principal, float, int]] = {}
        self._cache_size = cache_size

    async def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires, generation = cached
            if generation == self._keys.generation and time.time() < expires:
                return principal
            del self._cache[token]
        principal, expires = await self._verify(token)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[token] = (principal, expires, self._keys.generation)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        header = _header(token)
        key = await self._keys.key(str(header["kid"]))
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationError(_reason(exc)) from None
        _require_numeric_dates(claims)
        return _principal(claims), float(claims["exp"])


def _require_numeric_dates(claims: dict[str, Any]) -> None:
    """RFC 7519 NumericDate: ``exp``, ``nbf`` and ``iat`` are JSON numbers. PyJWT converts a
    numeric string such as ``"9999999999"`` with ``int()``; we refuse it."""
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if name in claims and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise AuthenticationError(f"{name} must be a NumericDate (a JSON number)")


def _header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationError("malformed token") from None
    if header.get("alg") not in ALGORITHMS:
        raise AuthenticationError("token algorithm not allowed")
    if not isinstance(header.get("kid"), str):
        raise AuthenticationError("token has no key id")
    return header


def _reason(exc: jwt.PyJWTError) -> str:
    reasons: dict[type[jwt.PyJWTError], str] = {
        jwt.ExpiredSignatureError: "token expired",
        jwt.ImmatureSignatureError: "token not yet valid",
        jwt.InvalidIssuerError: "wrong issuer",
        jwt.InvalidAudienceError: "wrong audience",
        jwt.MissingRequiredClaimError: "token lacks a required claim",
        jwt.InvalidSignatureError: "bad signature",
    }
    return next((text for kind, text in reasons.items() if isinstance(exc, kind)), "invalid token")


def _principal(claims: dict[str, Any]) -> Principal:
    tenant = claims.get("tenant_id")
    if tenant is not None and not isinstance(tenant, str):
        raise AuthenticationError("tenant_id claim must be a string")
    access = claims.get("realm_access")
    roles = access.get("roles", []) if isinstance(access, dict) else []
    if not isinstance(roles, list):
        raise AuthenticationError("realm_access.roles must be a list")
    return Principal(
        subject=str(claims["sub"]),
        tenant_id=tenant or None,
        roles=frozenset(r for r in roles if isinstance(r, str)),
    )


def http_fetch(client: httpx.AsyncClient) -> Fetch:
    async def fetch(url: str) -> dict[str, Any]:
        response = await client.get(url)
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        return body

    return fetch
