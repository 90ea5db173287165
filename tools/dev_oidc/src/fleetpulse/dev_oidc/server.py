"""``fleetpulse-dev-oidc``: Keycloak's discovery and JWKS endpoints, on loopback only.

Serves ``{issuer}/.well-known/openid-configuration`` and ``{issuer}/protocol/openid-connect/certs``
with issuer ``http://{host}:{port}/realms/fleetpulse``. It signs nothing itself: tokens are minted
offline with the same key (``fleetpulse-dev-token``), which is why it must never listen beyond
loopback: anyone who can read ``.dev/oidc-key.pem`` is every user.
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
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetpulse.dev_oidc.config import DEFAULT_HOST, DEFAULT_PORT, KEY_FILE, dev_dir, issuer_url
from fleetpulse.dev_oidc.keys import jwks, load_or_create_key

EXIT_CONFIG = 2
CERTS_PATH = "/protocol/openid-connect/certs"
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
        "authorization_endpoint": issuer + "/protocol/openid-connect/auth",
        "token_endpoint": issuer + "/protocol/openid-connect/token",
        "response_types_supported": ["code", "token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "tenant_id", "realm_access"],
    }


class IssuerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, key: rsa.RSAPrivateKey, issuer: str | None) -> None:
        require_loopback(host)
        super().__init__((host, port), _Handler)
        self.issuer = issuer or issuer_url(host, self.server_port)
        self.routes = {
            urlsplit(self.issuer).path + DISCOVERY_PATH: discovery_document(self.issuer),
            urlsplit(self.issuer).path + CERTS_PATH: jwks(key),
        }


class _Handler(BaseHTTPRequestHandler):
    server: IssuerServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(200, {"status": "ok"})
        elif path in self.server.routes:
            self._send(200, self.server.routes[path])
        else:
            self._send(404, {"error": "not found"})

    def _send(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"fleetpulse-dev-oidc: {self.address_string()} {format % args}\n")


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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        require_loopback(args.host)
    except NotLoopbackError as exc:
        print(f"fleetpulse-dev-oidc: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    key = load_or_create_key(args.key or dev_dir() / KEY_FILE)
    server = IssuerServer(args.host, args.port, key, args.issuer)
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
