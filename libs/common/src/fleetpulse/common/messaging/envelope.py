"""Events on the wire: the SNS/SQS message body and attributes of a recorded event.

The body is the whole event as JSON; the attributes (``type``, ``tenant_id``, ``traceparent``)
let SNS filter policies route by type and let consumers continue the trace without parsing.
Consumers are idempotent on ``event_id`` (see :func:`fleetpulse.common.eventstore.first_delivery`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from fleetpulse.common.eventstore import RecordedEvent

ENVELOPE_VERSION = 1


def event_to_message(event: RecordedEvent) -> tuple[str, dict[str, str]]:
    """``(body, attributes)`` for publishing ``event``."""
    body = orjson.dumps(
        {
            "v": ENVELOPE_VERSION,
            "event_id": str(event.event_id),
            "position": event.position,
            "stream_id": event.stream_id,
            "version": event.version,
            "type": event.type,
            "tenant_id": event.tenant_id,
            "data": event.data,
            "metadata": event.metadata,
            "recorded_at": event.recorded_at.isoformat(),
        }
    ).decode()
    return body, event_attributes(event)


def event_attributes(event: RecordedEvent) -> dict[str, str]:
    attributes = {"type": event.type, "tenant_id": event.tenant_id}
    traceparent = event.metadata.get("traceparent")
    if isinstance(traceparent, str) and traceparent:
        attributes["traceparent"] = traceparent
    return attributes


def message_to_event(body: str | bytes) -> RecordedEvent:
    """The event carried by a message body; raises ``ValueError`` on anything else."""
    try:
        document: dict[str, Any] = orjson.loads(body)
        return RecordedEvent(
            position=int(document["position"]),
            event_id=uuid.UUID(document["event_id"]),
            stream_id=str(document["stream_id"]),
            version=int(document["version"]),
            type=str(document["type"]),
            tenant_id=str(document["tenant_id"]),
            data=dict(document["data"]),
            metadata=dict(document.get("metadata") or {}),
            recorded_at=datetime.fromisoformat(document["recorded_at"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an event envelope: {type(exc).__name__}: {exc}") from None
