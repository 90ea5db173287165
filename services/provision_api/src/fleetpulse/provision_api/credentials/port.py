"""The ``CredentialIssuer`` port: what the API needs from wherever device credentials live."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Protocol

from fleetpulse.provision_api.domain import device_username, topic_prefix


class CredentialsUnavailableError(Exception):
    """The broker or cloud service did not carry out a credentials command."""


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    tenant_id: str
    device_id: str

    @property
    def username(self) -> str:
        return device_username(self.tenant_id, self.device_id)

    @property
    def topic_prefix(self) -> str:
        return topic_prefix(self.tenant_id, self.device_id)


@dataclass(frozen=True, slots=True)
class IssuedCredentials:
    """What a device needs to connect; secrets here are shown to the caller once, never stored."""

    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    certificate_pem: str | None = None
    private_key: str | None = field(default=None, repr=False)


class CredentialIssuer(Protocol):
    async def issue(self, device: DeviceIdentity) -> IssuedCredentials:
        """Create (or re-create) credentials allowed to publish only under the device's prefix."""
        ...

    async def rotate(self, device: DeviceIdentity) -> IssuedCredentials:
        """Replace the credentials; the old ones stop working."""
        ...

    async def disable(self, device: DeviceIdentity) -> None:
        """The device can no longer connect (and is disconnected if it is)."""
        ...

    async def ready(self) -> bool: ...


def new_password() -> str:
    return secrets.token_urlsafe(24)


class InMemoryCredentialIssuer:
    """Fake adapter: remembers passwords in memory, so tests can check what a device may do."""

    def __init__(self) -> None:
        self.passwords: dict[str, str] = {}
        self.disabled: set[str] = set()
        self.fail = False

    async def issue(self, device: DeviceIdentity) -> IssuedCredentials:
        return self._set(device)

    async def rotate(self, device: DeviceIdentity) -> IssuedCredentials:
        return self._set(device)

    async def disable(self, device: DeviceIdentity) -> None:
        self._check()
        self.disabled.add(device.username)

    async def ready(self) -> bool:
        return not self.fail

    def _set(self, device: DeviceIdentity) -> IssuedCredentials:
        self._check()
        password = new_password()
        self.passwords[device.username] = password
        self.disabled.discard(device.username)
        return IssuedCredentials(
            client_id=device.username, username=device.username, password=password
        )

    def _check(self) -> None:
        if self.fail:
            raise CredentialsUnavailableError("fake issuer told to fail")
