"""Accepted readings -> the ``{prefix}evaluator`` SQS queue, packed into few large messages.

Body: ``{"v": 1, "records": [...]}`` gzip-compressed and base64-encoded (docs/foundation.md,
``fleetpulse.common.messaging.packing``), each at most ~240 KiB, packed and sent by
``fleetpulse.common.messaging.SqsBatchPublisher``. Ports: :class:`ReadingsForwarder`; adapters :class:`SqsReadingsForwarder`
and :class:`DiscardingForwarder` (forwarding disabled).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from fleetpulse.common.messaging import PublishError, SqsBatchPublisher
from fleetpulse.common.mqtt import Backoff

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 240 * 1024


class ReadingsForwarder(Protocol):
    #: ``False``: the pipeline does not even build the records (saves their cost per reading).
    enabled: bool

    async def forward(self, records: list[dict[str, Any]]) -> None: ...


class DiscardingForwarder:
    enabled = False

    async def forward(self, records: list[dict[str, Any]]) -> None:
        return None


class SqsReadingsForwarder:
    """Sends packed bodies (:class:`SqsBatchPublisher`); returns only when SQS accepted them all.

    The publisher gives up after a few attempts with ``PublishError``; the readings were already
    committed and their messages are not acknowledged until this returns, so it retries the
    whole publish with backoff (the evaluator is idempotent under redelivery).
    """

    enabled = True

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._publisher = SqsBatchPublisher(sqs, queue_url, max_message_bytes=MAX_BODY_BYTES)

    async def forward(self, records: list[dict[str, Any]]) -> None:
        backoff = Backoff(initial=0.2, maximum=10.0)
        while True:
            try:
                await self._publisher.publish(records)
                return
            except PublishError as exc:
                delay = backoff.next()
                log.warning(
                    "evaluator forward failed; retrying",
                    extra={"error": str(exc), "delay_s": delay},
                )
                await asyncio.sleep(delay)
