"""Event store: append with expected version, read streams and the log, projections."""

from fleetpulse.common.errors import ConcurrencyError
from fleetpulse.common.eventstore.checkpoints import (
    first_delivery,
    lock_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from fleetpulse.common.eventstore.model import (
    ANY_VERSION,
    NO_STREAM,
    NewEvent,
    RecordedEvent,
    metadata,
    stream_id,
)
from fleetpulse.common.eventstore.notifications import EventNotifications
from fleetpulse.common.eventstore.postgres import PostgresEventStore
from fleetpulse.common.eventstore.projection import HandlerProjection, Projection, ProjectionRunner
from fleetpulse.common.eventstore.unit_of_work import Append, UnitOfWork, UnitsOfWork

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "Append",
    "ConcurrencyError",
    "EventNotifications",
    "HandlerProjection",
    "NewEvent",
    "PostgresEventStore",
    "Projection",
    "ProjectionRunner",
    "RecordedEvent",
    "UnitOfWork",
    "UnitsOfWork",
    "first_delivery",
    "lock_checkpoint",
    "metadata",
    "read_checkpoint",
    "save_checkpoint",
    "stream_id",
]
