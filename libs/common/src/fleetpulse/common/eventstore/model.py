"""Events as values: what is appended (:class:`NewEvent`) and what was recorded."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleetpulse.common.contracts.events import Event, decode_event
from fleetpulse.common.observability import inject_context

JsonObject = dict[str, Any]
ANY_VERSION = -1
NO_STREAM = 0


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``type`` is past tense (``DeviceRegistered``)."""

    type: str
    data: JsonObject
    metadata: JsonObject = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @classmethod
    def of(
        cls, event: Event, metadata: JsonObject | None = None, event_id: uuid.UUID | None = None
    ) -> NewEvent:
        """The storage envelope of a contract event (its ``type`` and ``to_data()``)."""
        return cls(event.TYPE, event.to_data(), metadata or {}, event_id or uuid.uuid4())


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    position: int
    event_id: uuid.UUID
    stream_id: str
    version: int
    type: str
    tenant_id: str
    data: JsonObject
    metadata: JsonObject
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RecordedEvent:
        """From a row of the ``events`` table (asyncpg ``Record`` or a mapping)."""
        return cls(
            position=row["position"],
            event_id=row["event_id"],
            stream_id=row["stream_id"],
            version=row["version"],
            type=row["type"],
            tenant_id=row["tenant_id"],
            data=row["data"],
            metadata=row["metadata"],
            recorded_at=row["recorded_at"],
        )

    def decoded(self) -> Event:
        """The contract struct of this event (:func:`~fleetpulse.common.contracts.decode_event`)."""
        return decode_event(self.type, self.data)


def stream_id(kind: str, tenant_id: str, entity_id: str | None = None) -> str:
    """``tenant-{t}``, or ``{kind}-{tenant}{sep}{id}`` (device, profile, rule, ...).

    Ids may contain ``-`` but never ``:``, so ``{kind}-{tenant}-{id}`` alone would be ambiguous
    (tenant ``sa`` + device ``x-col1`` and tenant ``sa-x`` + device ``col1`` would share a
    stream). The separator is ``-`` when the tenant id has no ``-`` (then the tenant ends at the
    first ``-``) and ``:`` otherwise (then it ends at the ``:``): every pair has its own stream,
    and the streams of tenants without a ``-`` keep their ids (migration 0203 moved the others).
    """
    if ":" in tenant_id or (entity_id is not None and ":" in entity_id):
        raise ValueError("ids in stream names must not contain ':'")
    if entity_id is None:
        return f"{kind}-{tenant_id}"
    separator = ":" if "-" in tenant_id else "-"
    return f"{kind}-{tenant_id}{separator}{entity_id}"


def metadata(
    *,
    actor: str,
    correlation_id: str | None = None,
    causation: RecordedEvent | None = None,
    **extra: Any,
) -> JsonObject:
    """Metadata for a new event: who caused it, which flow it belongs to, and the trace context.

    With ``causation`` the new event inherits its correlation id and names it as the cause.
    """
    if causation is not None:
        correlation_id = correlation_id or causation.metadata.get("correlation_id")
    result: JsonObject = {
        "actor": actor,
        "correlation_id": correlation_id or str(uuid.uuid4()),
        "causation_id": str(causation.event_id) if causation is not None else None,
    }
    result.update(inject_context())
    result.update(extra)
    return result
