"""PostgreSQL/TimescaleDB access: pool factory, migrations, and the one classification of
database failures (transient vs permanent, :mod:`fleetpulse.common.db.errors`)."""

from fleetpulse.common.db.errors import (
    DATABASE_ERRORS,
    TRANSIENT_ERRORS,
    describe,
    is_data_error,
    is_permanent,
    is_transient,
    translate,
    translated,
)
from fleetpulse.common.db.pool import create_pool, dsn_of

__all__ = [
    "DATABASE_ERRORS",
    "TRANSIENT_ERRORS",
    "create_pool",
    "describe",
    "dsn_of",
    "is_data_error",
    "is_permanent",
    "is_transient",
    "translate",
    "translated",
]
