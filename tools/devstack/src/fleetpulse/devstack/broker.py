"""A private Mosquitto with dynamic security: its config, its admin and the service users.

``libs/testing`` has a broker fixture, but it is a test dependency (pytest) and picks its own
port; the dev stack needs a chosen port and a broker that outlives one run (device credentials
are kept in the dynsec file next to the database that knows the devices), so it writes its own
config. Service users are (re)declared at every start, idempotently, through the platform's one
dynsec admin client (:mod:`fleetpulse.common.dynsec`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from fleetpulse.common.dynsec import DynsecUnavailableError, dynsec_request_sync
from fleetpulse.common.mqtt import MqttEndpoint

MOSQUITTO_BIN = os.environ.get("FLEETPULSE_DEV_MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_CTRL = os.environ.get("FLEETPULSE_DEV_MOSQUITTO_CTRL", "mosquitto_ctrl")
DYNSEC_PLUGIN = os.environ.get(
    "FLEETPULSE_DEV_DYNSEC_PLUGIN", "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
)
ADMIN_USER = "admin"
INGEST_USER = "fleetpulse-ingest"
DELIVERY_USER = "fleetpulse-delivery"


class DynsecError(RuntimeError):
    """The dynamic-security plugin refused a command or did not answer."""


@dataclass(frozen=True, slots=True)
class Acl:
    acltype: str
    topic: str
    allow: bool = True
    priority: int = 0


INGEST_ACLS = (
    Acl("subscribePattern", "$share/ingest/tenant/+/device/+/#"),
    Acl("unsubscribePattern", "$share/ingest/tenant/+/device/+/#"),
    Acl("subscribePattern", "tenant/+/device/+/#"),
    Acl("publishClientReceive", "tenant/#"),
)
# The MQTT channel publishes only into the integrations' namespace fleetpulse/{tenant}/...
# (the API keeps each tenant under its own fleetpulse/{tenant}/), never as a device.
DELIVERY_ACLS = (
    Acl("publishClientSend", "fleetpulse/#"),
    Acl("publishClientSend", "tenant/#", allow=False, priority=10),
)


def config_text(port: int, workdir: Path, dynsec_file: Path) -> str:
    lines = [
        "per_listener_settings false",
        "allow_anonymous false",
        "user root" if os.geteuid() == 0 else "",
        f"listener {port} 127.0.0.1",
        f"plugin {DYNSEC_PLUGIN}",
        f"plugin_opt_config_file {dynsec_file}",
        "max_inflight_messages 1000",
        "max_queued_messages 1000000",
        "persistence true",
        f"persistence_location {workdir}/",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    return "\n".join(line for line in lines if line) + "\n"


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    workdir: Path

    @property
    def config(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def dynsec(self) -> Path:
        return self.workdir / "dynamic-security.json"

    def prepare(self, port: int, admin_password: str, *, reset: bool) -> list[str]:
        """Write the config (and the dynsec file once); returns the broker's command line."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if reset:
            self.dynsec.unlink(missing_ok=True)
            (self.workdir / "mosquitto.db").unlink(missing_ok=True)
        if not self.dynsec.exists():
            subprocess.run(
                [MOSQUITTO_CTRL, "dynsec", "init", str(self.dynsec), ADMIN_USER, admin_password],
                check=True,
                capture_output=True,
            )
        self.config.write_text(config_text(port, self.workdir, self.dynsec))
        return [MOSQUITTO_BIN, "-c", str(self.config)]


def user_commands(username: str, password: str, acls: Sequence[Acl]) -> list[dict[str, Any]]:
    """(Re)create a client with a same-named role holding exactly ``acls``.

    Deleting first makes a restart idempotent (mosquitto 2.0.11 answers "Internal error" to an
    ``addClientRole`` that is already in place)."""
    return [
        {"command": "deleteClient", "username": username},
        {"command": "deleteRole", "rolename": username},
        {"command": "createRole", "rolename": username},
        *(
            {
                "command": "addRoleACL",
                "rolename": username,
                "acltype": acl.acltype,
                "topic": acl.topic,
                "allow": acl.allow,
                "priority": acl.priority,
            }
            for acl in acls
        ),
        {"command": "createClient", "username": username, "password": password},
        {"command": "addClientRole", "username": username, "rolename": username},
    ]


def refused(responses: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Errors other than deleting what is not there (the first start has no users yet)."""
    return [
        r
        for r in responses
        if r.get("error")
        and not (
            str(r.get("command", "")).startswith("delete")
            and "not found" in str(r["error"]).lower()
        )
    ]


def dynsec_control(
    host: str, port: int, password: str, commands: list[dict[str, Any]], timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Send ``commands`` as the dynsec admin in one request; :class:`DynsecError` on refusal."""
    endpoint = MqttEndpoint(host, port, ADMIN_USER, SecretStr(password))
    try:
        answer = dynsec_request_sync(endpoint, commands, timeout_s=timeout)
    except DynsecUnavailableError as exc:
        raise DynsecError(str(exc)) from None
    if failed := refused(answer):
        raise DynsecError(f"dynsec refused: {failed}")
    return answer
