"""PostgreSQL/TimescaleDB access: pool factory and migrations."""

from fleetpulse.common.db.pool import create_pool, dsn_of

__all__ = ["create_pool", "dsn_of"]
