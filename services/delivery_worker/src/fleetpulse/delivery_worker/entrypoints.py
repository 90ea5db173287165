"""The delivery worker's entrypoint: an SQS message of ``{prefix}deliveries`` -> the worker."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fleetpulse.common.messaging import SqsMessage, message_to_event
from fleetpulse.delivery_worker.adapters import Requeuer
from fleetpulse.delivery_worker.service import DeadLetter, DeliveryWorker, Requeue

log = logging.getLogger(__name__)


def message_handler(
    worker: DeliveryWorker, requeuer: Requeuer
) -> Callable[[SqsMessage], Awaitable[None]]:
    """The SQS entrypoint: decode, let the worker decide, carry the decision out.

    If sending the message on fails, the handler raises and the original comes back after its
    visibility timeout (the worker then finds the delivery not yet due, or due, and goes on).
    """

    async def handle(message: SqsMessage) -> None:
        try:
            event = message_to_event(message.body)
        except ValueError as exc:
            log.error("dead-lettering a message that is not an event", extra={"error": str(exc)})
            await requeuer.dead_letter(message, f"not an event: {exc}")
            return
        outcome = await worker.handle(event)
        if isinstance(outcome, Requeue):
            await requeuer.later(message, outcome.delay_s)
        elif isinstance(outcome, DeadLetter):
            await requeuer.dead_letter(message, outcome.reason)

    return handle
