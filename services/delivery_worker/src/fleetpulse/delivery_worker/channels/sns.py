"""``SnsChannel``: publish the notification JSON to ``config.topic_arn``."""

from __future__ import annotations

import time
from typing import Any

import orjson

from fleetpulse.common.messaging.errors import AWS_ERRORS, error_code
from fleetpulse.delivery_worker.channels.base import Notification, subject_line
from fleetpulse.delivery_worker.retry import AttemptResult

PERMANENT_CODES = frozenset({"NotFound", "InvalidParameter", "AuthorizationError"})


class SnsChannel:
    """``sns`` is an aiobotocore SNS client owned by the caller."""

    def __init__(self, sns: Any) -> None:
        self._sns = sns

    async def close(self) -> None:
        return None

    async def send(self, notification: Notification) -> AttemptResult:
        topic_arn = str(notification.config.get("topic_arn") or "")
        if not topic_arn.startswith("arn:"):
            return AttemptResult(ok=False, error="no topic_arn configured", permanent=True)
        started = time.perf_counter()
        try:
            await self._sns.publish(
                TopicArn=topic_arn,
                Message=orjson.dumps(dict(notification.payload)).decode(),
                Subject=subject_line(notification.payload)[:100],
                MessageAttributes={
                    "type": {
                        "DataType": "String",
                        "StringValue": str(notification.payload.get("type")),
                    },
                    "webhook-id": {"DataType": "String", "StringValue": notification.message_id},
                },
            )
        except AWS_ERRORS as exc:
            code = error_code(exc)
            return AttemptResult(
                ok=False,
                error=f"{type(exc).__name__}: {code or exc}"[:500],
                latency_ms=_ms(started),
                permanent=code in PERMANENT_CODES,
                endpoint_failure=code not in PERMANENT_CODES,
            )
        return AttemptResult(ok=True, latency_ms=_ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
