"""Harness for the API tests: a test OIDC issuer serving its JWKS over HTTP, tokens it mints,
the app wired to a fresh database with the in-memory credentials fake, and tenants to work in."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from fleetpulse.common.crypto import SecretBox
from fleetpulse.provision_api.app import create_app
from fleetpulse.provision_api.bootstrap import ApiServer, bootstrap, uvicorn_config
from fleetpulse.provision_api.credentials import CredentialIssuer, InMemoryCredentialIssuer
from fleetpulse.provision_api.settings import Settings
from fleetpulse.testing.ports import free_port

REALM_PATH = "/realms/fleetpulse"
AUDIENCE = "fleetpulse-api"


class SigningKey:
    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex[:12]
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}


class TestIssuer:
    """A stand-in for Keycloak: discovery document and JWKS over real HTTP, tokens on demand."""

    __test__ = False

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{REALM_PATH}"
        self.keys = [SigningKey()]
        self.jwks_requests = 0
        self._runner: web.AppRunner | None = None

    @property
    def key(self) -> SigningKey:
        return self.keys[-1]

    def rotate(self) -> SigningKey:
        """A new signing key replaces the old one at the issuer."""
        self.keys = [SigningKey()]
        return self.key

    def claims(
        self,
        tenant: str | None = "acme",
        roles: tuple[str, ...] = ("tenant-admin",),
        **overrides: Any,
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": [AUDIENCE, "account"],
            "sub": "user-1",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "realm_access": {"roles": list(roles)},
            "azp": "fleetpulse-console",
        }
        if tenant is not None:
            claims["tenant_id"] = tenant
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        tenant: str | None = "acme",
        roles: tuple[str, ...] = ("tenant-admin",),
        *,
        key: SigningKey | None = None,
        **overrides: Any,
    ) -> str:
        key = key or self.key
        return jwt.encode(
            self.claims(tenant, roles, **overrides),
            key.private,
            algorithm="RS256",
            headers={"kid": key.kid},
        )

    def headers(
        self,
        tenant: str | None = "acme",
        roles: tuple[str, ...] = ("tenant-admin",),
        **overrides: Any,
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(tenant, roles, **overrides)}"}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(f"{REALM_PATH}/.well-known/openid-configuration", self._discovery)
        app.router.add_get(f"{REALM_PATH}/protocol/openid-connect/certs", self._jwks)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _discovery(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"issuer": self.url, "jwks_uri": f"{self.url}/protocol/openid-connect/certs"}
        )

    async def _jwks(self, _: web.Request) -> web.Response:
        self.jwks_requests += 1
        return web.json_response({"keys": [k.jwk() for k in self.keys]})


@pytest_asyncio.fixture
async def oidc() -> AsyncIterator[TestIssuer]:
    issuer = TestIssuer()
    await issuer.start()
    yield issuer
    await issuer.stop()


def make_settings(database_url: str, oidc: TestIssuer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "oidc_issuer": oidc.url,
        "health_port": 0,
        "webhook_encryption_key": SecretBox.generate_key(),
        "jwks_min_refresh_s": 0.0,
        "mqtt_public_host": "mqtt.test",
        "mqtt_public_port": 1883,
        "provision_rate_per_minute": 30,
        "outbox_relay": False,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def credentials() -> InMemoryCredentialIssuer:
    return InMemoryCredentialIssuer()


@pytest_asyncio.fixture
async def settings(database_url: str, oidc: TestIssuer) -> Settings:
    return make_settings(database_url, oidc)


@pytest_asyncio.fixture
async def api(
    settings: Settings, credentials: CredentialIssuer
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app in process (ASGI), wired to a fresh database."""
    async with bootstrap(settings, issuer=credentials) as booted:
        transport = httpx.ASGITransport(app=create_app(booted.services), client=("10.0.0.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


@pytest_asyncio.fixture
async def tenants(api: httpx.AsyncClient, oidc: TestIssuer) -> list[str]:
    admin = oidc.headers(None, ("platform-admin",))
    for tenant in ("acme", "globex"):
        response = await api.post(
            "/api/v1/tenants", json={"tenant_id": tenant, "name": tenant.title()}, headers=admin
        )
        assert response.status_code == 201, response.text
    return ["acme", "globex"]


@pytest_asyncio.fixture
async def live_api(settings: Settings, credentials: CredentialIssuer) -> AsyncIterator[str]:
    """The app on a real uvicorn socket: its base URL."""
    port = free_port()
    live = settings.model_copy(update={"api_host": "127.0.0.1", "api_port": port})
    async with bootstrap(live, issuer=credentials) as booted:
        server = ApiServer(uvicorn_config(create_app(booted.services), live))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        await task
