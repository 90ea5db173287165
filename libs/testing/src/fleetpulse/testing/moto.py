"""A private moto server (real HTTP, like LocalStack) for tests that talk to SQS, SNS, Secrets Manager.

One server per test session; tests stay independent by naming their queues and topics with the
``queue_prefix`` fixture (unique per test) rather than by resetting shared state, so a test never
wipes another one's resources.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from fleetpulse.common.aws import AwsConfig, aws_client
from fleetpulse.testing.ports import free_port, wait_for_port

__all__ = ["aws_config", "moto_server", "queue_prefix", "sns_client", "sqs_client"]


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


@pytest_asyncio.fixture
async def sqs_client(aws_config: AwsConfig) -> AsyncIterator[Any]:
    """An aiobotocore SQS client on the session's moto server."""
    async with aws_client("sqs", aws_config) as client:
        yield client


@pytest_asyncio.fixture
async def sns_client(aws_config: AwsConfig) -> AsyncIterator[Any]:
    """An aiobotocore SNS client on the session's moto server."""
    async with aws_client("sns", aws_config) as client:
        yield client


async def receive_all(
    sqs: Any,
    queue_url: str,
    *,
    expected: int | None = None,
    timeout_s: float = 10.0,
    quiet_s: float = 1.0,
) -> list[dict[str, Any]]:
    """Receive and delete messages until ``expected`` arrived (or, without it, until the queue
    stays empty for ``quiet_s``), or ``timeout_s`` passed; returns the raw messages."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    last_seen = time.monotonic()
    while time.monotonic() < deadline:
        if expected is not None and len(messages) >= expected:
            break
        if expected is None and time.monotonic() - last_seen >= quiet_s:
            break
        response = await sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        batch = response.get("Messages", [])
        if not batch:
            await asyncio.sleep(0.05)
            continue
        last_seen = time.monotonic()
        messages.extend(batch)
        await sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    return messages


class QueueDrain:
    """Receives and deletes whatever arrives on a queue, in the background, into ``messages``.

    moto's ReceiveMessage costs time proportional to the queue's depth, so tests that move
    hundreds of messages should drain while producing: ``async with QueueDrain(sqs, url) as d:``.
    """

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self.messages: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> QueueDrain:
        self._task = asyncio.create_task(self._drain())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        while True:
            response = await self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
            )
            batch = response.get("Messages", [])
            if batch:
                self.messages.extend(batch)
                await self._sqs.delete_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(batch)
                    ],
                )

    async def wait_until(self, predicate: Any, timeout_s: float = 30.0) -> None:
        """Wait until ``predicate(messages)`` holds; AssertionError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"queue drain: condition not met with {len(self.messages)} messages"
                )
            await asyncio.sleep(0.05)
