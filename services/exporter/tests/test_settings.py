"""Bad configuration stops the exporter at start with one line naming the setting (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "import sys; from fleetpulse.exporter.main import main; main(sys.argv[1:])"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLEETPULSE_LAKE_BUCKET", "Not_A_Bucket"),
        ("FLEETPULSE_LAKE_PREFIX", "no-trailing-slash"),
        ("FLEETPULSE_EXPORT_COMPRESSION", "gzip"),
        ("FLEETPULSE_EXPORT_ROWS_PER_FILE", "0"),
    ],
)
def test_bad_setting_exits_2_naming_it(variable: str, value: str) -> None:
    env = {
        **os.environ,
        "FLEETPULSE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "FLEETPULSE_LAKE_BUCKET": "fleetpulse-lake",
        "FLEETPULSE_HEALTH_PORT": "0",
        variable: value,
    }
    result = subprocess.run(
        [sys.executable, "-c", CODE, "--once"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0]
    assert value not in result.stdout


def test_a_missing_bucket_is_named_too() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}
    env["FLEETPULSE_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    result = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "FLEETPULSE_LAKE_BUCKET" in result.stderr
