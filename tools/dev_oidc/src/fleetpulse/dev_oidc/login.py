"""The dev issuer's browser login: the page that picks a tenant and roles, and ``/token``.

Pure request -> response functions (no sockets), so the flow is tested without a browser; the
HTTP handler in :mod:`fleetpulse.dev_oidc.server` only decodes and sends.
"""

from __future__ import annotations

import html
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetpulse.dev_oidc.authorize import AuthorizationRequest, Grant, GrantStore, OAuthError
from fleetpulse.dev_oidc.tokens import KNOWN_ROLES, TokenRequest, mint_id_token, mint_token

ROLE_ORDER = ("viewer", "operator", "tenant-admin", "platform-admin")
CARRIED = (
    "client_id",
    "redirect_uri",
    "response_type",
    "code_challenge",
    "code_challenge_method",
    "state",
    "nonce",
    "scope",
)
Page = tuple[int, str]


def page_html(body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>FleetPulse dev sign-in</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;"
        "color:#1a1b1e}fieldset{border:1px solid #ced4da;border-radius:6px;margin:1rem 0}"
        "label{display:block;margin:.4rem 0}input[type=text]{width:100%;padding:.4rem;"
        "box-sizing:border-box}button{padding:.5rem 1.2rem;background:#1864ab;color:#fff;"
        "border:0;border-radius:4px;font-size:1rem}.error{color:#c92a2a}.note{color:#495057}"
        f"</style></head><body><main>{body}</main></body></html>"
    )


def login_form(request: dict[str, str], error: str | None = None, tenant: str = "acme") -> str:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(request[name])}">'
        for name in CARRIED
        if request.get(name) is not None
    )
    roles = "".join(
        f'<label><input type="checkbox" name="role" value="{role}"'
        f"{' checked' if role == 'tenant-admin' else ''}> {role}</label>"
        for role in ROLE_ORDER
    )
    problem = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return (
        "<h1>FleetPulse dev sign-in</h1>"
        '<p class="note">Development issuer: pick who you are. No password; never exposed '
        "beyond loopback.</p>"
        f'{problem}<form method="post">{hidden}'
        '<label for="username">User name</label>'
        '<input type="text" id="username" name="username" value="dev-user" required>'
        '<label for="tenant">Tenant</label>'
        f'<input type="text" id="tenant" name="tenant" value="{html.escape(tenant)}">'
        f"<fieldset><legend>Roles</legend>{roles}</fieldset>"
        '<button type="submit">Sign in</button></form>'
    )


class LoginFlow:
    """``/auth`` (page and form post) and ``/token`` of the dev issuer."""

    def __init__(self, key: rsa.RSAPrivateKey, issuer: str, token_lifetime_s: int) -> None:
        self._key = key
        self._issuer = issuer
        self._lifetime = token_lifetime_s
        self.grants = GrantStore()

    def login_page(self, query: dict[str, str]) -> Page:
        try:
            AuthorizationRequest.parse(query)
        except OAuthError as exc:
            return 400, f'<h1>Sign-in refused</h1><p class="error">{html.escape(str(exc))}</p>'
        return 200, login_form(query)

    def authorize(self, form: dict[str, str], roles: list[str] | None = None) -> str | Page:
        """The redirect (with ``code`` and ``state``) for a completed form, or the page again."""
        try:
            request = AuthorizationRequest.parse(form)
        except OAuthError as exc:
            return 400, f'<h1>Sign-in refused</h1><p class="error">{html.escape(str(exc))}</p>'
        chosen = roles if roles is not None else form_roles(form)
        try:
            user = TokenRequest(
                roles=tuple(r for r in ROLE_ORDER if r in chosen),
                tenant=form.get("tenant", "").strip() or None,
                subject=form.get("username", "").strip() or "dev-user",
                lifetime_s=self._lifetime,
                client_id=request.client_id,
            )
        except ValueError as exc:
            return 200, login_form(form, str(exc), form.get("tenant", ""))
        query = {"code": self.grants.issue_code(request, user)}
        if request.state is not None:
            query["state"] = request.state
        separator = "&" if "?" in request.redirect_uri else "?"
        return request.redirect_uri + separator + urlencode(query)

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        try:
            grant = self._grant(form)
        except OAuthError as exc:
            return 400, {"error": exc.error, "error_description": exc.description}
        return 200, self._tokens(grant)

    def _grant(self, form: dict[str, str]) -> Grant:
        kind = form.get("grant_type")
        client_id = form.get("client_id", "")
        if kind == "authorization_code":
            return self.grants.redeem_code(
                form.get("code", ""),
                client_id,
                form.get("redirect_uri", ""),
                form.get("code_verifier", ""),
            )
        if kind == "refresh_token":
            return self.grants.redeem_refresh(form.get("refresh_token", ""), client_id)
        raise OAuthError("unsupported_grant_type", f"grant_type {kind!r}")

    def _tokens(self, grant: Grant) -> dict[str, object]:
        return {
            "access_token": mint_token(self._key, grant.user, issuer=self._issuer),
            "id_token": mint_id_token(
                self._key,
                grant.user,
                issuer=self._issuer,
                client_id=grant.client_id,
                nonce=grant.nonce,
            ),
            "refresh_token": self.grants.issue_refresh(grant),
            "token_type": "Bearer",
            "expires_in": grant.user.lifetime_s,
            "scope": grant.scope,
        }


def form_roles(form: dict[str, str]) -> list[str]:
    """Roles ticked on the page (``role`` repeated; the handler joins repeats with commas)."""
    return [r for r in form.get("role", "").split(",") if r in KNOWN_ROLES]
