"""Ports and files of one dev stack."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

SERVICE_NAMES = ("ingest", "evaluator", "dispatcher", "delivery-worker", "provision-api")


@dataclass(frozen=True, slots=True)
class Ports:
    api: int = 8000
    oidc: int = 8081
    mqtt: int = 1884
    moto: int = 5000
    console: int = 5173
    health: dict[str, int] = field(
        default_factory=lambda: {name: 8091 + i for i, name in enumerate(SERVICE_NAMES)}
    )

    @classmethod
    def free(cls) -> Ports:
        """Every port picked free on loopback: a stack that never collides with ``make dev``."""
        return cls(
            api=free_port(),
            oidc=free_port(),
            mqtt=free_port(),
            moto=free_port(),
            console=free_port(),
            health={name: free_port() for name in SERVICE_NAMES},
        )

    def all(self) -> list[int]:
        return [self.api, self.oidc, self.mqtt, self.moto, self.console, *self.health.values()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class DevDir:
    root: Path

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def oidc_key(self) -> Path:
        return self.root / "oidc-key.pem"

    @property
    def mosquitto(self) -> Path:
        return self.root / "mosquitto"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pid_file(self) -> Path:
        return self.root / "devstack.pid"

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    def create(self) -> None:
        for directory in (self.root, self.mosquitto, self.logs):
            directory.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)


@dataclass(frozen=True, slots=True)
class StackState:
    """What a running stack wrote for ``--stop``/``--status`` and for tests."""

    supervisor_pid: int
    ports: list[int]
    pids: dict[str, int]
    api_url: str

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> StackState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
