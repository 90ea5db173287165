"""Mosquitto dynamic security: the ``MosquittoCredentialIssuer`` adapter.

Commands go through :class:`fleetpulse.common.dynsec.DynsecAdmin` (its failures to answer become
:class:`CredentialsUnavailableError`). Each device gets a client (username = client id =
``{tenant}.{device}``) and a role of its own whose only ACL allows publishing under
``tenant/{t}/device/{d}/#``; the broker's default ACL access denies everything else.
"""

from __future__ import annotations

from fleetpulse.common.dynsec import Command, DynsecAdmin, DynsecUnavailableError
from fleetpulse.provision_api.credentials.port import (
    CredentialsUnavailableError,
    DeviceIdentity,
    IssuedCredentials,
    new_password,
)

__all__ = ["DynsecAdmin", "DynsecError", "MosquittoCredentialIssuer", "role_name"]


class DynsecError(CredentialsUnavailableError):
    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"{command}: {error}")
        self.command, self.error = command, error


def _check(responses: list[Command], tolerated: tuple[str, ...] = ()) -> None:
    for response in responses:
        error = response.get("error")
        if error and not any(text in str(error) for text in tolerated):
            raise DynsecError(str(response.get("command")), str(error))


def role_name(device: DeviceIdentity) -> str:
    return f"device.{device.username}"


class MosquittoCredentialIssuer:
    def __init__(self, admin: DynsecAdmin) -> None:
        self._admin = admin

    async def _execute(self, *commands: Command) -> list[Command]:
        try:
            return await self._admin.execute(*commands)
        except DynsecUnavailableError as exc:
            raise CredentialsUnavailableError(str(exc)) from None

    async def issue(self, device: DeviceIdentity) -> IssuedCredentials:
        password = new_password()
        role = role_name(device)
        acl = {
            "acltype": "publishClientSend",
            "topic": device.topic_prefix + "#",
            "priority": 0,
            "allow": True,
        }
        role_response, client_response = await self._execute(
            {"command": "createRole", "rolename": role, "acls": [acl]},
            {
                "command": "createClient",
                "username": device.username,
                "password": password,
                "clientid": device.username,
                "roles": [{"rolename": role, "priority": 0}],
            },
        )
        _check([role_response, client_response], tolerated=("already exists",))
        if client_response.get("error"):
            await self._reissue(device, role, password)
        return IssuedCredentials(
            client_id=device.username, username=device.username, password=password
        )

    async def _reissue(self, device: DeviceIdentity, role: str, password: str) -> None:
        """The client exists (a re-registration, or a command whose commit failed): reset it."""
        (current,) = await self._execute({"command": "getClient", "username": device.username})
        _check([current])
        roles = {
            r.get("rolename") for r in current.get("data", {}).get("client", {}).get("roles", [])
        }
        commands: list[Command] = [
            {"command": "setClientPassword", "username": device.username, "password": password},
            {"command": "enableClient", "username": device.username},
        ]
        if role not in roles:
            commands.append(
                {"command": "addClientRole", "username": device.username, "rolename": role}
            )
        _check(await self._execute(*commands))

    async def rotate(self, device: DeviceIdentity) -> IssuedCredentials:
        password = new_password()
        # The plugin disconnects the client's open sessions when its password changes.
        _check(
            await self._execute(
                {"command": "setClientPassword", "username": device.username, "password": password},
            )
        )
        return IssuedCredentials(
            client_id=device.username, username=device.username, password=password
        )

    async def disable(self, device: DeviceIdentity) -> None:
        # disableClient also disconnects the device if it is connected.
        _check(
            await self._execute(
                {"command": "disableClient", "username": device.username},
            ),
            tolerated=("not found",),
        )

    async def ready(self) -> bool:
        return self._admin.connected
