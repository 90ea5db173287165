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

from fleetpulse.common.contracts.events import (
    UNSET,
    DeviceCredentialsIssued,
    DeviceCredentialsRotated,
    DeviceDecommissioned,
    DeviceRegistered,
    DeviceUpdated,
    IntegrationCreated,
    IntegrationDisabled,
    IntegrationUpdated,
    ProvisioningProfileClaimed,
    ProvisioningProfileCreated,
    ProvisioningProfileRevoked,
    RouteCreated,
    RouteDeleted,
    RouteUpdated,
    RuleCreated,
    RuleDeleted,
    RuleUpdated,
    TenantCreated,
    UnsetType,
    or_none,
)
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


def _at(event: RecordedEvent, value: str | UnsetType | None) -> datetime:
    """A timestamp from the event's data (ISO-8601), or when the event was recorded."""
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return event.recorded_at


async def _tenant_created(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = TenantCreated.from_data(event.data)
    await conn.execute(
        """
        INSERT INTO tenants (tenant_id, name, created_at, version) VALUES ($1, $2, $3, $4)
        ON CONFLICT (tenant_id) DO UPDATE SET name = EXCLUDED.name, version = EXCLUDED.version
        WHERE tenants.version < EXCLUDED.version
        """,
        event.tenant_id,
        data.name,
        _at(event, data.created_at),
        event.version,
    )


async def _device_registered(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = DeviceRegistered.from_data(event.data)
    await conn.execute(
        """
        INSERT INTO devices (tenant_id, device_id, name, tags, registered_at, updated_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (tenant_id, device_id) DO NOTHING
        """,
        event.tenant_id,
        data.device_id,
        or_none(data.name),
        data.tags or {},
        _at(event, data.registered_at),
        event.recorded_at,
        event.version,
    )


async def _device_credentials(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    match event.decoded():
        case DeviceCredentialsIssued(device_id=device_id, credentials_version=version):
            pass
        case DeviceCredentialsRotated(device_id=device_id, credentials_version=version):
            pass
        case other:
            raise TypeError(f"not a credentials event: {type(other).__name__}")
    await conn.execute(
        """
        UPDATE devices SET credentials_version = $3, updated_at = $4, version = $5
        WHERE tenant_id = $1 AND device_id = $2 AND version < $5
        """,
        event.tenant_id,
        device_id,
        int(version),
        event.recorded_at,
        event.version,
    )


async def _device_decommissioned(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = DeviceDecommissioned.from_data(event.data)
    await conn.execute(
        """
        UPDATE devices SET status = 'decommissioned', decommissioned_at = $3, updated_at = $4,
               version = $5
        WHERE tenant_id = $1 AND device_id = $2 AND version < $5
        """,
        event.tenant_id,
        data.device_id,
        _at(event, data.decommissioned_at),
        event.recorded_at,
        event.version,
    )


async def _device_updated(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """Only the fields the event carries change (``name`` may be null: cleared)."""
    data = DeviceUpdated.from_data(event.data)
    await conn.execute(
        """
        UPDATE devices SET name = CASE WHEN $3 THEN $4 ELSE name END,
               tags = coalesce($5::jsonb, tags), attributes = coalesce($8::jsonb, attributes),
               updated_at = $6, version = $7
        WHERE tenant_id = $1 AND device_id = $2 AND version < $7
        """,
        event.tenant_id,
        data.device_id,
        data.name is not UNSET,
        or_none(data.name),
        or_none(data.tags),
        event.recorded_at,
        event.version,
        or_none(data.attributes),
    )


async def _profile_created(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = ProvisioningProfileCreated.from_data(event.data)
    expires_at = _at(event, data.expires_at) if data.expires_at else None
    await conn.execute(
        """
        INSERT INTO provisioning_profiles (tenant_id, profile_id, name, provision_key, secret_hash,
            device_limit, expires_at, tags, created_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (tenant_id, profile_id) DO NOTHING
        """,
        event.tenant_id,
        data.profile_id,
        data.name,
        data.provision_key,
        data.secret_hash,
        or_none(data.device_limit),
        expires_at,
        data.tags or {},
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
        ProvisioningProfileClaimed.from_data(event.data).profile_id,
        event.version,
    )


async def _profile_revoked(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        """
        UPDATE provisioning_profiles SET status = 'revoked', version = $3
        WHERE tenant_id = $1 AND profile_id = $2 AND version < $3
        """,
        event.tenant_id,
        ProvisioningProfileRevoked.from_data(event.data).profile_id,
        event.version,
    )


def rule_definition(data: dict[str, Any]) -> dict[str, Any]:
    """The kind-specific part of a rule event, as stored in ``rules.definition``."""
    return {key: data[key] for key in RULE_DEFINITION_FIELDS if data.get(key) is not None}


def _definition(rule: RuleCreated | RuleUpdated) -> dict[str, Any]:
    """:func:`rule_definition` of a decoded rule event."""
    present = {key: getattr(rule, key) for key in RULE_DEFINITION_FIELDS}
    return {key: value for key, value in present.items() if value not in (None, UNSET)}


async def _rule_upserted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.decoded()
    if not isinstance(data, RuleCreated | RuleUpdated):
        raise TypeError(f"not a rule definition: {event.type}")
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
        data.rule_id,
        data.name,
        data.kind,
        data.severity,
        _definition(data),
        data.device_selector or {},
        event.recorded_at,
        event.version,
        data.enabled is not False,  # events before ``enabled`` existed (UNSET): enabled
    )


async def _integration_upserted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.decoded()
    if not isinstance(data, IntegrationCreated | IntegrationUpdated):
        raise TypeError(f"not an integration definition: {event.type}")
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
        data.integration_id,
        data.name,
        data.kind,
        data.config,
        or_none(data.secret_sealed),
        event.recorded_at,
        event.version,
    )


async def _integration_disabled(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = IntegrationDisabled.from_data(event.data)
    await conn.execute(
        """
        UPDATE integrations SET status = 'disabled', disabled_reason = $3, updated_at = $4,
               version = $5
        WHERE tenant_id = $1 AND integration_id = $2 AND version < $5
        """,
        event.tenant_id,
        data.integration_id,
        or_none(data.reason),
        event.recorded_at,
        event.version,
    )


async def _route_upserted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.decoded()
    if not isinstance(data, RouteCreated | RouteUpdated):
        raise TypeError(f"not a route definition: {event.type}")
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
        data.route_id,
        data.name,
        data.integration_id,
        data.match or {},
        data.group_by or [],
        int(data.group_wait_s or 0),
        or_none(data.repeat_interval_s),
        event.recorded_at,
        event.version,
        or_none(data.group_interval_s),
    )


def _deleted(
    kind: str, table: str, key: str, contract: type[RuleDeleted | RouteDeleted]
) -> Handler:
    async def handle(conn: asyncpg.Connection, event: RecordedEvent) -> None:
        entity_id = getattr(contract.from_data(event.data), key)
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
    TenantCreated.TYPE: _tenant_created,
    DeviceRegistered.TYPE: _device_registered,
    DeviceCredentialsIssued.TYPE: _device_credentials,
    DeviceCredentialsRotated.TYPE: _device_credentials,
    DeviceDecommissioned.TYPE: _device_decommissioned,
    DeviceUpdated.TYPE: _device_updated,
    ProvisioningProfileCreated.TYPE: _profile_created,
    ProvisioningProfileClaimed.TYPE: _profile_claimed,
    ProvisioningProfileRevoked.TYPE: _profile_revoked,
    RuleCreated.TYPE: _rule_upserted,
    RuleUpdated.TYPE: _rule_upserted,
    RuleDeleted.TYPE: _deleted("rule", "rules", "rule_id", RuleDeleted),
    IntegrationCreated.TYPE: _integration_upserted,
    IntegrationUpdated.TYPE: _integration_upserted,
    IntegrationDisabled.TYPE: _integration_disabled,
    RouteCreated.TYPE: _route_upserted,
    RouteUpdated.TYPE: _route_upserted,
    RouteDeleted.TYPE: _deleted("route", "routes", "route_id", RouteDeleted),
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
