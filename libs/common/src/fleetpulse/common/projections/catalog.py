"""The catalog projection: tenants, devices, provisioning profiles, rules, integrations, routes.

Owned by provision_api (which applies it inline, in the transaction that appends, for
read-your-writes); ingest, evaluator and dispatcher read the same tables. Every handler applies an
event only when it is newer than the row (``version``), so applying an event twice, or replaying
the whole log, yields the same rows. Timestamps come from the event (``recorded_at`` or its data),
never from the clock. Deleted rules and routes leave a tombstone so an older event cannot revive
them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from fleetpulse.common.eventstore.model import RecordedEvent
from fleetpulse.common.eventstore.projection import HandlerProjection

Handler = Callable[[asyncpg.Connection, RecordedEvent], Awaitable[None]]

RULE_DEFINITION_FIELDS = (
    "metric",
    "operator",
    "threshold",
    "clear_threshold",
    "duration_s",
    "timeout_s",
    "all",
    "any",
    "schedule",
)


def _at(event: RecordedEvent, key: str) -> datetime:
    """A timestamp from the event's data (ISO-8601), or when the event was recorded."""
    value = event.data.get(key)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return event.recorded_at


async def _tenant_created(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        """
        INSERT INTO tenants (tenant_id, name, created_at, version) VALUES ($1, $2, $3, $4)
        ON CONFLICT (tenant_id) DO UPDATE SET name = EXCLUDED.name, version = EXCLUDED.version
        WHERE tenants.version < EXCLUDED.version
        """,
        event.tenant_id,
        event.data["name"],
        _at(event, "created_at"),
        event.version,
    )


async def _device_registered(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        """
        INSERT INTO devices (tenant_id, device_id, name, tags, registered_at, updated_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (tenant_id, device_id) DO NOTHING
        """,
        event.tenant_id,
        event.data["device_id"],
        event.data.get("name"),
        event.data.get("tags") or {},
        _at(event, "registered_at"),
        event.recorded_at,
        event.version,
    )


async def _device_credentials(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        """
        UPDATE devices SET credentials_version = $3, updated_at = $4, version = $5
        WHERE tenant_id = $1 AND device_id = $2 AND version < $5
        """,
        event.tenant_id,
        event.data["device_id"],
        int(event.data["credentials_version"]),
        event.recorded_at,
        event.version,
    )


async def _device_decommissioned(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        """
        UPDATE devices SET status = 'decommissioned', decommissioned_at = $3, updated_at = $4,
               version = $5
        WHERE tenant_id = $1 AND device_id = $2 AND version < $5
        """,
        event.tenant_id,
        event.data["device_id"],
        _at(event, "decommissioned_at"),
        event.recorded_at,
        event.version,
    )


