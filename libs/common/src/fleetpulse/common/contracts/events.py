"""The domain events: one frozen struct per event type, tagged by ``type`` (the class name).

An event's ``data`` in the store is :meth:`Event.to_data` (the struct's fields, without ``type``;
a field left :data:`UNSET` is omitted, ``None`` is written as ``null``), and
:func:`decode_event` turns a stored ``(type, data)`` back into the struct. The JSON is exactly
what the services wrote before these types existed, so no data migration: unknown keys are
ignored when decoding, and keys that older events may lack are ``UNSET``-able.

Timestamps stay ISO-8601 strings (:data:`Instant`), as they are stored.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from fleetpulse.common.contracts.constants import SeverityName

Instant = Annotated[str, msgspec.Meta(description="ISO-8601 instant")]
Number = int | float
Json = dict[str, Any]
E = TypeVar("E", bound="Event")
T = TypeVar("T")


def or_none(value: T | UnsetType) -> T | None:
    """``None`` for a key the stored data does not have (``data.get(key)``)."""
    return None if isinstance(value, UnsetType) else value


def or_default(value: T | UnsetType, default: T) -> T:
    """``default`` for a key the stored data does not have (``data.get(key, default)``)."""
    return default if isinstance(value, UnsetType) else value


class Event(msgspec.Struct, frozen=True, tag_field="type", tag=True, kw_only=True):
    """Base of every domain event; ``TYPE`` is the stored ``type`` (the class name)."""

    TYPE: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.TYPE = cls.__name__

    def to_data(self) -> Json:
        """The stored ``data``: the fields without ``type``, ``UNSET`` ones left out."""
        data: Json = msgspec.to_builtins(self)
        del data["type"]
        return data

    @classmethod
    def from_data(cls: type[E], data: Json) -> E:
        return msgspec.convert(data, cls)


# --- tenants and devices --------------------------------------------------------------------


class TenantCreated(Event, frozen=True):
    tenant_id: str
    name: str
    created_at: Instant | UnsetType = UNSET


class DeviceRegistered(Event, frozen=True):
    device_id: str
    name: str | UnsetType | None = UNSET
    tags: dict[str, str] | UnsetType = UNSET
    registered_at: Instant | UnsetType = UNSET
    profile_id: str | UnsetType = UNSET
    """Set when the device claimed a provisioning profile."""


class DeviceCredentialsIssued(Event, frozen=True):
    """Never a password."""

    device_id: str
    credentials_version: int
    username: str | UnsetType = UNSET
    client_id: str | UnsetType = UNSET


class DeviceCredentialsRotated(Event, frozen=True):
    device_id: str
    credentials_version: int


class DeviceDecommissioned(Event, frozen=True):
    device_id: str
    decommissioned_at: Instant | UnsetType = UNSET


class DeviceUpdated(Event, frozen=True):
    """Only the fields that changed (``name`` null: cleared)."""

    device_id: str
    name: str | UnsetType | None = UNSET
    tags: dict[str, str] | UnsetType | None = UNSET
    attributes: Json | UnsetType | None = UNSET


# --- provisioning profiles ------------------------------------------------------------------


class ProvisioningProfileCreated(Event, frozen=True):
    profile_id: str
    name: str
    provision_key: str
    secret_hash: str
    device_limit: int | UnsetType | None = UNSET
    expires_at: Instant | UnsetType | None = UNSET
    tags: dict[str, str] | UnsetType = UNSET


class ProvisioningProfileClaimed(Event, frozen=True):
    profile_id: str
    device_id: str | UnsetType = UNSET
    claimed_at: Instant | UnsetType = UNSET


class ProvisioningProfileRevoked(Event, frozen=True):
    profile_id: str


# --- rules, integrations, routes --------------------------------------------------------------


class _RuleDefinition(Event, frozen=True):
    """A rule's whole definition; absent keys (older events, other kinds) are ``UNSET``."""

    rule_id: str
    name: str
    kind: str
    severity: SeverityName
    metric: str | UnsetType | None = UNSET
    operator: str | UnsetType | None = UNSET
    threshold: Number | UnsetType | None = UNSET
    clear_threshold: Number | UnsetType | None = UNSET
    duration_s: Number | UnsetType | None = UNSET
    timeout_s: Number | UnsetType | None = UNSET
    all: list[Json] | UnsetType | None = UNSET
    any: list[Json] | UnsetType | None = UNSET
    schedule: Json | UnsetType | None = UNSET
    device_selector: Json | UnsetType | None = UNSET
    enabled: bool | UnsetType | None = UNSET
    """Absent (events before it existed): enabled."""


