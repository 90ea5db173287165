"""Where the dev issuer's key and URL live: environment first, then ``.dev/env``, then defaults.

``FLEETPULSE_DEV_DIR`` (default ``./.dev``) holds ``oidc-key.pem`` and the stack's ``env`` file;
``FLEETPULSE_DEV_OIDC_KEY`` overrides the key path, ``FLEETPULSE_OIDC_ISSUER`` and
``FLEETPULSE_OIDC_AUDIENCE`` the issuer and audience.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
REALM = "fleetpulse"
DEFAULT_AUDIENCE = "fleetpulse-api"
KEY_FILE = "oidc-key.pem"
ENV_FILE = "env"


def issuer_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, realm: str = REALM) -> str:
    """Keycloak's issuer form: ``http://host:port/realms/{realm}``."""
    return f"http://{host}:{port}/realms/{realm}"


def dev_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("FLEETPULSE_DEV_DIR") or Path.cwd() / ".dev")


def read_env_file(path: Path) -> dict[str, str]:
    """``export NAME=value`` lines (shell-quoted) of a ``.dev/env`` file; {} if it is missing."""
    values: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return values
    for line in lines:
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            values[name] = value
    return values


@dataclass(frozen=True, slots=True)
class DevOidcConfig:
    key_path: Path
    issuer: str
    audience: str

    @classmethod
    def discover(cls, environ: Mapping[str, str] | None = None) -> DevOidcConfig:
        """Resolve from ``environ`` (default ``os.environ``), falling back to ``.dev/env``."""
        env = os.environ if environ is None else environ
        directory = dev_dir(env)
        merged = {**read_env_file(directory / ENV_FILE), **env}
        return cls(
            key_path=Path(merged.get("FLEETPULSE_DEV_OIDC_KEY") or directory / KEY_FILE),
            issuer=merged.get("FLEETPULSE_OIDC_ISSUER") or issuer_url(),
            audience=merged.get("FLEETPULSE_OIDC_AUDIENCE") or DEFAULT_AUDIENCE,
        )