async def _device_updated(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """Only the fields the event carries change (``name`` may be null: cleared)."""
    data = event.data
    await conn.execute(
        """
        UPDATE devices SET name = CASE WHEN $3 THEN $4 ELSE name END,
               tags = coalesce($5::jsonb, tags), attributes = coalesce($8::jsonb, attributes),
               updated_at = $6, version = $7
        WHERE tenant_id = $1 AND device_id = $2 AND version < $7
        """,
        event.tenant_id,
        data["device_id"],
        "name" in data,
        data.get("name"),
        data.get("tags"),
        event.recorded_at,
        event.version,
        data.get("attributes"),
    )


async def _profile_created(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.data
    expires_at = _at(event, "expires_at") if data.get("expires_at") else None
    await conn.execute(
        """
        INSERT INTO provisioning_profiles (tenant_id, profile_id, name, provision_key, secret_hash,
            device_limit, expires_at, tags, created_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (tenant_id, profile_id) DO NOTHING
        """,
        event.tenant_id,
        data["profile_id"],
        data["name"],
        data["provision_key"],
        data["secret_hash"],
        data.get("device_limit"),
        expires_at,
        data.get("tags") or {},
        event.recorded_at,
        event.version,
    )


async def _profile_claimed(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        """
        UPDATE provisioning_profiles SET devices_claimed = devices_claimed + 1, version = $3
        WHERE tenant_id = $1 AND profile_id = $2 AND version < $3
        """,
        event.tenant_id,
        event.data["profile_id"],
        event.version,
    )


async def _profile_revoked(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        """
        UPDATE provisioning_profiles SET status = 'revoked', version = $3
        WHERE tenant_id = $1 AND profile_id = $2 AND version < $3
        """,
        event.tenant_id,
        event.data["profile_id"],
        event.version,
    )


def rule_definition(data: dict[str, Any]) -> dict[str, Any]:
    """The kind-specific part of a rule event, as stored in ``rules.definition``."""
    return {key: data[key] for key in RULE_DEFINITION_FIELDS if data.get(key) is not None}


async def _rule_upserted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.data
    await conn.execute(
        """
        INSERT INTO rules (tenant_id, rule_id, name, kind, severity, definition, device_selector,
            created_at, updated_at, version, enabled)
        SELECT $1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10
        WHERE NOT EXISTS (SELECT 1 FROM catalog_tombstones
                          WHERE tenant_id = $1 AND kind = 'rule' AND entity_id = $2)
        ON CONFLICT (tenant_id, rule_id) DO UPDATE SET
            name = EXCLUDED.name, kind = EXCLUDED.kind, severity = EXCLUDED.severity,
            definition = EXCLUDED.definition, device_selector = EXCLUDED.device_selector,
            updated_at = EXCLUDED.updated_at, version = EXCLUDED.version,
            enabled = EXCLUDED.enabled
        WHERE rules.version < EXCLUDED.version
        """,
        event.tenant_id,
        data["rule_id"],
        data["name"],
        data["kind"],
        data["severity"],
        rule_definition(data),
        data.get("device_selector") or {},
        event.recorded_at,
        event.version,
        data.get("enabled", True) is not False,  # events before ``enabled`` existed: enabled
    )


async def _integration_upserted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.data
    await conn.execute(
        """
        INSERT INTO integrations (tenant_id, integration_id, name, kind, config, secret_sealed,
            created_at, updated_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
        ON CONFLICT (tenant_id, integration_id) DO UPDATE SET
            name = EXCLUDED.name, kind = EXCLUDED.kind, config = EXCLUDED.config,
            secret_sealed = coalesce(EXCLUDED.secret_sealed, integrations.secret_sealed),
            updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
        WHERE integrations.version < EXCLUDED.version
        """,
        event.tenant_id,
        data["integration_id"],
        data["name"],
        data["kind"],
        data["config"],
        data.get("secret_sealed"),
        event.recorded_at,
        event.version,
    )


async def _integration_disabled(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        """
        UPDATE integrations SET status = 'disabled', disabled_reason = $3, updated_at = $4,
               version = $5
        WHERE tenant_id = $1 AND integration_id = $2 AND version < $5
        """,
        event.tenant_id,
        event.data["integration_id"],
        event.data.get("reason"),
        event.recorded_at,
        event.version,
    )


async def _route_upserted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.data
    await conn.execute(
        """
        INSERT INTO routes (tenant_id, route_id, name, integration_id, match, group_by,
            group_wait_s, repeat_interval_s, created_at, updated_at, version, group_interval_s)
        SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11
        WHERE NOT EXISTS (SELECT 1 FROM catalog_tombstones
                          WHERE tenant_id = $1 AND kind = 'route' AND entity_id = $2)
        ON CONFLICT (tenant_id, route_id) DO UPDATE SET
            name = EXCLUDED.name, integration_id = EXCLUDED.integration_id,
            match = EXCLUDED.match, group_by = EXCLUDED.group_by,
            group_wait_s = EXCLUDED.group_wait_s, repeat_interval_s = EXCLUDED.repeat_interval_s,
            group_interval_s = EXCLUDED.group_interval_s,
            updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
        WHERE routes.version < EXCLUDED.version
        """,
        event.tenant_id,
        data["route_id"],
        data["name"],
        data["integration_id"],
        data.get("match") or {},
        data.get("group_by") or [],
        int(data.get("group_wait_s") or 0),
        data.get("repeat_interval_s"),
        event.recorded_at,
        event.version,
        data.get("group_interval_s"),
    )


def _deleted(kind: str, table: str, key: str) -> Handler:
    async def handle(conn: asyncpg.Connection, event: RecordedEvent) -> None:
        entity_id = event.data[key]
        await conn.execute(
            """
            INSERT INTO catalog_tombstones (tenant_id, kind, entity_id, version, deleted_at)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
            """,
            event.tenant_id,
            kind,
            entity_id,
            event.version,
            event.recorded_at,
        )
        await conn.execute(
            f"DELETE FROM {table} WHERE tenant_id = $1 AND {key} = $2 AND version < $3",  # noqa: S608
            event.tenant_id,
            entity_id,
            event.version,
        )

    return handle


HANDLERS: dict[str, Handler] = {
    "TenantCreated": _tenant_created,
    "DeviceRegistered": _device_registered,
    "DeviceCredentialsIssued": _device_credentials,
    "DeviceCredentialsRotated": _device_credentials,
    "DeviceDecommissioned": _device_decommissioned,
    "DeviceUpdated": _device_updated,
    "ProvisioningProfileCreated": _profile_created,
    "ProvisioningProfileClaimed": _profile_claimed,
    "ProvisioningProfileRevoked": _profile_revoked,
    "RuleCreated": _rule_upserted,
    "RuleUpdated": _rule_upserted,
    "RuleDeleted": _deleted("rule", "rules", "rule_id"),
    "IntegrationCreated": _integration_upserted,
    "IntegrationUpdated": _integration_upserted,
    "IntegrationDisabled": _integration_disabled,
    "RouteCreated": _route_upserted,
    "RouteUpdated": _route_upserted,
    "RouteDeleted": _deleted("route", "routes", "route_id"),
}


class CatalogProjection(HandlerProjection):
    """The :class:`~fleetpulse.common.eventstore.Projection` of the configuration streams."""

    name = "catalog"
    tables: tuple[str, ...] = (
        "tenants",
        "devices",
        "provisioning_profiles",
        "rules",
        "integrations",
        "routes",
        "catalog_tombstones",
    )
    handlers = HANDLERS


__all__ = ["HANDLERS", "CatalogProjection", "rule_definition"]
