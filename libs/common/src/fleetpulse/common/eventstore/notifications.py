"""Wake log readers when events are appended (LISTEN), with polling as the safety net."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

import asyncpg
from pydantic import SecretStr

from fleetpulse.common.db.errors import translated
from fleetpulse.common.db.pool import connect
from fleetpulse.common.errors import ExternalError

CHANNEL = "fleetpulse_events"
log = logging.getLogger(__name__)


class EventNotifications:
    """``await wait(timeout)`` returns early when a transaction appended events.

    If the listening connection is lost the reader keeps polling and reconnects on the next wait.
    """

    def __init__(self, dsn: str | SecretStr) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._signal = asyncio.Event()

    async def __aenter__(self) -> EventNotifications:
        await self._listen()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def wait(self, timeout: float) -> None:
        if self._conn is None or self._conn.is_closed():
            await self._listen()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._signal.wait(), timeout)
        self._signal.clear()

    async def _listen(self) -> None:
        await self._close()
        try:
            with translated:
                self._conn = await connect(self._dsn, application_name="fleetpulse-listen")
                await self._conn.add_listener(CHANNEL, self._on_notify)
        except ExternalError as exc:  # transient or not: polling still works
            error = type(exc.__cause__ or exc).__name__
            log.warning("cannot LISTEN; polling instead", extra={"error": error})
            self._conn = None

    def _on_notify(self, *_: object) -> None:
        self._signal.set()

    async def _close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
        self._conn = None
