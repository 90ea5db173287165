"""Command handlers: validate against current state, talk to the broker, append events.

Each handler runs in one unit of work (``CommandWriter.unit``) that locks the streams it writes,
reads the projection rows it decides on, appends with the version it read as the expected
version, and applies the projections inline, so the next read sees the write.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fleetpulse.common import contracts
from fleetpulse.common.crypto import SecretBox, seal_values
from fleetpulse.common.eventstore import NO_STREAM, NewEvent, metadata, stream_id
from fleetpulse.common.webhooks import generate_secret, headers_owner, secret_owner
from fleetpulse.provision_api import domain, schemas
from fleetpulse.provision_api.auth import Principal
from fleetpulse.provision_api.credentials import (
    CredentialIssuer,
    DeviceIdentity,
    IssuedCredentials,
)
from fleetpulse.provision_api.destinations import DestinationPolicy
from fleetpulse.provision_api.domain import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    ProfileState,
)
from fleetpulse.provision_api.writer import CommandWriter, Unit

log = logging.getLogger(__name__)
Row = dict[str, Any]
SIGNED_KINDS = ("webhook", "mqtt")  # notifications signed with Standard Webhooks headers
IntegrationBody = schemas.WebhookIn | schemas.EmailIn | schemas.MqttIn | schemas.SnsIn
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Claim:
    profile_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Registered:
    device: Row
    credentials: IssuedCredentials


def _stamped(events: list[NewEvent], actor: str) -> list[NewEvent]:
    meta = metadata(actor=actor)
    return [NewEvent(e.type, e.data, {**meta, **e.metadata}, e.event_id) for e in events]


def actor_of(principal: Principal) -> str:
    return f"user:{principal.subject}"


class Commands:
    def __init__(
        self,
        writer: CommandWriter,
        issuer: CredentialIssuer,
        secret_box: SecretBox,
        *,
        clock: Clock = utcnow,
        destinations: DestinationPolicy | None = None,
    ) -> None:
        self._writer, self._issuer, self._box, self._clock = writer, issuer, secret_box, clock
        self._destinations = destinations or DestinationPolicy()

    async def _append(
        self,
        unit: Unit,
        stream: str,
        events: list[NewEvent],
        tenant_id: str,
        expected: int,
        actor: str,
    ) -> None:
        if not any(e.type == contracts.TenantCreated.TYPE for e in events):
            await self._require_tenant(unit, tenant_id)  # every write, whatever the token says
        await unit.append(
            stream, _stamped(events, actor), tenant_id=tenant_id, expected_version=expected
        )

    @staticmethod
    async def _row(unit: Unit, what: str, sql: str, *args: Any) -> Row:
        row = await unit.conn.fetchrow(sql, *args)
        if row is None:
            raise NotFoundError(what)
        return dict(row)

    # --- tenants -------------------------------------------------------------------------
    async def create_tenant(self, body: schemas.TenantCreate, actor: str) -> Row:
        stream = stream_id("tenant", body.tenant_id)
        async with self._writer.unit(stream) as unit:
            if await unit.conn.fetchval(
                "SELECT 1 FROM tenants WHERE tenant_id = $1", body.tenant_id
            ):
                raise ConflictError(f"tenant {body.tenant_id} already exists")
            created = contracts.TenantCreated(
                tenant_id=body.tenant_id, name=body.name, created_at=domain.iso(self._clock())
            )
            event = NewEvent.of(created)
            await self._append(unit, stream, [event], body.tenant_id, NO_STREAM, actor)
            return await self._row(
                unit, "tenant", "SELECT * FROM tenants WHERE tenant_id = $1", body.tenant_id
            )

    # --- devices -------------------------------------------------------------------------
    async def register_device(
        self,
        tenant_id: str,
        body: schemas.DeviceCreate,
        actor: str,
        claim: Claim | None = None,
    ) -> Registered:
        device = DeviceIdentity(tenant_id, body.device_id)
        streams = [stream_id("device", tenant_id, body.device_id)]
        if claim is not None:
            streams.append(stream_id("profile", tenant_id, claim.profile_id))
        issued: IssuedCredentials | None = None
        try:
            async with self._writer.unit(*streams) as unit:
                await self._require_tenant(unit, tenant_id)
                now = self._clock()
                claimed = await self._check_claim(unit, tenant_id, claim, now) if claim else None
                if await unit.conn.fetchval(
                    "SELECT 1 FROM devices WHERE tenant_id = $1 AND device_id = $2",
                    tenant_id,
                    body.device_id,
                ):
                    raise ConflictError(f"device {body.device_id} already exists")
                issued = await self._issuer.issue(device)
                if claim is not None and claimed is not None:
                    await self._append(
                        unit,
                        streams[1],
                        [domain.profile_claimed(claim.profile_id, body.device_id, now)],
                        tenant_id,
                        claimed,
                        actor,
                    )
                events = [
                    domain.device_registered(
                        body.device_id,
                        body.name,
                        body.tags,
                        now,
                        claim.profile_id if claim else None,
                    ),
                    domain.credentials_issued(tenant_id, body.device_id, 1),
                ]
                await self._append(unit, streams[0], events, tenant_id, NO_STREAM, actor)
                row = await self._device(unit, tenant_id, body.device_id)
        except BaseException:
            if issued is not None:  # issued, but the registration did not commit
                await self._withdraw(device)
            raise
        return Registered(row, issued)

    async def _withdraw(self, device: DeviceIdentity) -> None:
        """A registration that did not commit leaves no usable credentials behind."""
        try:
            await self._issuer.disable(device)
        except Exception:
            log.exception("could not disable the credentials of a failed registration")

    async def _check_claim(self, unit: Unit, tenant_id: str, claim: Claim, now: datetime) -> int:
        """Checks the profile under its stream lock; returns its version to append after."""
        row = await self._row(
            unit,
            "provisioning profile",
            "SELECT * FROM provisioning_profiles WHERE tenant_id = $1 AND profile_id = $2",
            tenant_id,
            claim.profile_id,
        )
        domain.check_claim(
            ProfileState(
                profile_id=row["profile_id"],
                status=row["status"],
                device_limit=row["device_limit"],
                devices_claimed=row["devices_claimed"],
                expires_at=row["expires_at"],
                secret_hash=row["secret_hash"],
            ),
            claim.secret,
            now,
        )
        return int(row["version"])

    async def _require_tenant(self, unit: Unit, tenant_id: str) -> None:
        if not await unit.conn.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1", tenant_id):
            raise ForbiddenError(
                f"tenant {tenant_id} is not registered; a platform-admin creates it"
            )

    async def _device(self, unit: Unit, tenant_id: str, device_id: str) -> Row:
        return await self._row(
            unit,
            f"device {device_id}",
            "SELECT * FROM devices WHERE tenant_id = $1 AND device_id = $2",
            tenant_id,
            device_id,
        )

    async def rotate_credentials(
        self, tenant_id: str, device_id: str, if_match: int | None, actor: str
    ) -> Registered:
        stream = stream_id("device", tenant_id, device_id)
        async with self._writer.unit(stream) as unit:
            row = await self._device(unit, tenant_id, device_id)
            expected = domain.expect_version(if_match, row["version"])
            domain.require_active(device_id, row["status"])
            credentials = await self._issuer.rotate(DeviceIdentity(tenant_id, device_id))
            event = domain.credentials_rotated(device_id, row["credentials_version"] + 1)
            await self._append(unit, stream, [event], tenant_id, expected, actor)
            return Registered(await self._device(unit, tenant_id, device_id), credentials)

    async def update_device(
        self,
        tenant_id: str,
        device_id: str,
        changes: dict[str, Any],
        if_match: int | None,
        actor: str,
    ) -> Row:
        """Rename, retag or set the attributes of a device (``DeviceUpdated``); the evaluator
        and dispatcher see them on their next catalog refresh. Unchanged fields append nothing."""
        stream = stream_id("device", tenant_id, device_id)
        async with self._writer.unit(stream) as unit:
            row = await self._device(unit, tenant_id, device_id)
            expected = domain.expect_version(if_match, row["version"])
            event = domain.device_updated(device_id, row, changes)
            if event is not None:
                await self._append(unit, stream, [event], tenant_id, expected, actor)
            return await self._device(unit, tenant_id, device_id)

    async def decommission(
        self, tenant_id: str, device_id: str, if_match: int | None, actor: str
    ) -> Row:
        stream = stream_id("device", tenant_id, device_id)
        async with self._writer.unit(stream) as unit:
            row = await self._device(unit, tenant_id, device_id)
            expected = domain.expect_version(if_match, row["version"])
            event = domain.decommission(device_id, row["status"], self._clock())
            await self._issuer.disable(DeviceIdentity(tenant_id, device_id))
            await self._append(unit, stream, [event], tenant_id, expected, actor)
            return await self._device(unit, tenant_id, device_id)

    # --- rules ---------------------------------------------------------------------------
    async def create_rule(self, tenant_id: str, body: schemas.RuleIn, actor: str) -> Row:
        rule_id = domain.new_id("rule")
        data = {"rule_id": rule_id, **body.model_dump(mode="json", exclude_none=True)}
        return await self._create(
            "rule", tenant_id, rule_id, NewEvent.of(contracts.RuleCreated.from_data(data)), actor
        )

    async def update_rule(
        self, tenant_id: str, rule_id: str, body: schemas.RuleIn, if_match: int | None, actor: str
    ) -> Row:
        data = {"rule_id": rule_id, **body.model_dump(mode="json", exclude_none=True)}
        return await self._update(
            "rule",
            tenant_id,
            rule_id,
            if_match,
            actor,
            lambda _row: NewEvent.of(contracts.RuleUpdated.from_data(data)),
        )

    async def delete_rule(
        self, tenant_id: str, rule_id: str, if_match: int | None, actor: str
    ) -> None:
        await self._update(
            "rule",
            tenant_id,
            rule_id,
            if_match,
            actor,
            lambda _row: NewEvent.of(contracts.RuleDeleted(rule_id=rule_id)),
            reread=False,
        )

    # --- integrations --------------------------------------------------------------------
    async def create_integration(
        self,
        tenant_id: str,
        body: schemas.WebhookIn | schemas.EmailIn | schemas.MqttIn | schemas.SnsIn,
        actor: str,
    ) -> tuple[Row, str | None]:
        integration_id = domain.new_id("int")
        body = await self._checked_destination(tenant_id, body)
        secret = None
        data = self._integration_data(tenant_id, integration_id, body)
        if body.kind in SIGNED_KINDS:
            secret = generate_secret()
            data["secret_sealed"] = self._box.seal(secret, secret_owner(tenant_id, integration_id))
        row = await self._create(
            "integration",
            tenant_id,
            integration_id,
            NewEvent.of(contracts.IntegrationCreated.from_data(data)),
            actor,
        )
        return row, secret

    async def update_integration(
        self,
        tenant_id: str,
        integration_id: str,
        body: schemas.WebhookIn | schemas.EmailIn | schemas.MqttIn | schemas.SnsIn,
        if_match: int | None,
        actor: str,
    ) -> Row:
        body = await self._checked_destination(tenant_id, body)

        def event(row: Row) -> NewEvent:
            if row["kind"] != body.kind:
                raise InvalidError(
                    "body.kind", f"an integration's kind cannot change (it is {row['kind']})"
                )
            data = self._integration_data(tenant_id, integration_id, body)
            return NewEvent.of(contracts.IntegrationUpdated.from_data(data))

        return await self._update("integration", tenant_id, integration_id, if_match, actor, event)

    async def _checked_destination(self, tenant_id: str, body: IntegrationBody) -> IntegrationBody:
        """The body with its destination normalised; :class:`InvalidError` where it may not go."""
        policy = self._destinations
        if isinstance(body, schemas.WebhookIn):
            return body.model_copy(update={"url": await policy.webhook_url(body.url)})
        if isinstance(body, schemas.MqttIn):
            return body.model_copy(update={"topic": policy.mqtt_topic(tenant_id, body.topic)})
        if isinstance(body, schemas.SnsIn):
            return body.model_copy(update={"topic_arn": policy.sns_topic_arn(body.topic_arn)})
        return body

    def _integration_data(
        self,
        tenant_id: str,
        integration_id: str,
        body: schemas.WebhookIn | schemas.EmailIn | schemas.MqttIn | schemas.SnsIn,
    ) -> Row:
        """The event data; custom webhook header values (often credentials) sealed like the secret."""
        data = _integration_data(integration_id, body)
        if headers := data["config"].get("headers"):
            data["config"]["headers"] = seal_values(
                self._box, headers, headers_owner(tenant_id, integration_id)
            )
        return data

    async def disable_integration(
        self, tenant_id: str, integration_id: str, if_match: int | None, actor: str
    ) -> Row:
        def event(row: Row) -> NewEvent:
            if row["status"] == "disabled":
                raise ConflictError(f"integration {integration_id} is already disabled")
            disabled = contracts.IntegrationDisabled(
                integration_id=integration_id, reason=f"disabled by {actor}"
            )
            return NewEvent.of(disabled)

        return await self._update("integration", tenant_id, integration_id, if_match, actor, event)

    # --- routes --------------------------------------------------------------------------
    async def create_route(self, tenant_id: str, body: schemas.RouteIn, actor: str) -> Row:
        route_id = domain.new_id("route")
        await self._require_integration(tenant_id, body.integration_id)
        data = {"route_id": route_id, **body.model_dump(mode="json")}
        data["match"] = body.match.model_dump(mode="json", exclude_none=True)
        return await self._create(
            "route", tenant_id, route_id, NewEvent.of(contracts.RouteCreated.from_data(data)), actor
        )

    async def update_route(
        self, tenant_id: str, route_id: str, body: schemas.RouteIn, if_match: int | None, actor: str
    ) -> Row:
        await self._require_integration(tenant_id, body.integration_id)
        data = {"route_id": route_id, **body.model_dump(mode="json")}
        data["match"] = body.match.model_dump(mode="json", exclude_none=True)
        return await self._update(
            "route",
            tenant_id,
            route_id,
            if_match,
            actor,
            lambda _row: NewEvent.of(contracts.RouteUpdated.from_data(data)),
        )

    async def delete_route(
        self, tenant_id: str, route_id: str, if_match: int | None, actor: str
    ) -> None:
        await self._update(
            "route",
            tenant_id,
            route_id,
            if_match,
            actor,
            lambda _row: NewEvent.of(contracts.RouteDeleted(route_id=route_id)),
            reread=False,
        )

    async def _require_integration(self, tenant_id: str, integration_id: str) -> None:
        async with self._writer.store.pool.acquire() as conn:
            if not await conn.fetchval(
                "SELECT 1 FROM integrations WHERE tenant_id = $1 AND integration_id = $2",
                tenant_id,
                integration_id,
            ):
                raise InvalidError(
                    "body.integration_id", f"integration {integration_id} does not exist"
                )

    # --- alerts --------------------------------------------------------------------------
    async def alert_action(
        self,
        tenant_id: str,
        alert_id: str,
        actor: str,
        if_match: int | None,
        decide: Callable[[str, str, str, datetime], NewEvent],
    ) -> Row:
        stream = stream_id("alert", tenant_id, alert_id)
        async with self._writer.unit(stream) as unit:
            row = await self._row(
                unit,
                f"alert {alert_id}",
                "SELECT * FROM alerts WHERE tenant_id = $1 AND alert_id = $2",
                tenant_id,
                alert_id,
            )
            expected = domain.expect_version(if_match, row["version"])
            event = decide(alert_id, row["status"], actor, self._clock())
            await self._append(unit, stream, [event], tenant_id, expected, actor)
            return await self._row(
                unit,
                f"alert {alert_id}",
                "SELECT * FROM alerts WHERE tenant_id = $1 AND alert_id = $2",
                tenant_id,
                alert_id,
            )

    # --- provisioning profiles -----------------------------------------------------------
    async def create_profile(
        self, tenant_id: str, body: schemas.ProfileIn, actor: str
    ) -> tuple[Row, str]:
        if body.expires_at is not None and body.expires_at <= self._clock():
            raise InvalidError("body.expires_at", "must be in the future")
        profile_id = domain.new_id("prof")
        secret = "ps_" + secrets.token_urlsafe(32)
        data = {
            "profile_id": profile_id,
            "name": body.name,
            "provision_key": "pk_" + secrets.token_hex(12),
            "secret_hash": domain.hash_secret(secret),
            "device_limit": body.device_limit,
            "expires_at": domain.iso(body.expires_at) if body.expires_at else None,
            "tags": body.tags,
        }
        row = await self._create(
            "profile",
            tenant_id,
            profile_id,
            NewEvent.of(contracts.ProvisioningProfileCreated.from_data(data)),
            actor,
        )
        return row, secret

    async def revoke_profile(
        self, tenant_id: str, profile_id: str, if_match: int | None, actor: str
    ) -> Row:
        def event(row: Row) -> NewEvent:
            if row["status"] == "revoked":
                raise ConflictError(f"provisioning profile {profile_id} is already revoked")
            return NewEvent.of(contracts.ProvisioningProfileRevoked(profile_id=profile_id))

        return await self._update("profile", tenant_id, profile_id, if_match, actor, event)

    async def claim(self, body: schemas.ProvisionIn, profile: Row) -> Registered:
        """Register a device with a provisioning profile's key and secret (profile looked up by key)."""
        device = schemas.DeviceCreate(
            device_id=body.device_id, name=body.name, tags=profile["tags"]
        )
        claim = Claim(profile["profile_id"], body.provision_secret)
        return await self.register_device(
            profile["tenant_id"], device, f"profile:{claim.profile_id}", claim
        )

    # --- shared create/update ------------------------------------------------------------
    async def _create(
        self, kind: str, tenant_id: str, entity_id: str, event: NewEvent, actor: str
    ) -> Row:
        stream = stream_id(kind, tenant_id, entity_id)
        table, key = _TABLES[kind]
        async with self._writer.unit(stream) as unit:
            await self._append(unit, stream, [event], tenant_id, NO_STREAM, actor)
            return await self._row(
                unit,
                f"{kind} {entity_id}",
                f"SELECT * FROM {table} WHERE tenant_id = $1 AND {key} = $2",  # noqa: S608
                tenant_id,
                entity_id,
            )

    async def _update(
        self,
        kind: str,
        tenant_id: str,
        entity_id: str,
        if_match: int | None,
        actor: str,
        decide: Callable[[Row], NewEvent],
        *,
        reread: bool = True,
    ) -> Row:
        stream = stream_id(kind, tenant_id, entity_id)
        table, key = _TABLES[kind]
        select = f"SELECT * FROM {table} WHERE tenant_id = $1 AND {key} = $2"  # noqa: S608
        async with self._writer.unit(stream) as unit:
            row = await self._row(unit, f"{kind} {entity_id}", select, tenant_id, entity_id)
            expected = domain.expect_version(if_match, row["version"])
            await self._append(unit, stream, [decide(row)], tenant_id, expected, actor)
            return (
                await self._row(unit, f"{kind} {entity_id}", select, tenant_id, entity_id)
                if reread
                else row
            )


_TABLES = {
    "rule": ("rules", "rule_id"),
    "integration": ("integrations", "integration_id"),
    "route": ("routes", "route_id"),
    "profile": ("provisioning_profiles", "profile_id"),
}


def _integration_data(
    integration_id: str, body: schemas.WebhookIn | schemas.EmailIn | schemas.MqttIn | schemas.SnsIn
) -> Row:
    config = body.model_dump(mode="json", exclude={"name", "kind"}, exclude_none=True)
    return {
        "integration_id": integration_id,
        "name": body.name,
        "kind": body.kind,
        "config": config,
    }
