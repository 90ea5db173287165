"""`fleetpulse-smoke --mode aws` against `make dev`, arranged as AWS arranges it:

* MQTT over TLS only: a TLS listener in front of the dev stack's private Mosquitto, with a
  certificate from a CA this test generates (the NLB's TLS listener in AWS, ACM's certificate);
  the smoke trusts that CA only through FLEETPULSE_SMOKE_MQTT_CA_FILE.
* A client-credentials token endpoint (Keycloak's, in AWS): it checks the client secret and
  issues a token of the dev issuer the stack trusts, shaped as the realm's fleetpulse-smoke
  service account (platform-admin and tenant-admin of tenant "smoke").
* No receiver at all: delivery is proven by the deliveries API (an MQTT integration).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetpulse.dev_oidc import DevOidcConfig, TokenRequest, mint_token
from fleetpulse.dev_oidc.config import read_env_file
from fleetpulse.dev_oidc.keys import load_key
from fleetpulse.testing.ports import free_port

CLIENT_ID = "fleetpulse-smoke"
CLIENT_SECRET = "smoke-secret-" + base64.b32encode(os.urandom(10)).decode().lower()


def _e2e() -> Any:
    """tests/e2e/test_smoke_dev.py's dev_stack fixture, imported by path (no package here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "smoke_dev", Path(__file__).with_name("test_smoke_dev.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


_dev = _e2e()
dev_stack = _dev.dev_stack
RunningStack = _dev.RunningStack
run = _dev.run
BIN = _dev.BIN


# --- a CA and a server certificate for "localhost" --------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(directory: Path) -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FleetPulse test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


# --- the TLS listener in front of the broker (the NLB's job in AWS) -----------------------


class TlsFront:
    """Accepts TLS on ``port`` and forwards the plain bytes to the broker (like the NLB)."""

    def __init__(self, pki: Pki, upstream_port: int) -> None:
        self.port = free_port()
        self._upstream = upstream_port
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(pki.cert_file, pki.key_file)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self._server = future.result(timeout=10)

    async def _serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self._context)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


# --- the client-credentials token endpoint (Keycloak's in AWS) ----------------------------


def token_server(dev_dir: Path) -> tuple[ThreadingHTTPServer, str]:
    oidc = DevOidcConfig.discover({"FLEETPULSE_DEV_DIR": str(dev_dir)})
    key = load_key(oidc.key_path)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            auth = self.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if form.get("grant_type") != ["client_credentials"] or auth != expected:
                self._send(401, {"error": "unauthorized_client"})
                return
            token = mint_token(
                key,
                TokenRequest(
                    roles=("platform-admin", "tenant-admin", "operator"),
                    tenant="smoke",
                    subject="service-account-fleetpulse-smoke",
                ),
                issuer=oidc.issuer,
                audience=oidc.audience,
            )
            self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 900})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/token"


@pytest.fixture
def aws_like(dev_stack: Any, tmp_path: Path) -> Iterator[tuple[Any, dict[str, str], TlsFront]]:
    env_file = read_env_file(dev_stack.dev.root / "env")
    broker_port = int(env_file["FLEETPULSE_MQTT_PUBLIC_PORT"])
    pki = make_pki(tmp_path)
    front = TlsFront(pki, broker_port)
    front.start()
    server, token_url = token_server(dev_stack.dev.root)
    env = {
        **dev_stack.env,
        "FLEETPULSE_API_URL": dev_stack.state.api_url,
        "FLEETPULSE_SMOKE_TOKEN_URL": token_url,
        "FLEETPULSE_SMOKE_CLIENT_ID": CLIENT_ID,
        "FLEETPULSE_SMOKE_CLIENT_SECRET": CLIENT_SECRET,
        "FLEETPULSE_SMOKE_MQTT_CA_FILE": str(pki.ca_file),
    }
    try:
        yield dev_stack, env, front
    finally:
        server.shutdown()
        front.stop()


def tls_refuses_plain_mqtt(port: int) -> bool:
    """A plain MQTT CONNECT to the TLS port gets no CONNACK (the old smoke's mistake)."""
    # CONNECT, MQTT 3.1.1, clean session, keep-alive 60, client id "test"
    connect = bytes.fromhex("101000044d5154540402003c000474657374")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(connect)
        sock.settimeout(5)
        try:
            data = sock.recv(4)
        except (TimeoutError, ConnectionError):
            return True
    return not data.startswith(b"\x20")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_aws_mode_smoke_passes_with_client_credentials_tls_and_the_deliveries_api(
    aws_like: tuple[Any, dict[str, str], TlsFront],
) -> None:
    stack, env, front = aws_like
    args = [
        "--mode",
        "aws",
        "--step-timeout",
        "90",
        "--mqtt-host",
        "localhost",
        "--mqtt-port",
        str(front.port),
    ]
    assert tls_refuses_plain_mqtt(front.port)

    # Negative controls first (fast): a wrong client secret, and no trust in the test CA.
    wrong = run(
        [BIN / "fleetpulse-smoke", *args],
        {**env, "FLEETPULSE_SMOKE_CLIENT_SECRET": "nope"},
        timeout=120,
    )
    assert wrong.returncode == 1 and "FAIL client-credentials token" in wrong.stdout, (
        wrong.stdout + wrong.stderr
    )

    smoke = run([BIN / "fleetpulse-smoke", *args], env, timeout=800)
    assert smoke.returncode == 0, f"{smoke.stdout}{smoke.stderr}\n{stack.logs()}"
    assert "alert.opened delivered (deliveries API)" in smoke.stdout
    assert "alert.resolved delivered (deliveries API)" in smoke.stdout
    assert "webhook" not in smoke.stdout.lower()

    untrusted = {k: v for k, v in env.items() if k != "FLEETPULSE_SMOKE_MQTT_CA_FILE"}
    failed = run([BIN / "fleetpulse-smoke", *args], untrusted, timeout=300)
    assert failed.returncode == 1 and "FAIL publish breach as the device" in failed.stdout, (
        failed.stdout
    )


def test_aws_mode_names_a_missing_setting() -> None:
    result = run(
        [BIN / "fleetpulse-smoke", "--mode", "aws"],
        {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")},
        timeout=60,
    )
    assert result.returncode == 2
    assert "FLEETPULSE_API_URL is not set (--mode aws)" in result.stderr
