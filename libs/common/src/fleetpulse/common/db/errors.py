"""Database failures, classified once: transient (try the same work again later) or permanent.

Every retry loop of the platform catches :data:`TRANSIENT_ERRORS` (or asks :func:`is_transient`)
and nothing else, so a failure that will fail the same way on every try (a value PostgreSQL
refuses, a violated constraint) surfaces at once instead of wedging the loop:

- transient: the connection or the server went away or refuses for now (class 08, 57 operator
  intervention: shutdown, crash, cannot connect now, query cancelled), too few resources (53:
  too many connections, out of memory, disk full), a transaction rolled back by the server (40:
  serialization failure, deadlock), a lock not available (55P03), a read-only standby during a
  fail-over (25006), an I/O error (58), the client's lost or busy connection (``InterfaceError``,
  ``InternalClientError``: "another operation is in progress" on a connection whose backend was
  terminated mid-protocol), ``OSError`` and ``TimeoutError``;
  A cached statement invalidated by a schema change (0A000 ``InvalidCachedStatementError``) is
  transient too: the retry prepares it again.
- permanent: every other ``asyncpg.PostgresError`` and asyncpg's client-side argument
  ``DataError``. Of those, :func:`is_data_error` picks the ones caused by the data of the
  statement (22 data exception, 23 integrity constraint violation): other rows may pass, so a
  batch writer isolates the offending rows. The rest (42 undefined table or column, permission
  denied, ...) is the deployment's fault, the same for every row: alert, do not drop data.

The classification is also a translation, done once at the adapter edge (:func:`translate`,
:data:`translated`): transient failures become :class:`~fleetpulse.common.errors.TransientError`
(serialization failures and deadlocks :class:`~fleetpulse.common.errors.TransactionConflictError`),
data errors :class:`~fleetpulse.common.errors.DataRejectedError` and the rest
:class:`~fleetpulse.common.errors.PermanentError`, so retry loops catch FleetPulse types only.
"""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions import _base as _asyncpg_base

from fleetpulse.common.errors import (
    DataRejectedError,
    ErrorTranslation,
    ExternalError,
    PermanentError,
    TransactionConflictError,
    TransientError,
)

#: For ``except`` clauses of retry loops (see :func:`is_transient` for the one exception).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    asyncpg.TransactionRollbackError,
    asyncpg.LockNotAvailableError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.PostgresSystemError,
    asyncpg.InvalidCachedStatementError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

#: Every failure a database call can raise, transient or not (``except`` it, then classify).
DATABASE_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)

# asyncpg raises this InterfaceError subclass when it cannot encode an argument: no retry helps.
_CLIENT_DATA_ERROR = _asyncpg_base.DataError


def is_transient(exc: BaseException) -> bool:
    """``True`` when the same database work may succeed on a later try (see the module)."""
    if isinstance(exc, ExternalError):
        return isinstance(exc, TransientError)
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, _CLIENT_DATA_ERROR)


def is_permanent(exc: BaseException) -> bool:
    """``True`` for a database failure that repeats on every try: data, constraint, schema."""
    if isinstance(exc, ExternalError):
        return isinstance(exc, PermanentError)
    return isinstance(exc, DATABASE_ERRORS) and not is_transient(exc)


def is_data_error(exc: BaseException) -> bool:
    """``True`` when the statement's data is refused (class 22 or 23, or an argument asyncpg
    cannot encode): permanent for these rows, while other rows may be stored."""
    return isinstance(
        exc,
        (
            asyncpg.DataError,
            asyncpg.IntegrityConstraintViolationError,
            _CLIENT_DATA_ERROR,
            DataRejectedError,
        ),
    )


_CONFLICTS = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


def translate(exc: BaseException) -> BaseException:
    """Our error for a database failure (``exc`` itself for anything else, or already ours)."""
    if not isinstance(exc, DATABASE_ERRORS) or isinstance(exc, ExternalError):
        return exc
    code = str(getattr(exc, "sqlstate", None) or "")
    message = describe(exc)
    if isinstance(exc, _CONFLICTS):
        return TransactionConflictError(message, code=code)
    if is_transient(exc):
        return TransientError(message, code=code)
    if is_data_error(exc):
        return DataRejectedError(message, code=code)
    return PermanentError(message, code=code)


#: The adapter edge: ``with translated: await conn.execute(...)``. A class instance, not a
#: generator context manager, because it wraps hot paths (each alert append).
translated = ErrorTranslation(DATABASE_ERRORS, translate)


def describe(exc: BaseException, limit: int = 500) -> str:
    """``"SQLSTATE: message"`` of a database failure, one line, at most ``limit`` characters."""
    if isinstance(exc, ExternalError):  # translated already: its message is this line
        return str(exc)[:limit]
    state = getattr(exc, "sqlstate", None)
    text = " ".join(str(exc).split()) or type(exc).__name__
    line = f"{state}: {text}" if state else f"{type(exc).__name__}: {text}"
    return line.replace("\x00", "")[:limit]


__all__ = [
    "DATABASE_ERRORS",
    "TRANSIENT_ERRORS",
    "describe",
    "is_data_error",
    "is_permanent",
    "is_transient",
    "translate",
    "translated",
]
