"""The SQS side of a delivery's retry: send its message again later, or to the DLQ."""

from __future__ import annotations

from typing import Any

from fleetpulse.common.messaging import SqsMessage

MAX_DELAY_S = 900


class Requeuer:
    """Sends a delivery message again, later, or to the DLQ (the SQS side of a retry)."""

    def __init__(self, sqs: Any, queue_url: str, dlq_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._dlq_url = dlq_url

    async def later(self, message: SqsMessage, delay_s: float) -> None:
        delay = max(0, min(MAX_DELAY_S, round(delay_s)))
        await self._send(self._queue_url, message, DelaySeconds=delay)

    async def dead_letter(self, message: SqsMessage, reason: str) -> None:
        await self._send(self._dlq_url, message, reason=reason)

    async def _send(
        self, url: str, message: SqsMessage, reason: str | None = None, **extra: Any
    ) -> None:
        attributes = {
            **message.attributes,
            **({"abandoned_reason": reason[:250]} if reason else {}),
        }
        await self._sqs.send_message(
            QueueUrl=url,
            MessageBody=message.body,
            MessageAttributes={
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v
            },
            **extra,
        )
