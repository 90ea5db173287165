"""The dev issuer: discovery + JWKS verify a minted token; non-loopback binds are refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from fleetpulse.dev_oidc.config import DevOidcConfig, read_env_file
from fleetpulse.dev_oidc.keys import load_or_create_key
from fleetpulse.dev_oidc.server import IssuerServer, NotLoopbackError, require_loopback
from fleetpulse.dev_oidc.tokens import TokenRequest, mint_token


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / ".dev" / "oidc-key.pem"


@pytest.fixture
def issuer_server(key_path: Path) -> Iterator[IssuerServer]:
    server = IssuerServer("127.0.0.1", 0, load_or_create_key(key_path), None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_key_is_created_once_with_mode_600(key_path: Path) -> None:
    first = load_or_create_key(key_path)
    second = load_or_create_key(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert first.private_numbers() == second.private_numbers()


def test_discovery_and_jwks_verify_a_minted_token(
    issuer_server: IssuerServer, key_path: Path
) -> None:
    issuer = issuer_server.issuer
    discovery = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
    assert discovery["issuer"] == issuer
    assert discovery["jwks_uri"] == f"{issuer}/protocol/openid-connect/certs"
    token = mint_token(
        load_or_create_key(key_path),
        TokenRequest(roles=("tenant-admin", "operator"), tenant="acme"),
        issuer=issuer,
    )
    signing_key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience="fleetpulse-api",
        issuer=issuer,
        options={"require": ["exp", "nbf", "iat", "sub"]},
    )
    assert claims["tenant_id"] == "acme"
    assert claims["realm_access"]["roles"] == ["tenant-admin", "operator"]


def test_platform_admin_needs_no_tenant_but_others_do() -> None:
    assert TokenRequest(roles=("platform-admin",)).tenant is None
    with pytest.raises(ValueError, match="tenant"):
        TokenRequest(roles=("tenant-admin",))
    with pytest.raises(ValueError, match="unknown roles"):
        TokenRequest(roles=("root",), tenant="t")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_non_loopback_addresses_are_refused(host: str) -> None:
    with pytest.raises(NotLoopbackError):
        require_loopback(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_addresses_are_allowed(host: str) -> None:
    require_loopback(host)


def test_the_console_script_exits_2_on_a_public_bind(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fleetpulse.dev_oidc.server import main; main()",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "FLEETPULSE_DEV_DIR": str(tmp_path)},
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "loopback" in result.stderr
    assert not (tmp_path / "oidc-key.pem").exists()


def test_token_cli_reads_key_and_issuer_from_the_dev_dir(tmp_path: Path) -> None:
    load_or_create_key(tmp_path / "oidc-key.pem")
    issuer = "http://127.0.0.1:9999/realms/fleetpulse"
    (tmp_path / "env").write_text(f"export FLEETPULSE_OIDC_ISSUER='{issuer}'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fleetpulse.dev_oidc.cli import main; main()",
            "--roles",
            "platform-admin",
        ],
        capture_output=True,
        text=True,
        env={**env, "FLEETPULSE_DEV_DIR": str(tmp_path)},
        timeout=30,
        check=True,
    )
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert claims["iss"] == issuer
    assert claims["realm_access"]["roles"] == ["platform-admin"]
    assert "tenant_id" not in claims


def test_env_file_values_are_shell_unquoted(tmp_path: Path) -> None:
    (tmp_path / "env").write_text("# comment\nexport FLEETPULSE_X='a b'\nexport FLEETPULSE_Y=c\n")
    assert read_env_file(tmp_path / "env") == {"FLEETPULSE_X": "a b", "FLEETPULSE_Y": "c"}
    config = DevOidcConfig.discover({"FLEETPULSE_DEV_DIR": str(tmp_path)})
    assert config.key_path == tmp_path / "oidc-key.pem"
