"""FleetPulse's contracts between services: the domain events (:mod:`.events`), the
ingest -> evaluator queue record (:mod:`.records`) and the shared constants (:mod:`.constants`)."""

from fleetpulse.common.contracts.constants import *  # noqa: F403
from fleetpulse.common.contracts.constants import __all__ as _constants
from fleetpulse.common.contracts.events import *  # noqa: F403
from fleetpulse.common.contracts.events import __all__ as _events

__all__ = [*_constants, *_events]  # pyright: ignore[reportUnsupportedDunderAll]
