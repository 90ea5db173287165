"""``fleetpulse-dev`` (``make dev``): the whole platform as plain local processes.

Order of start: database (created if missing, then migrated), Mosquitto with dynamic security,
moto's server, the dev OIDC issuer, then the five services (each skipped with a warning until its
package exists). Everything lives under the dev directory (``$FLEETPULSE_DEV_DIR``, default
``./.dev``): ``env`` (shell-sourceable settings), ``secrets.json`` (generated passwords and the
webhook encryption key, mode 600), ``oidc-key.pem``, ``mosquitto/``, ``logs/`` and, while the stack
runs, ``devstack.pid`` and ``stack.json`` (ports and pids). See :mod:`.cli` for the modes.
"""
