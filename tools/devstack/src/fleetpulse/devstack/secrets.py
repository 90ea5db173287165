"""Generated credentials kept across runs (the database and broker outlive one ``make dev``)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from fleetpulse.common.crypto import SecretBox


@dataclass(frozen=True, slots=True)
class DevSecrets:
    mqtt_admin_password: str
    mqtt_ingest_password: str
    mqtt_delivery_password: str
    webhook_encryption_key: str

    @classmethod
    def generate(cls) -> DevSecrets:
        return cls(
            mqtt_admin_password=secrets.token_urlsafe(18),
            mqtt_ingest_password=secrets.token_urlsafe(18),
            mqtt_delivery_password=secrets.token_urlsafe(18),
            webhook_encryption_key=SecretBox.generate_key(),
        )

    @classmethod
    def load_or_create(cls, path: Path) -> DevSecrets:
        """The secrets in ``path``, generated and written with mode 600 the first time."""
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            created = cls.generate()
            write_private(path, json.dumps(asdict(created), indent=2))
            return created


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (mode 600 from the first byte)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
