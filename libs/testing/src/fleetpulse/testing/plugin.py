"""pytest plugin with the real-parts harness; enabled for the whole workspace in pyproject.toml.

Fixtures: ``database_url``/``db_pool``/``event_store`` (fresh migrated PostgreSQL database per
test), ``timescale_url`` (TimescaleDB in PGlite, one client at a time), ``mosquitto`` (private
broker with dynamic security), ``moto_server`` (moto's HTTP server).
"""

from fleetpulse.testing.mosquitto import *  # noqa: F403
from fleetpulse.testing.moto import *  # noqa: F403
from fleetpulse.testing.postgres import (  # noqa: F401
    database_url,
    db_pool,
    event_store,
    migrated_template,
)
from fleetpulse.testing.timescale import timescale_url  # noqa: F401
