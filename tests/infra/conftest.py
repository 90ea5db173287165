"""Fixtures of the Terraform suites (fleetpulse.testing.terraform does the work)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpulse.testing.ports import free_port, wait_for_port
from fleetpulse.testing.terraform import Terraform, copy_module


@pytest.fixture(scope="session")
def terraform_moto() -> Iterator[str]:
    """A moto server of the Terraform suites alone, with the AWS-managed IAM policies loaded
    (the module attaches AmazonECSTaskExecutionRolePolicy and others by ARN)."""
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def terraform(tmp_path: Path) -> Terraform:
    """A copy of the module, initialised with the local plugins and no backend."""
    tf = Terraform(copy_module(tmp_path))
    tf.init(backend=False)
    return tf
