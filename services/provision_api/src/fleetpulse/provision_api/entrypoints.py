"""The provision API's entrypoints are its HTTP routes (``fleetpulse.provision_api.api``), each
thin: validate the request into a pydantic model, call :class:`Commands` or :class:`Queries`.
:func:`create_app` mounts them with the edge middleware; :mod:`.bootstrap` serves the result.
"""

from __future__ import annotations

from fleetpulse.provision_api.app import EdgeLimits, create_app

__all__ = ["EdgeLimits", "create_app"]
