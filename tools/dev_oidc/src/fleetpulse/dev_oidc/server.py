"""``fleetpulse-dev-oidc``: Keycloak's OIDC endpoints for development, on loopback only.

Serves ``{issuer}/.well-known/openid-configuration`` and ``{issuer}/protocol/openid-connect/certs``
with issuer ``http://{host}:{port}/realms/fleetpulse``, and for browser logins (the console) the
authorization-code + PKCE flow: ``/auth`` shows a dev-only page to pick a tenant and roles (no
password: whoever reaches loopback is every user), ``/token`` exchanges the code or a refresh
token, ``/logout`` ends the session. Tokens for scripts are minted offline with the same key
(``fleetpulse-dev-token``), which is why it must never listen beyond loopback: anyone who can
read ``.dev/oidc-key.pem`` is every user.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetpulse.dev_oidc.authorize import loopback_redirect
from fleetpulse.dev_oidc.config import DEFAULT_HOST, DEFAULT_PORT, KEY_FILE, dev_dir, issuer_url
from fleetpulse.dev_oidc.keys import jwks, load_or_create_key
from fleetpulse.dev_oidc.login import LoginFlow, page_html

EXIT_CONFIG = 2
CERTS_PATH = "/protocol/openid-connect/certs"
AUTH_PATH = "/protocol/openid-connect/auth"
TOKEN_PATH = "/protocol/openid-connect/token"  # noqa: S105 - a URL path
LOGOUT_PATH = "/protocol/openid-connect/logout"
DEFAULT_TOKEN_LIFETIME_S = 300
MAX_FORM_BYTES = 16384
DISCOVERY_PATH = "/.well-known/openid-configuration"


class NotLoopbackError(ValueError):
    """The issuer was asked to listen on an address other than loopback."""


def require_loopback(host: str) -> None:
    """Raise :class:`NotLoopbackError` unless ``host`` is ``localhost`` or a loopback IP."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise NotLoopbackError(
            f"refusing to listen on {host!r}: the dev OIDC issuer binds loopback only"
        )


def discovery_document(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "jwks_uri": issuer + CERTS_PATH,
        "authorization_endpoint": issuer + AUTH_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "end_session_endpoint": issuer + LOGOUT_PATH,
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["openid", "profile", "offline_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "tenant_id", "realm_access"],
    }


class IssuerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        key: rsa.RSAPrivateKey,
        issuer: str | None,
        *,
        token_lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S,
    ) -> None:
        require_loopback(host)
        super().__init__((host, port), _Handler)
        self.issuer = issuer or issuer_url(host, self.server_port)
        self.flow = LoginFlow(key, self.issuer, token_lifetime_s)
        self.base_path = urlsplit(self.issuer).path
        self.routes = {
            urlsplit(self.issuer).path + DISCOVERY_PATH: discovery_document(self.issuer),
            urlsplit(self.issuer).path + CERTS_PATH: jwks(key),
        }


class _Handler(BaseHTTPRequestHandler):
    server: IssuerServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        if parts.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif parts.path in self.server.routes:
            self._send(200, self.server.routes[parts.path])
        elif parts.path == self.server.base_path + AUTH_PATH:
            self._page(*self.server.flow.login_page(query))
        elif parts.path == self.server.base_path + LOGOUT_PATH:
            self._logout(query)
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        form = self._form()
        if form is None:
            self._send(413, {"error": "invalid_request", "error_description": "form too large"})
        elif path == self.server.base_path + AUTH_PATH:
            outcome = self.server.flow.authorize(form)
            if isinstance(outcome, str):
                self._redirect(outcome)
            else:
                self._page(*outcome)
        elif path == self.server.base_path + TOKEN_PATH:
            self._send(*self.server.flow.token(form))
        else:
            self._send(404, {"error": "not found"})

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "GET, POST")
        self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _form(self) -> dict[str, str] | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_FORM_BYTES:
            return None
        return form_fields(self.rfile.read(length).decode("utf-8", "replace"))

    def _logout(self, query: dict[str, str]) -> None:
        target = query.get("post_logout_redirect_uri", "")
        if loopback_redirect(target):
            state = query.get("state")
            self._redirect(
                target
                + (("&" if "?" in target else "?") + urlencode({"state": state}) if state else "")
            )
        else:
            self._page(200, "<h1>Signed out</h1><p>You have been signed out of the dev issuer.</p>")

    def _cors(self) -> None:
        # public endpoints and a public client (no cookies): any loopback page may call them
        self.send_header("Access-Control-Allow-Origin", "*")

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _page(self, status: int, body_html: str) -> None:
        body = page_html(body_html).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Options", "DENY")
        self.end_headers()
        self.wfile.write(body)

    def _send(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self._cors()
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"fleetpulse-dev-oidc: {self.address_string()} {format % args}\n")


def form_fields(body: str) -> dict[str, str]:
    """An urlencoded form; a repeated field (``role``) becomes its values joined by commas."""
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body):
        fields[name] = f"{fields[name]},{value}" if name in fields else value
    return fields


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fleetpulse-dev-oidc", description="Dev-only OIDC issuer (loopback only)."
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="loopback address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (8081)")
    parser.add_argument(
        "--key", type=Path, help="PEM key (default: $FLEETPULSE_DEV_DIR/oidc-key.pem)"
    )
    parser.add_argument("--issuer", help="issuer URL (default: http://host:port/realms/fleetpulse)")
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=DEFAULT_TOKEN_LIFETIME_S,
        help="seconds until browser logins' access tokens expire (300)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        require_loopback(args.host)
    except NotLoopbackError as exc:
        print(f"fleetpulse-dev-oidc: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    key = load_or_create_key(args.key or dev_dir() / KEY_FILE)
    server = IssuerServer(
        args.host, args.port, key, args.issuer, token_lifetime_s=args.token_lifetime
    )
    signal.signal(signal.SIGTERM, _exit_quietly)
    print(f"fleetpulse-dev-oidc: issuer {server.issuer}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _exit_quietly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)
