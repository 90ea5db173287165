"""PostgreSQL/TimescaleDB access: pool factory and migrations."""

from fleetpulse.common.db.pool import TRANSIENT_ERRORS, create_pool, dsn_of

__all__ = ["TRANSIENT_ERRORS", "create_pool", "dsn_of"]