class RuleCreated(_RuleDefinition, frozen=True):
    pass


class RuleUpdated(_RuleDefinition, frozen=True):
    pass


class RuleDeleted(Event, frozen=True):
    rule_id: str


class _IntegrationDefinition(Event, frozen=True):
    integration_id: str
    name: str
    kind: str
    config: Json
    secret_sealed: str | UnsetType | None = UNSET
    """The signing secret sealed with :mod:`fleetpulse.common.crypto` (never plain)."""


class IntegrationCreated(_IntegrationDefinition, frozen=True):
    pass


class IntegrationUpdated(_IntegrationDefinition, frozen=True):
    pass


class IntegrationDisabled(Event, frozen=True):
    integration_id: str
    reason: str | UnsetType | None = UNSET


class _RouteDefinition(Event, frozen=True):
    route_id: str
    name: str
    integration_id: str
    match: Json | UnsetType = UNSET
    group_by: list[str] | UnsetType = UNSET
    group_wait_s: int | UnsetType | None = UNSET
    group_interval_s: int | UnsetType | None = UNSET
    repeat_interval_s: int | UnsetType | None = UNSET


class RouteCreated(_RouteDefinition, frozen=True):
    pass


class RouteUpdated(_RouteDefinition, frozen=True):
    pass


class RouteDeleted(Event, frozen=True):
    route_id: str


# --- silences and inhibit rules -------------------------------------------------------------


class SilenceCreated(Event, frozen=True):
    silence_id: str
    matchers: list[Json]
    """``[{name, type, value}]``"""
    starts_at: Instant
    ends_at: Instant
    created_by: str
    comment: str | UnsetType = UNSET


class SilenceExpired(Event, frozen=True):
    silence_id: str
    ends_at: Instant
    expired_by: str | UnsetType | None = UNSET


class InhibitRuleCreated(Event, frozen=True):
    inhibit_rule_id: str
    source_matchers: list[Json]
    target_matchers: list[Json]
    created_by: str
    name: str | UnsetType = UNSET
    equal: list[str] | UnsetType = UNSET


class InhibitRuleDeleted(Event, frozen=True):
    inhibit_rule_id: str


# --- alerts ------------------------------------------------------------------------------------

AlertValue = int | float | bool | None


class AlertOpened(Event, frozen=True):
    alert_id: str
    fingerprint: str
    rule_id: str
    device_id: str
    severity: SeverityName
    rule_name: str | UnsetType = UNSET
    opened_at: Instant | UnsetType = UNSET
    reason: str | UnsetType | None = UNSET
    kind: str | UnsetType = UNSET
    metric: str | UnsetType | None = UNSET
    """Threshold rules: the metric, its ``value``, the ``threshold`` and the ``operator``."""
    value: AlertValue | UnsetType = UNSET
    threshold: Number | UnsetType | None = UNSET
    operator: str | UnsetType = UNSET
    values: Json | UnsetType | None = UNSET
    """Condition rules: ``{condition label: measured}``."""


class AlertAcknowledged(Event, frozen=True):
    alert_id: str
    acknowledged_at: Instant | UnsetType = UNSET
    by: str | UnsetType | None = UNSET


class AlertSilenced(Event, frozen=True):
    alert_id: str
    until: Instant
    by: str | UnsetType | None = UNSET


