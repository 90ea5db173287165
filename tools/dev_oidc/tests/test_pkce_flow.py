"""The dev issuer's browser login over real HTTP: authorization code + PKCE (S256), the page
that picks tenant and roles, one-time codes, rotating refresh tokens, logout."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from fleetpulse.dev_oidc.authorize import GrantStore, OAuthError, loopback_redirect, s256
from fleetpulse.dev_oidc.keys import load_or_create_key
from fleetpulse.dev_oidc.server import IssuerServer, form_fields

CLIENT = "fleetpulse-console"
REDIRECT = "http://127.0.0.1:5173/callback"


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[IssuerServer]:
    server = IssuerServer(
        "127.0.0.1", 0, load_or_create_key(tmp_path / "k.pem"), None, token_lifetime_s=120
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


def _auth_query(challenge: str, **extra: str) -> dict[str, str]:
    return {
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-1",
        "nonce": "n-1",
        "scope": "openid profile",
        **extra,
    }


def _login(
    client: httpx.Client, issuer: IssuerServer, challenge: str, tenant: str, roles: list[str]
) -> str:
    discovery = client.get(f"{issuer.issuer}/.well-known/openid-configuration").json()
    page = client.get(discovery["authorization_endpoint"], params=_auth_query(challenge))
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'name="tenant"' in page.text and 'value="tenant-admin"' in page.text
    hidden = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', page.text))
    assert hidden["code_challenge"] == challenge
    form = [*hidden.items(), ("tenant", tenant), ("username", "alice")]
    form += [("role", role) for role in roles]
    answer = client.post(
        discovery["authorization_endpoint"],
        content=str(httpx.QueryParams(form)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st-1"]
    return query["code"][0]


def _token(client: httpx.Client, issuer: IssuerServer, **form: str) -> httpx.Response:
    return client.post(
        f"{issuer.issuer}/protocol/openid-connect/token", data={"client_id": CLIENT, **form}
    )


def _claims(issuer: IssuerServer, token: str, audience: str) -> dict[str, object]:
    jwks = httpx.get(f"{issuer.issuer}/protocol/openid-connect/certs").json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    return dict(
        jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=issuer.issuer)
    )


def test_code_flow_with_pkce_gives_tokens_with_the_chosen_tenant_and_roles(
    issuer: IssuerServer,
) -> None:
    verifier, challenge = _pkce()
    with httpx.Client() as client:
        code = _login(client, issuer, challenge, "acme", ["viewer", "operator"])
        wrong = _token(
            client,
            issuer,
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=_pkce()[0],
        )
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        code = _login(client, issuer, challenge, "acme", ["viewer", "operator"])
        tokens = _token(
            client,
            issuer,
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=verifier,
        )
        assert tokens.status_code == 200, tokens.text
        assert tokens.headers["access-control-allow-origin"] == "*"
        body = tokens.json()
        access = _claims(issuer, body["access_token"], "fleetpulse-api")
        assert access["tenant_id"] == "acme" and access["sub"] == "alice"
        assert access["realm_access"] == {"roles": ["viewer", "operator"]}
        assert access["azp"] == CLIENT
        identity = _claims(issuer, body["id_token"], CLIENT)
        assert identity["nonce"] == "n-1" and identity["tenant_id"] == "acme"
        assert body["expires_in"] == 120 and body["token_type"] == "Bearer"
        again = _token(
            client,
            issuer,
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=verifier,
        )
        assert again.status_code == 400, "a code is good once"


def test_refresh_tokens_rotate(issuer: IssuerServer) -> None:
    verifier, challenge = _pkce()
    with httpx.Client() as client:
        code = _login(client, issuer, challenge, "globex", ["tenant-admin"])
        first = _token(
            client,
            issuer,
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=verifier,
        ).json()
        refreshed = _token(
            client, issuer, grant_type="refresh_token", refresh_token=first["refresh_token"]
        )
        assert refreshed.status_code == 200, refreshed.text
        body = refreshed.json()
        assert _claims(issuer, body["access_token"], "fleetpulse-api")["tenant_id"] == "globex"
        assert body["refresh_token"] != first["refresh_token"]
        spent = _token(
            client, issuer, grant_type="refresh_token", refresh_token=first["refresh_token"]
        )
        assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"
        unknown = _token(client, issuer, grant_type="password", username="x")
        assert unknown.json()["error"] == "unsupported_grant_type"


def test_auth_refuses_unknown_clients_foreign_redirects_and_plain_challenges(
    issuer: IssuerServer,
) -> None:
    _, challenge = _pkce()
    auth = f"{issuer.issuer}/protocol/openid-connect/auth"
    with httpx.Client() as client:
        assert client.get(auth, params=_auth_query(challenge)).status_code == 200  # control
        for bad in (
            {"client_id": "other"},
            {"redirect_uri": "https://evil.example/callback"},
            {"code_challenge_method": "plain"},
            {"code_challenge": ""},
            {"response_type": "token"},
        ):
            refused = client.get(auth, params=_auth_query(challenge, **bad))
            assert refused.status_code == 400, bad
            assert "Sign-in refused" in refused.text


def test_a_login_without_tenant_or_role_is_explained_on_the_page(issuer: IssuerServer) -> None:
    flow = issuer.flow
    _, challenge = _pkce()
    outcome = flow.authorize({**_auth_query(challenge), "tenant": "acme"}, roles=[])
    assert isinstance(outcome, tuple) and "at least one role" in outcome[1]
    outcome = flow.authorize({**_auth_query(challenge), "tenant": ""}, roles=["viewer"])
    assert isinstance(outcome, tuple) and "--tenant is required" in outcome[1]
    redirect = flow.authorize({**_auth_query(challenge), "tenant": ""}, roles=["platform-admin"])
    assert isinstance(redirect, str) and redirect.startswith(REDIRECT + "?code=")


def test_logout_redirects_only_to_loopback(issuer: IssuerServer) -> None:
    logout = f"{issuer.issuer}/protocol/openid-connect/logout"
    with httpx.Client() as client:
        back = client.get(
            logout,
            params={"post_logout_redirect_uri": "http://localhost:5173/", "state": "s"},
            follow_redirects=False,
        )
        assert (
            back.status_code == 302 and back.headers["location"] == "http://localhost:5173/?state=s"
        )
        away = client.get(
            logout,
            params={"post_logout_redirect_uri": "https://evil.example/"},
            follow_redirects=False,
        )
        assert away.status_code == 200 and "Signed out" in away.text


def test_units() -> None:
    assert (
        s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    assert loopback_redirect("http://[::1]:8080/cb") and not loopback_redirect("http://10.0.0.1/")
    assert not loopback_redirect("http://localhost/#frag")
    assert form_fields("role=viewer&role=operator&tenant=a") == {
        "role": "viewer,operator",
        "tenant": "a",
    }
    now = [0.0]
    store = GrantStore(clock=lambda: now[0])
    from fleetpulse.dev_oidc.authorize import AuthorizationRequest
    from fleetpulse.dev_oidc.tokens import TokenRequest

    request = AuthorizationRequest.parse(_auth_query(s256("v" * 43)))
    code = store.issue_code(request, TokenRequest(roles=("viewer",), tenant="t"))
    now[0] = 61.0
    with pytest.raises(OAuthError, match="expired"):
        store.redeem_code(code, CLIENT, REDIRECT, "v" * 43)
