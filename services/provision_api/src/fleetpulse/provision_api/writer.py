"""Commands append events and apply the projections inline, in one transaction (read-your-writes).

A unit of work first takes a transaction-scoped advisory lock per stream it will write, so
commands on one entity (and their side effects on the broker) run one at a time, while the
event store's global append lock is only held from the append to the commit. The unit itself is
the platform's one (:mod:`fleetpulse.common.eventstore.unit_of_work`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fleetpulse.common.eventstore import UnitOfWork, UnitsOfWork

#: The unit a command handler writes through (``conn``, ``store``, ``append``).
Unit = UnitOfWork


class CommandWriter(UnitsOfWork):
    """Units of work for the API's commands, with the catalog and alerts projections."""

    @asynccontextmanager
    async def unit(self, *streams: str) -> AsyncIterator[Unit]:
        async with self.begin(lock=streams) as unit:
            yield unit
