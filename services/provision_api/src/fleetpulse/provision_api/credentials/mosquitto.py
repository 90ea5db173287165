"""Mosquitto dynamic security: an admin client and the ``MosquittoCredentialIssuer`` adapter.

Commands are JSON published to ``$CONTROL/dynamic-security/v1``; the plugin answers on
``$CONTROL/dynamic-security/v1/response`` with one response per command, carrying back the
command's ``correlationData``. Each device gets a client (username = client id =
``{tenant}.{device}``) and a role of its own whose only ACL allows publishing under
``tenant/{t}/device/{d}/#``; the broker's default ACL access denies everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import aiomqtt
import orjson

from fleetpulse.common.mqtt import MqttEndpoint, aiomqtt_client, run_with_reconnect
from fleetpulse.provision_api.credentials.port import (
    CredentialsUnavailableError,
    DeviceIdentity,
    IssuedCredentials,
    new_password,
)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
log = logging.getLogger(__name__)

Command = dict[str, Any]


class DynsecError(CredentialsUnavailableError):
    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"{command}: {error}")
        self.command, self.error = command, error


class DynsecAdmin:
    """A long-lived admin connection; ``execute`` sends commands and awaits their responses."""

    def __init__(self, endpoint: MqttEndpoint, *, timeout_s: float = 5.0) -> None:
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._pending: dict[str, asyncio.Future[Command]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(
            run_with_reconnect(
                lambda: aiomqtt_client(
                    self._endpoint, identifier=f"fleetpulse-dynsec-{uuid.uuid4().hex[:8]}"
                ),
                self._session,
                stop=self._stop,
            ),
            name="dynsec-admin",
        )

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await asyncio.wait_for(self._task, timeout=5)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(RESPONSE_TOPIC, qos=1)
        self._client = client
        self._connected.set()
        try:
            async for message in client.messages:
                self._on_response(
                    bytes(message.payload)
                    if isinstance(message.payload, bytes | bytearray)
                    else b""
                )
        finally:
            self._connected.clear()
            self._client = None
            self._fail_pending()

    def _on_response(self, payload: bytes) -> None:
        try:
            responses = orjson.loads(payload).get("responses", [])
        except (orjson.JSONDecodeError, AttributeError):
            log.warning("unreadable dynamic-security response")
            return
        for response in responses:
            future = self._pending.pop(str(response.get("correlationData")), None)
            if future is not None and not future.done():
                future.set_result(response)

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CredentialsUnavailableError("broker connection lost"))
        self._pending.clear()

    async def execute(self, *commands: Command) -> list[Command]:
        """Send ``commands`` in one message; their responses, in order (errors not raised)."""
        client = await self._ready_client()
        loop = asyncio.get_running_loop()
        tagged, futures = [], []
        for command in commands:
            correlation = uuid.uuid4().hex
            self._pending[correlation] = future = loop.create_future()
            tagged.append({**command, "correlationData": correlation})
            futures.append(future)
        try:
            await client.publish(CONTROL_TOPIC, orjson.dumps({"commands": tagged}), qos=1)
            return list(await asyncio.wait_for(asyncio.gather(*futures), self._timeout_s))
        except (TimeoutError, aiomqtt.MqttError) as exc:
            raise CredentialsUnavailableError(
                f"dynamic security did not answer: {type(exc).__name__}"
            ) from None
        finally:
            for command in tagged:
                self._pending.pop(command["correlationData"], None)

    async def _ready_client(self) -> aiomqtt.Client:
        try:
            await asyncio.wait_for(self._connected.wait(), self._timeout_s)
        except TimeoutError:
            raise CredentialsUnavailableError("not connected to the broker") from None
        assert self._client is not None
        return self._client


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

    async def issue(self, device: DeviceIdentity) -> IssuedCredentials:
        password = new_password()
        role = role_name(device)
        acl = {
            "acltype": "publishClientSend",
            "topic": device.topic_prefix + "#",
            "priority": 0,
            "allow": True,
        }
        role_response, client_response = await self._admin.execute(
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
        (current,) = await self._admin.execute(
            {"command": "getClient", "username": device.username}
        )
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
        _check(await self._admin.execute(*commands))

    async def rotate(self, device: DeviceIdentity) -> IssuedCredentials:
        password = new_password()
        # The plugin disconnects the client's open sessions when its password changes.
        _check(
            await self._admin.execute(
                {"command": "setClientPassword", "username": device.username, "password": password},
            )
        )
        return IssuedCredentials(
            client_id=device.username, username=device.username, password=password
        )

    async def disable(self, device: DeviceIdentity) -> None:
        # disableClient also disconnects the device if it is connected.
        _check(
            await self._admin.execute(
                {"command": "disableClient", "username": device.username},
            ),
            tolerated=("not found",),
        )

    async def ready(self) -> bool:
        return self._admin.connected
