"""Settings: defaults, validation, and one clear line with exit code 2 on a bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import Field

from fleetpulse.common.errors import ConfigurationError
from fleetpulse.common.settings import ServiceSettings, load_settings, settings_table

GOOD = {"FLEETPULSE_DATABASE_URL": "postgresql://u:hunter2@db:5432/fleetpulse"}


class DemoSettings(ServiceSettings):
    batch_rows: int = Field(default=500, ge=1, description="rows per batch")


async def test_defaults_and_overrides() -> None:
    settings = await load_settings(DemoSettings, {**GOOD, "FLEETPULSE_BATCH_ROWS": "42"})
    assert settings.batch_rows == 42
    assert settings.queue_prefix == "fleetpulse-"
    assert settings.auto_create is False
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, "FLEETPULSE_DATABASE_URL"),
        ({"FLEETPULSE_DATABASE_URL": "mysql://x"}, "FLEETPULSE_DATABASE_URL"),
        ({**GOOD, "FLEETPULSE_BATCH_ROWS": "zero"}, "FLEETPULSE_BATCH_ROWS"),
        ({**GOOD, "FLEETPULSE_HEALTH_PORT": "70000"}, "FLEETPULSE_HEALTH_PORT"),
        ({**GOOD, "FLEETPULSE_LOG_LEVEL": "LOUD"}, "FLEETPULSE_LOG_LEVEL"),
        ({**GOOD, "FLEETPULSE_AUTO_CREATE": "perhaps"}, "FLEETPULSE_AUTO_CREATE"),
    ],
)
async def test_bad_setting_names_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        await load_settings(DemoSettings, environ)
    assert info.value.setting == variable


async def test_error_never_echoes_the_value() -> None:
    with pytest.raises(ConfigurationError) as info:
        await load_settings(DemoSettings, {"FLEETPULSE_DATABASE_URL": "mysql://u:s3cret@h/db"})
    assert "s3cret" not in str(info.value)


def test_settings_table_lists_every_variable() -> None:
    names = [row[0] for row in settings_table(DemoSettings)]
    assert "FLEETPULSE_DATABASE_URL" in names and "FLEETPULSE_BATCH_ROWS" in names


def test_bad_setting_exits_2_with_one_line() -> None:
    script = (
        "from fleetpulse.common.runtime import run\n"
        "from fleetpulse.common.settings import ServiceSettings\n"
        "async def serve(ctx): raise AssertionError('must not start')\n"
        "run('fleetpulse-demo', ServiceSettings, serve)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "FLEETPULSE_DATABASE_URL": "postgresql://h/db",
        "FLEETPULSE_HEALTH_PORT": "not-a-port",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "FLEETPULSE_HEALTH_PORT" in lines[0]
    assert lines[0].startswith("fleetpulse-demo: configuration error")
