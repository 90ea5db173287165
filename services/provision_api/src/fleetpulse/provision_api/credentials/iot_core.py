"""AWS IoT Core: a thing per device, an X.509 certificate, and one shared policy that uses
thing-name variables, so a certificate may connect only as its thing and publish only under its
own ``tenant/{t}/device/{d}/`` prefix (from the thing's attributes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleetpulse.provision_api.credentials.port import (
    CredentialsUnavailableError,
    DeviceIdentity,
    IssuedCredentials,
)

log = logging.getLogger(__name__)
ClientFactory = Callable[[], AbstractAsyncContextManager[Any]]
ATTRIBUTES = "${iot:Connection.Thing.Attributes"


def thing_name(device: DeviceIdentity) -> str:
    """IoT thing names allow ``[a-zA-Z0-9:_-]``; ':' cannot occur in our ids."""
    return f"{device.tenant_id}:{device.device_id}"


def device_policy() -> dict[str, Any]:
    prefix = f"tenant/{ATTRIBUTES}[tenant_id]}}/device/{ATTRIBUTES}[device_id]}}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}",
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": f"arn:aws:iot:*:*:topic/{prefix}/*",
            },
        ],
    }


class IotCoreCredentialIssuer:
    def __init__(self, client: ClientFactory, *, policy_name: str = "fleetpulse-device") -> None:
        self._client = client
        self._policy_name = policy_name
        self._policy_ready = False

    async def issue(self, device: DeviceIdentity) -> IssuedCredentials:
        async with self._calls() as iot:
            await self._ensure_policy(iot)
            await self._ensure_thing(iot, device)
            await self._deactivate_certificates(iot, device)
            return await self._new_certificate(iot, device)

    async def rotate(self, device: DeviceIdentity) -> IssuedCredentials:
        async with self._calls() as iot:
            await self._deactivate_certificates(iot, device)
            return await self._new_certificate(iot, device)

    async def disable(self, device: DeviceIdentity) -> None:
        async with self._calls() as iot:
            await self._deactivate_certificates(iot, device)

    async def ready(self) -> bool:
        try:
            async with self._client() as iot:
                await iot.list_things(maxResults=1)
        except (BotoCoreError, ClientError, OSError):
            return False
        return True

    def _calls(self) -> AbstractAsyncContextManager[Any]:
        return _Translated(self._client)

    async def _ensure_policy(self, iot: Any) -> None:
        if self._policy_ready:
            return
        try:
            await iot.create_policy(
                policyName=self._policy_name, policyDocument=json.dumps(device_policy())
            )
        except ClientError as exc:
            if _code(exc) != "ResourceAlreadyExistsException":
                raise
        self._policy_ready = True

    async def _ensure_thing(self, iot: Any, device: DeviceIdentity) -> None:
        attributes = {"attributes": {"tenant_id": device.tenant_id, "device_id": device.device_id}}
        try:
            await iot.create_thing(thingName=thing_name(device), attributePayload=attributes)
        except ClientError as exc:
            if _code(exc) != "ResourceAlreadyExistsException":
                raise

    async def _new_certificate(self, iot: Any, device: DeviceIdentity) -> IssuedCredentials:
        cert = await iot.create_keys_and_certificate(setAsActive=True)
        await iot.attach_policy(policyName=self._policy_name, target=cert["certificateArn"])
        await iot.attach_thing_principal(
            thingName=thing_name(device), principal=cert["certificateArn"]
        )
        return IssuedCredentials(
            client_id=thing_name(device),
            certificate_pem=cert["certificatePem"],
            private_key=cert["keyPair"]["PrivateKey"],
        )

    async def _deactivate_certificates(self, iot: Any, device: DeviceIdentity) -> None:
        try:
            principals = await iot.list_thing_principals(thingName=thing_name(device))
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return
            raise
        for arn in principals.get("principals", []):
            certificate_id = arn.rsplit("/", 1)[-1]
            await iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
            await iot.detach_thing_principal(thingName=thing_name(device), principal=arn)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Translated(AbstractAsyncContextManager[Any]):
    """Opens a client; AWS errors become :class:`CredentialsUnavailableError`."""

    def __init__(self, factory: ClientFactory) -> None:
        self._cm = factory()

    async def __aenter__(self) -> Any:
        try:
            return await self._cm.__aenter__()
        except (BotoCoreError, OSError) as exc:
            raise CredentialsUnavailableError(
                f"AWS IoT unreachable: {type(exc).__name__}"
            ) from None

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        await self._cm.__aexit__(exc_type, exc, tb)
        if isinstance(exc, ClientError | BotoCoreError):
            log.warning("AWS IoT call failed", extra={"error": type(exc).__name__})
            raise CredentialsUnavailableError(f"AWS IoT refused: {type(exc).__name__}") from None
        return False


__all__ = ["IotCoreCredentialIssuer", "device_policy", "thing_name"]
