"""The evaluator's entrypoint: an SQS message of ``{prefix}evaluator`` -> decoded records -> the
coalescer, which evaluates the records of several messages in one transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fleetpulse.common.messaging import SqsMessage
from fleetpulse.evaluator.coalescer import Coalescer
from fleetpulse.evaluator.messages import decode_records


def message_handler(coalescer: Coalescer) -> Callable[[SqsMessage], Awaitable[None]]:
    """Decode the packed records and hand them on; returns once their batch committed."""

    async def handle(message: SqsMessage) -> None:
        records, _ = decode_records(message.body, message.attributes.get("traceparent"))
        await coalescer.submit(records)

    return handle
