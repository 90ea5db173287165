"""The Keycloak realm file (compose/keycloak/realm-fleetpulse.json) and the API agree: issuer
path, audience, signature algorithm, the tenant_id claim and the realm role names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from fleetpulse.provision_api.auth import ALGORITHMS, ROLE_GRANTS
from fleetpulse.provision_api.domain import ID_PATTERN
from fleetpulse.provision_api.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
REALM_FILE = ROOT / "compose" / "keycloak" / "realm-fleetpulse.json"
COMPOSE_FILE = ROOT / "compose" / "docker-compose.yml"

pytestmark = pytest.mark.skipif(
    not REALM_FILE.exists(), reason="compose/ is not part of this checkout"
)


@pytest.fixture(scope="module")
def realm() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REALM_FILE.read_text())
    return data


def _client(realm: dict[str, Any], client_id: str) -> dict[str, Any]:
    clients = {c["clientId"]: c for c in realm["clients"]}
    assert client_id in clients, f"realm has no client {client_id}"
    found: dict[str, Any] = clients[client_id]
    return found


def _mappers(client: dict[str, Any], kind: str) -> list[dict[str, str]]:
    return [m["config"] for m in client.get("protocolMappers", []) if m["protocolMapper"] == kind]


def _audience() -> str:
    return str(Settings.model_fields["oidc_audience"].default)


def test_realm_name_matches_the_issuer_path(realm: dict[str, Any]) -> None:
    assert realm["realm"] == "fleetpulse"
    compose = yaml.safe_load(COMPOSE_FILE.read_text()) if COMPOSE_FILE.exists() else {}
    issuers = [
        env["FLEETPULSE_OIDC_ISSUER"]
        for svc in compose.get("services", {}).values()
        if isinstance(env := svc.get("environment"), dict) and "FLEETPULSE_OIDC_ISSUER" in env
    ]
    for issuer in issuers:
        assert urlsplit(issuer).path.rstrip("/") == f"/realms/{realm['realm']}"


def test_tokens_are_signed_with_an_algorithm_the_api_accepts(realm: dict[str, Any]) -> None:
    assert realm.get("defaultSignatureAlgorithm", "RS256") in ALGORITHMS


def test_realm_roles_are_the_apis_roles(realm: dict[str, Any]) -> None:
    names = {r["name"] for r in realm["roles"]["realm"]}
    assert set(ROLE_GRANTS) <= names


@pytest.mark.parametrize("client_id", ["fleetpulse-api", "fleetpulse-console"])
def test_access_tokens_carry_the_audience_and_tenant(realm: dict[str, Any], client_id: str) -> None:
    client = _client(realm, client_id)
    audiences = [
        c
        for c in _mappers(client, "oidc-audience-mapper")
        if c.get("included.client.audience") == _audience()
    ]
    assert audiences and audiences[0]["access.token.claim"] == "true"
    tenants = [
        c
        for c in _mappers(client, "oidc-usermodel-attribute-mapper")
        if c.get("claim.name") == "tenant_id"
    ]
    assert tenants, "no mapper puts the tenant_id claim into tokens"
    assert tenants[0]["access.token.claim"] == "true"
    assert tenants[0].get("jsonType.label", "String") == "String"
    assert tenants[0].get("multivalued", "false") == "false"
    scopes = client.get("defaultClientScopes")
    assert scopes is None or "roles" in scopes, "realm_access.roles comes from the roles scope"


def test_client_kinds(realm: dict[str, Any]) -> None:
    api = _client(realm, "fleetpulse-api")
    assert api.get("publicClient") is False
    console = _client(realm, "fleetpulse-console")
    assert console.get("publicClient") is True
    assert console.get("attributes", {}).get("pkce.code.challenge.method") == "S256"


def test_tenant_id_is_a_declared_user_attribute(realm: dict[str, Any]) -> None:
    providers = realm.get("components", {}).get("org.keycloak.userprofile.UserProfileProvider", [])
    for provider in providers:
        config = json.loads(provider["config"]["kc.user.profile.config"][0])
        declared = {a["name"]: a for a in config.get("attributes", [])}
        unmanaged = config.get("unmanagedAttributePolicy")
        assert "tenant_id" in declared or unmanaged in ("ENABLED", "ADMIN_EDIT", "ADMIN_VIEW")


def test_demo_tenant_admin(realm: dict[str, Any]) -> None:
    admins = [u for u in realm.get("users", []) if "tenant-admin" in u.get("realmRoles", [])]
    assert admins, "the realm has no demo tenant admin"
    tenant = admins[0]["attributes"]["tenant_id"][0]
    assert re.match(ID_PATTERN, tenant)
