"""A private Mosquitto broker with dynamic security, for tests that speak MQTT.

Fixtures
--------
``mosquitto`` (session scope) yields a :class:`MosquittoBroker`: a ``/usr/sbin/mosquitto`` of our
own on a free loopback port, configured in a temporary directory with

- ``per_listener_settings false``, ``allow_anonymous false``: every client needs credentials;
- the dynamic-security plugin, its JSON created by ``mosquitto_ctrl dynsec init`` with an admin
  (``broker.admin_username`` / ``broker.admin_password``) that may only use
  ``$CONTROL/dynamic-security/#``;
- ``max_inflight_messages 1000`` (MQTT 3.1.1 clients; v5 clients state Receive Maximum),
  ``max_queued_messages 1000000`` and no byte cap, so a persistent ingest session can hold a
  whole test stream while its subscriber is down (the default, 1000, silently drops QoS 1);
- persistence in the temporary directory (written on a graceful stop), so ``restart()`` keeps
  sessions and queued messages; ``kill()`` + ``start()`` loses what was not saved, like a crash.

``mosquitto_broker`` (function scope) is the same but private to one test: use it for fault tests
that stop, kill or restart the broker so they do not disturb other tests of the session.

Typical use::

    def test_x(mosquitto: MosquittoBroker) -> None:
        user = mosquitto.add_client("dev-1", "pw", acls=[Acl("publishClientSend", "tenant/t1/#")])
        url = mosquitto.url_for("dev-1", "pw")          # mqtt://dev-1:pw@127.0.0.1:PORT

``add_client`` creates a client, a role of the same name holding ``acls`` and binds them, in one
``$CONTROL/dynamic-security/v1`` request; ``add_service_client`` does it with full access to
``tenant/#`` (publish, receive, subscribe, including shared subscriptions). ``control(commands)``
sends raw dynsec commands and raises :class:`DynsecError` on any error. Usernames are unique per
broker, so tests sharing the session broker should use unique names (``unique_username()``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from fleetpulse.common.dynsec import DynsecUnavailableError, dynsec_request_sync
from fleetpulse.common.mqtt import MqttEndpoint
from fleetpulse.testing.ports import free_port, wait_for_port

__all__ = [
    "Acl",
    "AclType",
    "DynsecError",
    "MosquittoBroker",
    "mosquitto",
    "mosquitto_broker",
    "start_mosquitto",
    "unique_username",
]

MOSQUITTO_BIN = os.environ.get("FLEETPULSE_TEST_MOSQUITTO", "/usr/sbin/mosquitto")
DYNSEC_PLUGIN = os.environ.get(
    "FLEETPULSE_TEST_DYNSEC_PLUGIN", "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
)
AclType = Literal[
    "publishClientSend",
    "publishClientReceive",
    "subscribeLiteral",
    "subscribePattern",
    "unsubscribeLiteral",
    "unsubscribePattern",
]


class DynsecError(RuntimeError):
    """The dynamic-security plugin answered a command with an error (or not at all)."""


@dataclass(frozen=True, slots=True)
class Acl:
    """One dynsec ACL entry; ``allow=False`` denies. Higher ``priority`` is checked first."""

    acltype: AclType
    topic: str
    allow: bool = True
    priority: int = 0

    def as_command(self, rolename: str) -> dict[str, Any]:
        return {
            "command": "addRoleACL",
            "rolename": rolename,
            "acltype": self.acltype,
            "topic": self.topic,
            "allow": self.allow,
            "priority": self.priority,
        }


SERVICE_ACLS = (
    Acl("publishClientSend", "tenant/#"),
    Acl("publishClientReceive", "tenant/#"),
    Acl("subscribePattern", "tenant/#"),
    Acl("unsubscribePattern", "tenant/#"),
    # dynsec (2.0.11) checks a shared subscription's full filter, group included
    Acl("subscribePattern", "$share/+/tenant/#"),
    Acl("unsubscribePattern", "$share/+/tenant/#"),
)


def unique_username(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _config(port: int, workdir: Path, dynsec_file: Path) -> str:
    return "\n".join(
        [
            "per_listener_settings false",
            "allow_anonymous false",
            "user root" if os.geteuid() == 0 else "",
            f"listener {port} 127.0.0.1",
            f"plugin {DYNSEC_PLUGIN}",
            f"plugin_opt_config_file {dynsec_file}",
            "max_inflight_messages 1000",
            "max_queued_messages 1000000",
            "max_queued_bytes 0",
            "max_packet_size 2097152",
            "set_tcp_nodelay true",
            "persistence true",
            f"persistence_location {workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "",
        ]
    )


@dataclass
class MosquittoBroker:
    """A running private broker. ``host``/``port`` stay the same across ``restart()``."""

    host: str
    port: int
    admin_username: str
    admin_password: str
    dynsec_file: Path
    workdir: Path
    config_file: Path
    log_file: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def admin_url(self) -> str:
        return self.url_for(self.admin_username, self.admin_password)

    def url_for(self, username: str, password: str) -> str:
        """``mqtt://username:password@host:port`` for :class:`fleetpulse.common.mqtt.MqttEndpoint`."""
        return f"mqtt://{username}:{password}@{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        log = self.log_file.open("ab")
        try:
            self._process = subprocess.Popen(
                [MOSQUITTO_BIN, "-c", str(self.config_file)], stdout=log, stderr=log
            )
        finally:
            log.close()
        try:
            wait_for_port(self.port, self.host, timeout=timeout)
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"mosquitto did not start: {self.log_tail()}") from None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): sessions and queued messages are saved to disk."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=timeout)
        self._process = None

    def kill(self) -> None:
        """SIGKILL: like a crash, whatever was not saved is lost."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait(timeout=10)
        self._process = None

    def restart(self, *, graceful: bool = True, down_for: float = 0.0) -> None:
        """Stop (or kill) and start again on the same port, optionally staying down a while."""
        if graceful:
            self.stop()
        else:
            self.kill()
        if down_for:
            time.sleep(down_for)
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # dynamic security --------------------------------------------------------------------------

    def add_client(
        self,
        username: str,
        password: str,
        acls: Sequence[Acl] = (),
        *,
        client_id: str | None = None,
    ) -> str:
        """Create ``username`` with a role of the same name holding ``acls``; returns the username."""
        client: dict[str, Any] = {
            "command": "createClient",
            "username": username,
            "password": password,
        }
        if client_id is not None:
            client["clientid"] = client_id
        commands = [
            {"command": "createRole", "rolename": username},
            *(acl.as_command(username) for acl in acls),
            client,
            {"command": "addClientRole", "username": username, "rolename": username},
        ]
        self.control(commands)
        return username

    def add_service_client(self, username: str, password: str) -> str:
        """A client that may publish, receive and (share-)subscribe anywhere under ``tenant/#``."""
        return self.add_client(username, password, SERVICE_ACLS)

    def remove_client(self, username: str) -> None:
        self.control(
            [
                {"command": "deleteClient", "username": username},
                {"command": "deleteRole", "rolename": username},
            ]
        )

    def control(
        self, commands: Sequence[dict[str, Any]], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Send dynsec ``commands`` in one request; the responses, or :class:`DynsecError`."""
        endpoint = MqttEndpoint.parse(self.admin_url)
        with self._lock:
            try:
                responses = dynsec_request_sync(endpoint, commands, timeout_s=timeout)
            except DynsecUnavailableError as exc:
                raise DynsecError(str(exc)) from None
        failed = [r for r in responses if r.get("error")]
        if failed:
            raise DynsecError(f"dynsec refused: {failed}")
        return responses


def start_mosquitto(workdir: Path | None = None) -> MosquittoBroker:
    """Configure and start a private broker in ``workdir`` (a new temporary directory by default)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="fp-mosquitto-"))
    workdir.mkdir(parents=True, exist_ok=True)
    admin_password = uuid.uuid4().hex
    dynsec_file = workdir / "dynamic-security.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(dynsec_file), "admin", admin_password],
        check=True,
        capture_output=True,
    )
    port = free_port()
    config_file = workdir / "mosquitto.conf"
    config_file.write_text(_config(port, workdir, dynsec_file))
    broker = MosquittoBroker(
        host="127.0.0.1",
        port=port,
        admin_username="admin",
        admin_password=admin_password,
        dynsec_file=dynsec_file,
        workdir=workdir,
        config_file=config_file,
        log_file=workdir / "mosquitto.log",
    )
    broker.start()
    return broker


def _running(workdir: Path) -> Iterator[MosquittoBroker]:
    broker = start_mosquitto(workdir)
    try:
        yield broker
    finally:
        broker.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """The session's private broker (see the module docstring). Restart it only if you must."""
    yield from _running(Path(tempfile.mkdtemp(prefix="fp-mosquitto-")))


@pytest.fixture
def mosquitto_broker() -> Iterator[MosquittoBroker]:
    """A broker private to one test: for tests that stop, kill or restart it."""
    yield from _running(Path(tempfile.mkdtemp(prefix="fp-mosquitto-")))