class AlertResolved(Event, frozen=True):
    """``reason`` when the rule or device is gone: ``rule_deleted``, ``rule_disabled``,
    ``rule_changed``, ``device_deselected``, ``device_decommissioned``."""

    alert_id: str
    resolved_at: Instant | UnsetType = UNSET
    fingerprint: str | UnsetType = UNSET
    rule_id: str | UnsetType = UNSET
    device_id: str | UnsetType = UNSET
    severity: SeverityName | UnsetType = UNSET
    value: AlertValue | UnsetType = UNSET
    values: Json | UnsetType = UNSET
    reason: str | UnsetType = UNSET


class AlertClosed(Event, frozen=True):
    alert_id: str
    closed_at: Instant | UnsetType = UNSET
    by: str | UnsetType | None = UNSET


# --- deliveries ------------------------------------------------------------------------------


class DeliveryScheduled(Event, frozen=True):
    delivery_id: str
    alert_id: str
    alert_event_id: str
    integration_id: str
    alert_event_type: str | UnsetType = UNSET
    """The type of the alert event notified (``AlertOpened``, ``AlertResolved``, ...)."""
    route_id: str | UnsetType | None = UNSET
    notification_type: str | UnsetType | None = UNSET
    """``firing``, ``repeat`` or ``resolved``."""
    payload: Json | UnsetType = UNSET
    not_before: Instant | UnsetType | None = UNSET


class DeliveryAttempted(Event, frozen=True):
    delivery_id: str
    attempt: int
    status_code: int | UnsetType | None = UNSET
    latency_ms: Number | UnsetType | None = UNSET
    error: str | UnsetType | None = UNSET
    next_attempt_at: Instant | UnsetType | None = UNSET
    attempted_at: Instant | UnsetType = UNSET


class DeliverySucceeded(Event, frozen=True):
    delivery_id: str
    attempt: int
    completed_at: Instant | UnsetType = UNSET


class DeliveryAbandoned(Event, frozen=True):
    delivery_id: str
    attempts: int
    reason: str | UnsetType | None = UNSET
    completed_at: Instant | UnsetType = UNSET


def _registry() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if not cls.__name__.startswith("_"):
            found[cls.TYPE] = cls
    return dict(sorted(found.items()))


#: Every event type name -> its struct.
EVENT_TYPES: dict[str, type[Event]] = _registry()


class UnknownEventTypeError(KeyError):
    """A stored ``type`` with no contract struct."""


def decode_event(type_: str, data: Json) -> Event:
    """The struct of a stored event; :class:`UnknownEventTypeError` for an unknown ``type``,
    :class:`msgspec.ValidationError` for data that does not fit it."""
    try:
        cls = EVENT_TYPES[type_]
    except KeyError:
        raise UnknownEventTypeError(type_) from None
    return msgspec.convert(data, cls)


__all__ = [
    "EVENT_TYPES",
    "UNSET",
    "AlertAcknowledged",
    "AlertClosed",
    "AlertOpened",
    "AlertResolved",
    "AlertSilenced",
    "DeliveryAbandoned",
    "DeliveryAttempted",
    "DeliveryScheduled",
    "DeliverySucceeded",
    "DeviceCredentialsIssued",
    "DeviceCredentialsRotated",
    "DeviceDecommissioned",
    "DeviceRegistered",
    "DeviceUpdated",
    "Event",
    "InhibitRuleCreated",
    "InhibitRuleDeleted",
    "Instant",
    "IntegrationCreated",
    "IntegrationDisabled",
    "IntegrationUpdated",
    "ProvisioningProfileClaimed",
    "ProvisioningProfileCreated",
    "ProvisioningProfileRevoked",
    "RouteCreated",
    "RouteDeleted",
    "RouteUpdated",
    "RuleCreated",
    "RuleDeleted",
    "RuleUpdated",
    "SilenceCreated",
    "SilenceExpired",
    "TenantCreated",
    "UnknownEventTypeError",
    "UnsetType",
    "decode_event",
    "or_default",
    "or_none",
]
