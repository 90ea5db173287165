"""A private moto server (real HTTP, like LocalStack) for tests that talk to SQS, SNS, Secrets Manager.

One server per test session; tests stay independent by naming their queues and topics with the
``queue_prefix`` fixture (unique per test) rather than by resetting shared state, so a test never
wipes another one's resources.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from fleetpulse.common.aws import AwsConfig
from fleetpulse.testing.ports import free_port, wait_for_port

__all__ = ["aws_config", "moto_server", "queue_prefix"]


def _start_moto(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Endpoint URL (``http://127.0.0.1:<port>``) of a moto server private to this session."""
    port = free_port()
    process = _start_moto(port)
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


@pytest.fixture
def aws_config(moto_server: str) -> AwsConfig:
    """``AwsConfig`` pointing at the session's moto server (dummy credentials are implied)."""
    return AwsConfig(endpoint_url=moto_server)


@pytest.fixture
def queue_prefix() -> str:
    """A name prefix unique to this test (``t<hex>-``), for queues and topics on the shared server."""
    return f"t{uuid.uuid4().hex[:10]}-"
