"""The five services: which console script, which extra settings, and whether it exists yet."""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetpulse.devstack.broker import ADMIN_USER, DELIVERY_USER, INGEST_USER
from fleetpulse.devstack.layout import Ports
from fleetpulse.devstack.secrets import DevSecrets

AUDIENCE = "fleetpulse-api"
REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str  # ingest, delivery-worker, ...
    module: str  # the module holding main()

    @property
    def script(self) -> str:
        return f"fleetpulse-{self.name}"

    def executable(self) -> str | None:
        """The console script, if its package is installed and its entry module exists."""
        try:
            found = importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return None
        beside_python = Path(sys.executable).parent / self.script
        return str(beside_python) if beside_python.exists() else shutil.which(self.script)


SERVICES = (
    ServiceSpec("ingest", "fleetpulse.ingest.main"),
    ServiceSpec("evaluator", "fleetpulse.evaluator.main"),
    ServiceSpec("dispatcher", "fleetpulse.dispatcher.main"),
    ServiceSpec("delivery-worker", "fleetpulse.delivery_worker.main"),
    ServiceSpec("provision-api", "fleetpulse.provision_api.main"),
)


@dataclass(frozen=True, slots=True)
class StackConfig:
    """Everything the settings of the stack are derived from."""

    dev_dir: Path
    database_url: str
    ports: Ports
    secrets: DevSecrets
    host: str = "127.0.0.1"
    traces_file: Path | None = None  # every service appends its spans here (JSON lines)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.ports.api}"

    @property
    def console_url(self) -> str:
        return f"http://{self.host}:{self.ports.console}"

    @property
    def console_origins(self) -> str:
        """Both spellings of loopback, so either URL of the console may call the API."""
        return f"{self.console_url},http://localhost:{self.ports.console}"

    @property
    def issuer(self) -> str:
        return f"http://{self.host}:{self.ports.oidc}/realms/fleetpulse"

    @property
    def moto_url(self) -> str:
        return f"http://{self.host}:{self.ports.moto}"

    def mqtt_url(self, username: str, password: str) -> str:
        return f"mqtt://{username}:{password}@{self.host}:{self.ports.mqtt}"


def shared_env(config: StackConfig) -> dict[str, str]:
    """The ``.dev/env`` values: what every service (and a developer's shell) gets."""
    return {
        "FLEETPULSE_DEV_DIR": str(config.dev_dir),
        "FLEETPULSE_DEV_OIDC_KEY": str(config.dev_dir / "oidc-key.pem"),
        "FLEETPULSE_DATABASE_URL": config.database_url,
        "FLEETPULSE_MQTT_URL": config.mqtt_url(ADMIN_USER, config.secrets.mqtt_admin_password),
        "FLEETPULSE_MQTT_PUBLIC_HOST": config.host,
        "FLEETPULSE_MQTT_PUBLIC_PORT": str(config.ports.mqtt),
        "FLEETPULSE_AWS_ENDPOINT_URL": config.moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
        "AWS_DEFAULT_REGION": REGION,
        "FLEETPULSE_QUEUE_PREFIX": "fleetpulse-",
        "FLEETPULSE_AUTO_CREATE": "true",
        "FLEETPULSE_OIDC_ISSUER": config.issuer,
        "FLEETPULSE_OIDC_AUDIENCE": AUDIENCE,
        "FLEETPULSE_CREDENTIALS_BACKEND": "mosquitto",
        "FLEETPULSE_API_HOST": config.host,
        "FLEETPULSE_API_PORT": str(config.ports.api),
        "FLEETPULSE_API_URL": config.api_url,
        "FLEETPULSE_ALLOW_PRIVATE_WEBHOOKS": "true",
        "FLEETPULSE_CORS_ORIGINS": config.console_origins,
        "FLEETPULSE_CONSOLE_URL": config.console_url,
        "FLEETPULSE_WEBHOOK_ENCRYPTION_KEY": config.secrets.webhook_encryption_key,
    } | ({"FLEETPULSE_TRACES_FILE": str(config.traces_file)} if config.traces_file else {})


#: One ingest, so a plain persistent subscription: Mosquitto 2.0 restores it after a broker
#: restart (it drops $share subscriptions from its persistence, losing what devices publish
#: before ingest reconnects; tests/e2e/test_faults_dev.py::test_broker_restart_while_ingest_is_offline).
#: One connection is not what limits it (issue 17, benchmarks/ingest_devstack.py): the forward to
#: the evaluator queue is, so four committed batches are forwarded and acknowledged (in order)
#: while the next ones are written (services/ingest/tests/test_broker_restart.py: no loss).
SINGLE_INGEST_ENV = {
    "FLEETPULSE_MQTT_SHARE_GROUP": "",
    "FLEETPULSE_MQTT_CONNECTIONS": "1",
    "FLEETPULSE_COMMITTED_BATCHES": "4",
}


def service_env(config: StackConfig, spec: ServiceSpec) -> dict[str, str]:
    """Per-service overrides: its own health port and broker identity (least privilege)."""
    env = shared_env(config)
    env["FLEETPULSE_HEALTH_PORT"] = str(config.ports.health[spec.name])
    mqtt_users = {
        "ingest": (INGEST_USER, config.secrets.mqtt_ingest_password),
        "delivery-worker": (DELIVERY_USER, config.secrets.mqtt_delivery_password),
        "provision-api": (ADMIN_USER, config.secrets.mqtt_admin_password),
    }
    if spec.name in mqtt_users:
        env["FLEETPULSE_MQTT_URL"] = config.mqtt_url(*mqtt_users[spec.name])
    else:
        del env["FLEETPULSE_MQTT_URL"]
    if spec.name == "ingest":
        env.update(SINGLE_INGEST_ENV)
    return env


def render_env_file(values: Mapping[str, str]) -> str:
    """Shell-sourceable ``export NAME='value'`` lines (``. .dev/env``)."""
    lines = ["# written by fleetpulse-dev (make dev); source it: . .dev/env"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"
