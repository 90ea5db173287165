"""Errors of the shared library, so callers never catch a driver's exception type.

Driver failures (asyncpg, botocore) are translated once, at the adapter edge
(:func:`fleetpulse.common.db.errors.translated`, :func:`fleetpulse.common.messaging.errors.aws_errors`),
into two families: :class:`TransientError` (the same work may succeed on a later try: retry loops
catch this) and :class:`PermanentError` (it fails the same way every time: surface it). The
driver's exception stays reachable as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType


class FleetPulseError(Exception):
    """Base of every error raised by fleetpulse.common."""


class ConfigurationError(FleetPulseError):
    """A setting is missing or invalid; ``setting`` names the environment variable."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class ConcurrencyError(FleetPulseError):
    """An append stated an expected version that is no longer the stream's version."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r}: expected version {expected}, found {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


#: The name the unit of work speaks of: a stream version conflict (read again, decide again).
ConcurrencyConflict = ConcurrencyError


class ExternalError(FleetPulseError):
    """A translated failure of a backend (database, AWS); ``code`` is its SQLSTATE or AWS code."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code

    @property
    def sqlstate(self) -> str | None:
        """The SQLSTATE of a database failure (None for other backends or client errors)."""
        return self.code if len(self.code) == 5 and self.code.isalnum() else None


class TransientError(ExternalError):
    """The backend went away, is overloaded or rolled the work back: try again later."""


class TransactionConflictError(TransientError):
    """The database rolled the transaction back (serialization failure, deadlock): rerun it."""


class PermanentError(ExternalError):
    """The backend refuses the work and will refuse it on every try (schema, permission, ...)."""


class DataRejectedError(PermanentError):
    """The statement's data is refused (SQLSTATE class 22 or 23): other rows may pass."""


class ErrorTranslation:
    """A context manager that re-raises a foreign failure (one of ``foreign``) as the error
    ``translate`` gives for it, the original chained as ``__cause__``; anything else passes.

    A class instance rather than a generator context manager, because it wraps hot paths
    (each alert append); :data:`fleetpulse.common.db.translated` and
    :data:`fleetpulse.common.messaging.errors.aws_errors` are the two instances."""

    __slots__ = ("_foreign", "_translate")

    def __init__(
        self,
        foreign: tuple[type[BaseException], ...],
        translate: Callable[[BaseException], BaseException],
    ) -> None:
        self._foreign = foreign
        self._translate = translate

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, self._foreign):
            return
        ours = self._translate(exc)
        if ours is not exc:
            raise ours from exc


__all__ = [
    "ConcurrencyConflict",
    "ConcurrencyError",
    "ConfigurationError",
    "DataRejectedError",
    "ErrorTranslation",
    "ExternalError",
    "FleetPulseError",
    "PermanentError",
    "TransactionConflictError",
    "TransientError",
]
