"""The authorization-code + PKCE flow of the dev issuer, and its refresh tokens.

Keycloak's endpoints and error codes (RFC 6749, RFC 7636): a public client (no secret) sends
the user to ``/auth`` with an S256 ``code_challenge``; the dev-only page lets the user pick a
tenant and roles; the issuer redirects back with a one-time ``code`` (60 s) that only the holder
of the ``code_verifier`` can exchange at ``/token``. Refresh tokens rotate: each is good once.
Only loopback redirect URIs are accepted: the issuer itself listens on loopback only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fleetpulse.dev_oidc.tokens import TokenRequest

CODE_TTL_S = 60.0
REFRESH_TTL_S = 8 * 3600.0
#: Public clients the dev issuer knows (Keycloak's realm has the same client ids).
CLIENTS = frozenset({"fleetpulse-console"})


class OAuthError(Exception):
    """An RFC 6749 error: ``error`` is the code (invalid_request, invalid_grant, ...)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def s256(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (base64url of SHA-256, no padding)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def loopback_redirect(uri: str) -> bool:
    """``http(s)://`` to localhost or a loopback address, no fragment."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or parts.fragment or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """The query of ``GET /auth``, checked: what the login page carries through its form."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    state: str | None
    nonce: str | None
    scope: str

    @classmethod
    def parse(cls, query: dict[str, str]) -> AuthorizationRequest:
        """Raise :class:`OAuthError` for anything but a PKCE code request of a known client."""
        client_id = query.get("client_id", "")
        redirect_uri = query.get("redirect_uri", "")
        if client_id not in CLIENTS:
            raise OAuthError("unauthorized_client", f"unknown client_id {client_id!r}")
        if not loopback_redirect(redirect_uri):
            raise OAuthError("invalid_request", "redirect_uri must be a loopback http(s) URL")
        if query.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required")
        return cls(
            client_id=client_id,
            redirect_uri=redirect_uri,
            code_challenge=query["code_challenge"],
            state=query.get("state"),
            nonce=query.get("nonce"),
            scope=query.get("scope", "openid"),
        )


@dataclass(frozen=True, slots=True)
class Grant:
    """Who logged in, for which client: what a code or a refresh token stands for."""

    client_id: str
    user: TokenRequest
    scope: str
    nonce: str | None = None


@dataclass(frozen=True, slots=True)
class _Code:
    grant: Grant
    redirect_uri: str
    challenge: str
    expires: float


class GrantStore:
    """One-time codes and rotating refresh tokens, in memory (the dev issuer is one process)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, tuple[Grant, float]] = {}

    def issue_code(self, request: AuthorizationRequest, user: TokenRequest) -> str:
        code = secrets.token_urlsafe(32)
        grant = Grant(request.client_id, user, request.scope, request.nonce)
        entry = _Code(
            grant, request.redirect_uri, request.code_challenge, self._clock() + CODE_TTL_S
        )
        with self._lock:
            self._codes[code] = entry
        return code

    def redeem_code(self, code: str, client_id: str, redirect_uri: str, verifier: str) -> Grant:
        """The grant of ``code`` (once); :class:`OAuthError` ``invalid_grant`` otherwise."""
        with self._lock:
            entry = self._codes.pop(code, None)
        if entry is None or entry.expires < self._clock():
            raise OAuthError("invalid_grant", "unknown, used or expired code")
        if entry.grant.client_id != client_id or entry.redirect_uri != redirect_uri:
            raise OAuthError("invalid_grant", "client_id or redirect_uri differ from /auth")
        if not hmac.compare_digest(s256(verifier), entry.challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match code_challenge")
        return entry.grant

    def issue_refresh(self, grant: Grant) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[token] = (grant, self._clock() + REFRESH_TTL_S)
        return token

    def redeem_refresh(self, token: str, client_id: str) -> Grant:
        """The grant of ``token``, which is spent (rotation); ``invalid_grant`` otherwise."""
        with self._lock:
            entry = self._refresh.pop(token, None)
        if entry is None or entry[1] < self._clock():
            raise OAuthError("invalid_grant", "unknown, used or expired refresh token")
        if entry[0].client_id != client_id:
            raise OAuthError("invalid_grant", "refresh token of another client")
        return entry[0]
