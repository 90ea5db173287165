"""Accepted readings -> the ``{prefix}evaluator`` SQS queue, packed into few large messages.

Body: ``{"v": 1, "records": [...]}`` (docs/foundation.md), each at most ~240 KiB, sent 10 per
``SendMessageBatch``. Ports: :class:`ReadingsForwarder`; adapters :class:`SqsReadingsForwarder`
and :class:`DiscardingForwarder` (forwarding disabled).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any, Protocol

import orjson

from fleetpulse.common.mqtt import Backoff

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 240 * 1024


class ReadingsForwarder(Protocol):
    async def forward(self, records: list[dict[str, Any]]) -> None: ...


class DiscardingForwarder:
    async def forward(self, records: list[dict[str, Any]]) -> None:
        return None


def pack(records: list[dict[str, Any]], limit: int = MAX_BODY_BYTES) -> Iterator[str]:
    """Bodies of at most ``limit`` bytes, each ``{"v":1,"records":[...]}``."""
    head, tail = b'{"v":1,"records":[', b"]}"
    parts: list[bytes] = []
    size = len(head) + len(tail)
    for record in records:
        encoded = orjson.dumps(record)
        if parts and size + len(encoded) + 1 > limit:
            yield (head + b",".join(parts) + tail).decode()
            parts, size = [], len(head) + len(tail)
        parts.append(encoded)
        size += len(encoded) + 1
    if parts:
        yield (head + b",".join(parts) + tail).decode()


class SqsReadingsForwarder:
    """Sends packed bodies with retries; returns only when every entry was accepted by SQS."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    async def forward(self, records: list[dict[str, Any]]) -> None:
        bodies = list(pack(records))
        for start in range(0, len(bodies), 10):
            await self._send(bodies[start : start + 10])

    async def _send(self, bodies: list[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
        backoff = Backoff(initial=0.2, maximum=10.0)
        while entries:
            try:
                answer = await self._sqs.send_message_batch(
                    QueueUrl=self._queue_url, Entries=entries
                )
                failed = {f["Id"] for f in answer.get("Failed", [])}
                entries = [e for e in entries if e["Id"] in failed]
            except Exception as exc:  # botocore/network errors: retried, never dropped
                log.warning("evaluator forward failed; retrying", extra={"error": str(exc)})
            if entries:
                await asyncio.sleep(backoff.next())
