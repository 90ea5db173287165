"""Which stack the tools use and where their tokens come from: the dev key (``.dev/env``) or a
token endpoint with the client-credentials grant (``.compose/env``), served here by a real HTTP
endpoint that checks the grant and the client's credentials as Keycloak does."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from fleetpulse.dev_oidc.keys import load_or_create_key
from fleetpulse.simulator.stack import (
    ClientCredentialsTokens,
    DevKeyTokens,
    Stack,
    StackError,
    token_tenant,
)

CLIENTS = {"demo-bot": ("s3cret", {"tenant_id": "demo"}), "platform-bot": ("p4ss", {})}


def fake_jwt(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.sig"


@pytest.fixture
async def token_url() -> AsyncIterator[str]:
    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        auth = request.headers.get("Authorization", "")
        client_id, _, secret = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        known = CLIENTS.get(client_id)
        if known is None or known[0] != secret:
            return web.json_response({"error": "unauthorized_client"}, status=401)
        claims = {"sub": client_id, "exp": int(time.time()) + 60, **known[1]}
        return web.json_response({"access_token": fake_jwt(claims), "token_type": "Bearer"})

    app = web.Application()
    app.router.add_post("/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/token"
    finally:
        await runner.cleanup()


def compose_env(path: Path, token_url: str, secret: str = "s3cret") -> Path:  # noqa: S107
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "\n".join(
            [
                "export FLEETPULSE_API_URL=http://127.0.0.1:18000",
                f"export FLEETPULSE_TOKEN_URL={token_url}",
                "export FLEETPULSE_CLIENT_ID=demo-bot",
                f"export FLEETPULSE_CLIENT_SECRET={secret}",
                "export FLEETPULSE_PLATFORM_CLIENT_ID=platform-bot",
                "export FLEETPULSE_PLATFORM_CLIENT_SECRET=p4ss",
                "export FLEETPULSE_TENANT=demo",
                "export FLEETPULSE_RECEIVER_BIND=0.0.0.0",
                "export FLEETPULSE_RECEIVER_HOST=host.docker.internal",
            ]
        )
        + "\n"
    )
    return path


def dev_env(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    load_or_create_key(directory / "oidc-key.pem")
    (directory / "env").write_text(
        f"export FLEETPULSE_DEV_DIR={directory}\n"
        "export FLEETPULSE_API_URL=http://127.0.0.1:8000\n"
        "export FLEETPULSE_OIDC_ISSUER=http://127.0.0.1:8081/realms/fleetpulse\n"
    )
    return directory / "env"


async def test_compose_env_gives_client_credentials_tokens(
    tmp_path: Path, token_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    compose_env(tmp_path / ".compose" / "env", token_url)
    stack = Stack.discover({})
    assert isinstance(stack.tokens, ClientCredentialsTokens)
    assert stack.api_url == "http://127.0.0.1:18000"
    assert (stack.receiver_bind, stack.receiver_host) == ("0.0.0.0", "host.docker.internal")
    assert stack.tokens.fixed_tenant() == "demo"
    assert token_tenant(await stack.tokens.tenant_admin("demo")) == "demo"
    assert token_tenant(await stack.tokens.platform_admin()) is None
    with pytest.raises(StackError, match="acts in tenant 'demo', not 'acme'"):
        await stack.tokens.tenant_admin("acme")


async def test_a_refused_client_is_a_clear_error(
    tmp_path: Path, token_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    compose_env(tmp_path / ".compose" / "env", token_url, secret="wrong")
    stack = Stack.discover({})
    with pytest.raises(StackError, match="refused client demo-bot: HTTP 401"):
        await stack.tokens.tenant_admin("demo")


def test_the_stack_written_last_wins_unless_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dev = dev_env(tmp_path / ".dev")
    compose = compose_env(tmp_path / ".compose" / "env", "http://127.0.0.1:1/token")
    os.utime(dev, (time.time() - 60, time.time() - 60))
    assert isinstance(Stack.discover({}).tokens, ClientCredentialsTokens)
    os.utime(compose, (time.time() - 120, time.time() - 120))
    dev_stack = Stack.discover({})
    assert isinstance(dev_stack.tokens, DevKeyTokens)
    assert dev_stack.api_url == "http://127.0.0.1:8000"
    assert dev_stack.receiver_bind == "127.0.0.1" and dev_stack.receiver_host is None
    named = Stack.discover({"FLEETPULSE_COMPOSE_ENV": str(compose)})
    assert isinstance(named.tokens, ClientCredentialsTokens)
    named_dev = Stack.discover({"FLEETPULSE_DEV_DIR": str(tmp_path / ".dev")})
    assert isinstance(named_dev.tokens, DevKeyTokens)


def test_missing_settings_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StackError, match="no dev issuer key"):
        Stack.discover({})
    with pytest.raises(StackError, match="FLEETPULSE_CLIENT_ID and FLEETPULSE_CLIENT_SECRET"):
        Stack.discover({"FLEETPULSE_TOKEN_URL": "http://127.0.0.1:1/token"})
