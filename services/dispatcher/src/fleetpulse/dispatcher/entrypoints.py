"""The dispatcher's entrypoint: an SQS message of ``{prefix}dispatcher`` -> :class:`Dispatcher`."""

from __future__ import annotations

import logging
from typing import Any

from fleetpulse.common.messaging import SqsMessage, message_to_event
from fleetpulse.dispatcher.service import Dispatcher

log = logging.getLogger(__name__)


def message_handler(dispatcher: Dispatcher) -> Any:
    """The SQS entrypoint: decode the envelope and hand the event to the dispatcher."""

    async def handle(message: SqsMessage) -> None:
        try:
            event = message_to_event(message.body)
        except ValueError as exc:
            # not ours to drop: fail it, so the queue's redrive policy moves it to the DLQ
            log.error("refusing a message that is not an event", extra={"error": str(exc)})
            raise
        await dispatcher.handle(event)

    return handle
