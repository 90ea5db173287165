"""``python -m fleetpulse.devstack.console``: serve the built console (``console/dist``) on loopback.

What CloudFront does in AWS, for ``make dev``: files under ``assets/`` (hashed names) cached
immutable, ``index.html`` no-cache, every other path answered with ``index.html`` (client-side
routes such as ``/alerts/a-1``), and ``/config.json`` (issuer, API URL, client id) written from
the command line instead of at deploy time.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"


def runtime_config(
    issuer: str, api_url: str, client_id: str = "fleetpulse-console"
) -> dict[str, str]:
    """The console's /config.json (console/src/config.ts reads it)."""
    return {"issuer": issuer, "apiUrl": api_url, "clientId": client_id}


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, dist: Path, config: dict[str, str]) -> None:
        if not (dist / "index.html").is_file():
            raise FileNotFoundError(f"{dist}/index.html: build the console first (make console)")
        super().__init__((host, port), _Handler)
        self.dist = dist.resolve()
        self.config = json.dumps(config).encode()


class _Handler(BaseHTTPRequestHandler):
    server: ConsoleServer

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/config.json":
            self._send(200, self.server.config, "application/json", NO_CACHE)
            return
        file = (self.server.dist / path.lstrip("/")).resolve()
        inside = file.is_relative_to(self.server.dist) and file.is_file()
        if inside and path != "/index.html":
            cache = IMMUTABLE if path.startswith("/assets/") else NO_CACHE
            kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self._send(200, file.read_bytes(), kind, cache)
        elif path.startswith("/assets/"):
            self._send(404, b"not found", "text/plain", NO_CACHE)
        else:  # the SPA's own routes
            index = (self.server.dist / "index.html").read_bytes()
            self._send(200, index, "text/html; charset=utf-8", NO_CACHE)

    def _send(self, status: int, body: bytes, kind: str, cache: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.command != "GET" or not str(args[0:1]).startswith("('GET /assets"):
            sys.stderr.write(f"console: {self.address_string()} {format % args}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fleetpulse-devstack-console", description=__doc__)
    parser.add_argument("--dist", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5173)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--client-id", default="fleetpulse-console")
    args = parser.parse_args(argv)
    config = runtime_config(args.issuer, args.api_url, args.client_id)
    try:
        server = ConsoleServer(args.host, args.port, args.dist, config)
    except FileNotFoundError as exc:
        print(f"console: {exc}", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    print(
        f"console: serving {args.dist} on http://{args.host}:{server.server_port}", file=sys.stderr
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
