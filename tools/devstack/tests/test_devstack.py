"""fleetpulse-dev: settings it writes, broker users it declares, and a clean start/stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleetpulse.common.settings import load_settings
from fleetpulse.dev_oidc.config import read_env_file
from fleetpulse.devstack.broker import (
    DELIVERY_USER,
    INGEST_ACLS,
    INGEST_USER,
    Acl,
    refused,
    user_commands,
)
from fleetpulse.devstack.database import database_url, drop_database
from fleetpulse.devstack.layout import DevDir, Ports, StackState, listening
from fleetpulse.devstack.secrets import DevSecrets
from fleetpulse.devstack.services import (
    SERVICES,
    StackConfig,
    render_env_file,
    service_env,
    shared_env,
)
from fleetpulse.ingest.mqtt_source import subscription_filter
from fleetpulse.ingest.settings import Settings as IngestSettings

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
BIN = Path(sys.executable).parent


def config(tmp_path: Path) -> StackConfig:
    return StackConfig(
        dev_dir=tmp_path,
        database_url=database_url(SERVER, "fleetpulse_dev"),
        ports=Ports(),
        secrets=DevSecrets.generate(),
    )


def test_env_file_is_shell_sourceable_and_round_trips(tmp_path: Path) -> None:
    values = {**shared_env(config(tmp_path)), "FLEETPULSE_TRICKY": "a b'c$d"}
    env_file = tmp_path / "env"
    env_file.write_text(render_env_file(values))
    assert read_env_file(env_file) == values
    shell = subprocess.run(
        ["bash", "-c", f'. {env_file} && printf %s "$FLEETPULSE_TRICKY"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == "a b'c$d"


def test_every_service_gets_its_own_health_port_and_least_broker_privilege(tmp_path: Path) -> None:
    stack = config(tmp_path)
    envs = {spec.name: service_env(stack, spec) for spec in SERVICES}
    assert len({env["FLEETPULSE_HEALTH_PORT"] for env in envs.values()}) == len(SERVICES)
    assert INGEST_USER in envs["ingest"]["FLEETPULSE_MQTT_URL"]
    assert DELIVERY_USER in envs["delivery-worker"]["FLEETPULSE_MQTT_URL"]
    assert "//admin:" in envs["provision-api"]["FLEETPULSE_MQTT_URL"]
    assert "FLEETPULSE_MQTT_URL" not in envs["evaluator"]
    shared = shared_env(stack)
    assert shared["FLEETPULSE_ALLOW_PRIVATE_WEBHOOKS"] == "true"
    assert shared["FLEETPULSE_AUTO_CREATE"] == "true"
    assert shared["FLEETPULSE_OIDC_ISSUER"] == "http://127.0.0.1:8081/realms/fleetpulse"


async def test_the_single_ingest_subscribes_plainly_within_its_acl(tmp_path: Path) -> None:
    env = service_env(config(tmp_path), next(s for s in SERVICES if s.name == "ingest"))
    settings = await load_settings(IngestSettings, env)
    topic = subscription_filter(settings.mqtt_share_group)
    assert (settings.mqtt_connections, topic) == (1, "tenant/+/device/+/#")
    assert Acl("subscribePattern", topic) in INGEST_ACLS


def test_user_declaration_is_idempotent_by_design() -> None:
    commands = user_commands("svc", "pw", ())
    assert [c["command"] for c in commands][:2] == ["deleteClient", "deleteRole"]
    first_start = [{"command": "deleteClient", "error": "Client not found"}]
    assert refused(first_start) == []
    assert refused([{"command": "createClient", "error": "Client already exists"}])


def test_secrets_persist_with_mode_600(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    first = DevSecrets.load_or_create(path)
    assert DevSecrets.load_or_create(path) == first
    assert path.stat().st_mode & 0o777 == 0o600


def test_database_names_are_validated() -> None:
    assert database_url(SERVER, "fp_x").endswith("/fp_x")
    with pytest.raises(ValueError, match="database name"):
        database_url(SERVER, 'x"; DROP DATABASE postgres; --')


# a real stack (infrastructure only) --------------------------------------------------------------


@pytest.fixture
def infra_stack(tmp_path: Path) -> Iterator[tuple[dict[str, str], StackState]]:
    database = f"fleetpulse_devtest_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}
    env["FLEETPULSE_DEV_DIR"] = str(tmp_path / ".dev")
    started = subprocess.run(
        [
            BIN / "fleetpulse-dev",
            "--detach",
            "--free-ports",
            "--database",
            database,
            "--services",
            "",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = StackState.read(DevDir(tmp_path / ".dev").state_file)
        assert state is not None
        yield env, state
    finally:
        subprocess.run([BIN / "fleetpulse-dev", "--stop"], env=env, timeout=120, check=False)
        asyncio.run(drop_database(SERVER, database))


@pytest.mark.slow
def test_infrastructure_comes_up_and_goes_down_leaving_nothing_listening(
    infra_stack: tuple[dict[str, str], StackState],
) -> None:
    env, state = infra_stack
    values = read_env_file(Path(env["FLEETPULSE_DEV_DIR"]) / "env")
    # the issuer's JWKS verifies a token from fleetpulse-dev-token
    token = subprocess.run(
        [BIN / "fleetpulse-dev-token", "--tenant", "acme", "--roles", "tenant-admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    issuer = values["FLEETPULSE_OIDC_ISSUER"]
    jwks_uri = httpx.get(f"{issuer}/.well-known/openid-configuration").json()["jwks_uri"]
    key = jwt.PyJWKClient(jwks_uri).get_signing_key_from_jwt(token).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="fleetpulse-api", issuer=issuer)
    assert claims["tenant_id"] == "acme"
    # the ingest user exists with the password the stack handed out
    secrets = DevSecrets.load_or_create(Path(env["FLEETPULSE_DEV_DIR"]) / "secrets.json")
    assert mqtt_connects(
        int(values["FLEETPULSE_MQTT_PUBLIC_PORT"]), INGEST_USER, secrets.mqtt_ingest_password
    )
    assert not mqtt_connects(int(values["FLEETPULSE_MQTT_PUBLIC_PORT"]), INGEST_USER, "wrong")
    stopped = subprocess.run([BIN / "fleetpulse-dev", "--stop"], env=env, timeout=120, check=False)
    assert stopped.returncode == 0
    assert [port for port in state.ports if listening(port)] == []


def mqtt_connects(port: int, username: str, password: str) -> bool:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:6]}")
    client.username_pw_set(username, password)
    try:
        client.connect("127.0.0.1", port)
        result = None
        for _ in range(50):
            client.loop(timeout=0.1)
            if client.is_connected():
                result = True
                break
        client.disconnect()
        return bool(result)
    except OSError:
        return False


@pytest.mark.slow
def test_ctrl_c_stops_every_process_it_started(tmp_path: Path) -> None:
    database = f"fleetpulse_devtest_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}
    env["FLEETPULSE_DEV_DIR"] = str(tmp_path / ".dev")
    process = subprocess.Popen(
        [BIN / "fleetpulse-dev", "--free-ports", "--database", database, "--services", ""],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "Ctrl-C stops everything" in line:
                break
        state = StackState.read(DevDir(tmp_path / ".dev").state_file)
        assert state is not None
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert [port for port in state.ports if listening(port)] == []
        assert not any(pid_alive(pid) for pid in state.pids.values())
    finally:
        if process.poll() is None:
            process.kill()
        asyncio.run(drop_database(SERVER, database))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
