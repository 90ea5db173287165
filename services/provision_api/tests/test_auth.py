"""Authentication and authorisation: every bad token is refused, roles and tenants are enforced,
and a key rotated at the issuer is picked up without a restart."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from .conftest import AUDIENCE, SigningKey, TestIssuer

DEVICES = "/api/v1/devices"


def _b64(data: Mapping[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _unsigned(oidc: TestIssuer) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': oidc.key.kid})}.{_b64(oidc.claims())}."


def _hs256_with_public_key(oidc: TestIssuer) -> str:
    public_pem = oidc.key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": oidc.key.kid}
    signing_input = f"{_b64(header)}.{_b64(oidc.claims())}".encode()
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    return signing_input.decode() + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")


BAD_TOKENS: dict[str, Callable[[TestIssuer], str]] = {
    "expired": lambda o: o.token(exp=int(time.time()) - 60, iat=int(time.time()) - 600),
    "not yet valid": lambda o: o.token(nbf=int(time.time()) + 600),
    "wrong issuer": lambda o: o.token(iss="http://127.0.0.1:1/realms/other"),
    "wrong audience": lambda o: o.token(aud=["account", "another-api"]),
    "no audience": lambda o: o.token(aud=None),
    "unknown key": lambda o: o.token(key=SigningKey()),
    "alg none": _unsigned,
    "HS256 with the public key": _hs256_with_public_key,
    "garbage": lambda o: "not-a-jwt",
    "tampered payload": lambda o: (
        lambda t: (
            t.split(".")[0]
            + "."
            + _b64({**o.claims(), "tenant_id": "globex"})
            + "."
            + t.split(".")[2]
        )
    )(o.token()),
    "missing tenant claim": lambda o: o.token(tenant=None),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_tokens_are_refused_with_401(
    case: str, api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    token = BAD_TOKENS[case](oidc)
    response = await api.get(DEVICES, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, (case, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_missing_token_is_401(api: httpx.AsyncClient, tenants: list[str]) -> None:
    assert (await api.get(DEVICES)).status_code == 401
    assert (await api.get(DEVICES, headers={"Authorization": "Basic dTpw"})).status_code == 401


async def test_valid_token_is_accepted(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    response = await api.get(DEVICES, headers=oidc.headers(roles=("viewer",)))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("roles", "method", "path", "expected"),
    [
        ((), "GET", DEVICES, 403),
        (("offline_access",), "GET", DEVICES, 403),
        (("viewer",), "POST", DEVICES, 403),
        (("operator",), "POST", DEVICES, 403),
        (("viewer",), "POST", "/api/v1/alerts/a1/ack", 403),
        (("operator",), "POST", "/api/v1/alerts/a1/ack", 404),
        (("tenant-admin",), "POST", "/api/v1/tenants", 403),
        (("tenant-admin",), "GET", "/api/v1/tenants", 403),
        (("platform-admin",), "GET", DEVICES, 403),
    ],
)
async def test_too_few_roles_are_refused(
    roles: tuple[str, ...],
    method: str,
    path: str,
    expected: int,
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    tenants: list[str],
) -> None:
    body = {"device_id": "d1"} if path == DEVICES else {"tenant_id": "t9", "name": "T9"}
    response = await api.request(
        method, path, headers=oidc.headers(roles=roles), json=body if method == "POST" else None
    )
    assert response.status_code == expected, response.text


async def test_another_tenants_resources_answer_404(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    globex = oidc.headers("globex")
    assert (
        await api.post(DEVICES, json={"device_id": "secret-dev"}, headers=globex)
    ).status_code == 201
    rule = await api.post(
        "/api/v1/rules",
        headers=globex,
        json={"name": "r", "kind": "no_data", "timeout_s": 60, "severity": "info"},
    )
    rule_id = rule.json()["rule_id"]
    acme = oidc.headers("acme")
    for method, path in [
        ("GET", f"{DEVICES}/secret-dev"),
        ("DELETE", f"{DEVICES}/secret-dev"),
        ("POST", f"{DEVICES}/secret-dev/rotate-credentials"),
        ("GET", f"{DEVICES}/secret-dev/events"),
        ("GET", f"{DEVICES}/secret-dev/telemetry"),
        ("GET", f"/api/v1/rules/{rule_id}"),
        ("DELETE", f"/api/v1/rules/{rule_id}"),
    ]:
        response = await api.request(method, path, headers=acme)
        assert response.status_code == 404, (method, path, response.text)
    listed = await api.get(DEVICES, headers=acme)
    assert listed.json()["items"] == []


async def test_key_rotation_at_the_issuer_needs_no_restart(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    old = oidc.key
    assert (await api.get(DEVICES, headers=oidc.headers())).status_code == 200
    oidc.rotate()
    assert (await api.get(DEVICES, headers=oidc.headers())).status_code == 200
    stale = oidc.token(key=old)
    assert (await api.get(DEVICES, headers={"Authorization": f"Bearer {stale}"})).status_code == 401


async def test_keys_are_cached(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    before = oidc.jwks_requests
    for _ in range(5):
        assert (await api.get(DEVICES, headers=oidc.headers())).status_code == 200
    assert oidc.jwks_requests == before


def test_test_tokens_really_are_rs256(oidc: TestIssuer) -> None:
    header = jwt.get_unverified_header(oidc.token())
    assert header["alg"] == "RS256"
    public = oidc.key.private.public_key()
    assert (
        jwt.decode(oidc.token(), public, algorithms=["RS256"], audience=AUDIENCE)["tenant_id"]
        == "acme"
    )
