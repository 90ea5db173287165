"""The API's domain: decisions that turn a command and the current state into events.

Pure code: no database, HTTP or settings. Errors here are translated to problem documents in
``problems``; event names and data shapes are the contract in docs/foundation.md.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fleetpulse.common.contracts import (
    UNSET,
    AlertAcknowledged,
    AlertClosed,
    AlertSilenced,
    DeviceCredentialsIssued,
    DeviceCredentialsRotated,
    DeviceDecommissioned,
    DeviceRegistered,
    DeviceUpdated,
    ProvisioningProfileClaimed,
)
from fleetpulse.common.contracts.constants import ID_PATTERN as ID_PATTERN
from fleetpulse.common.contracts.constants import OPEN_STATUSES
from fleetpulse.common.eventstore import NewEvent


class DomainError(Exception):
    """A command cannot be carried out in the current state."""


class NotFoundError(DomainError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} does not exist")


class ConflictError(DomainError):
    pass


class StaleVersionError(DomainError):
    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"version {expected} is stale; the current version is {actual}")
        self.expected, self.actual = expected, actual


class InvalidError(DomainError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ForbiddenError(DomainError):
    pass


class UnauthenticatedError(DomainError):
    pass


def expect_version(if_match: int | None, current: int) -> int:
    """The version to append after: the client's (checked) or, without If-Match, the current."""
    if if_match is not None and if_match != current:
        raise StaleVersionError(if_match, current)
    return current


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- devices -------------------------------------------------------------------------------


def device_username(tenant_id: str, device_id: str) -> str:
    """MQTT username and client id of a device ('.' cannot occur in either id)."""
    return f"{tenant_id}.{device_id}"


def topic_prefix(tenant_id: str, device_id: str) -> str:
    return f"tenant/{tenant_id}/device/{device_id}/"


def device_registered(
    device_id: str,
    name: str | None,
    tags: Mapping[str, str],
    now: datetime,
    profile_id: str | None = None,
) -> NewEvent:
    registered = DeviceRegistered(
        device_id=device_id,
        name=name,
        tags=dict(tags),
        registered_at=iso(now),
        profile_id=UNSET if profile_id is None else profile_id,
    )
    return NewEvent.of(registered)


def credentials_issued(tenant_id: str, device_id: str, credentials_version: int) -> NewEvent:
    username = device_username(tenant_id, device_id)
    issued = DeviceCredentialsIssued(
        device_id=device_id,
        username=username,
        client_id=username,
        credentials_version=credentials_version,
    )
    return NewEvent.of(issued)


def credentials_rotated(device_id: str, credentials_version: int) -> NewEvent:
    return NewEvent.of(
        DeviceCredentialsRotated(device_id=device_id, credentials_version=credentials_version)
    )


def decommission(device_id: str, status: str, now: datetime) -> NewEvent:
    if status == "decommissioned":
        raise ConflictError(f"device {device_id} is already decommissioned")
    return NewEvent.of(DeviceDecommissioned(device_id=device_id, decommissioned_at=iso(now)))


def device_updated(
    device_id: str, current: Mapping[str, Any], changes: Mapping[str, Any]
) -> NewEvent | None:
    """``DeviceUpdated`` with the fields of ``changes`` that differ from ``current`` (None if
    nothing changes); a decommissioned device cannot be edited."""
    require_active(device_id, str(current["status"]))
    changed = {k: v for k, v in changes.items() if current.get(k) != v}
    if not changed:
        return None
    return NewEvent.of(DeviceUpdated.from_data({"device_id": device_id, **changed}))


def require_active(device_id: str, status: str) -> None:
    if status != "active":
        raise ConflictError(f"device {device_id} is decommissioned")


# --- alerts --------------------------------------------------------------------------------


def acknowledge(alert_id: str, status: str, by: str, now: datetime) -> NewEvent:
    if status != "open":
        raise ConflictError(f"alert {alert_id} is {status}; only an open alert can be acknowledged")
    return NewEvent.of(AlertAcknowledged(alert_id=alert_id, acknowledged_at=iso(now), by=by))


def silence(alert_id: str, status: str, by: str, now: datetime, duration_s: int) -> NewEvent:
    if status not in OPEN_STATUSES:
        raise ConflictError(f"alert {alert_id} is {status}; only an open alert can be silenced")
    until = now + timedelta(seconds=duration_s)
    return NewEvent.of(AlertSilenced(alert_id=alert_id, until=iso(until), by=by))


def close(alert_id: str, status: str, by: str, now: datetime) -> NewEvent:
    if status == "closed":
        raise ConflictError(f"alert {alert_id} is already closed")
    return NewEvent.of(AlertClosed(alert_id=alert_id, closed_at=iso(now), by=by))


# --- provisioning profiles -----------------------------------------------------------------


def hash_secret(secret: str) -> str:
    """Profile secrets are 256 random bits: a plain SHA-256 is enough to keep them unrecoverable."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)


@dataclass(frozen=True, slots=True)
class ProfileState:
    profile_id: str
    status: str
    device_limit: int | None
    devices_claimed: int
    expires_at: datetime | None
    secret_hash: str


def check_claim(profile: ProfileState, secret: str, now: datetime) -> None:
    """Raises :class:`UnauthenticatedError` for a wrong secret, :class:`ForbiddenError` for a revoked,
    expired or full profile."""
    if not secret_matches(secret, profile.secret_hash):
        raise UnauthenticatedError("wrong provisioning key or secret")
    if profile.status != "active":
        raise ForbiddenError("provisioning profile revoked")
    if profile.expires_at is not None and profile.expires_at <= now:
        raise ForbiddenError("provisioning profile expired")
    if profile.device_limit is not None and profile.devices_claimed >= profile.device_limit:
        raise ForbiddenError("provisioning profile device limit reached")


def profile_claimed(profile_id: str, device_id: str, now: datetime) -> NewEvent:
    return NewEvent.of(
        ProvisioningProfileClaimed(profile_id=profile_id, device_id=device_id, claimed_at=iso(now))
    )
