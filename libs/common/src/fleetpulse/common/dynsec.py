"""Mosquitto dynamic security: the one admin client, for the API, the dev stack and the tests.

Commands are JSON published to ``$CONTROL/dynamic-security/v1``; the plugin answers on
``$CONTROL/dynamic-security/v1/response`` with one response per command, carrying back the
command's ``correlationData``. :class:`DynsecAdmin` keeps a long-lived admin connection (the
provisioning API's credential adapter); :func:`dynsec_request` and :func:`dynsec_request_sync`
open one for a single request (the dev stack's service users, the test broker's clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import aiomqtt
import orjson

from fleetpulse.common.mqtt import MqttEndpoint, aiomqtt_client, run_with_reconnect

__all__ = [
    "CONTROL_TOPIC",
    "RESPONSE_TOPIC",
    "Command",
    "DynsecAdmin",
    "DynsecUnavailableError",
    "dynsec_request",
    "dynsec_request_sync",
]

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
log = logging.getLogger(__name__)

Command = dict[str, Any]


class DynsecUnavailableError(Exception):
    """The broker could not be reached, or dynamic security did not answer in time."""


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
                future.set_exception(DynsecUnavailableError("broker connection lost"))
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
            raise DynsecUnavailableError(
                f"dynamic security did not answer: {type(exc).__name__}"
            ) from None
        finally:
            for command in tagged:
                self._pending.pop(command["correlationData"], None)

    async def _ready_client(self) -> aiomqtt.Client:
        try:
            await asyncio.wait_for(self._connected.wait(), self._timeout_s)
        except TimeoutError:
            raise DynsecUnavailableError("not connected to the broker") from None
        assert self._client is not None
        return self._client


async def dynsec_request(
    endpoint: MqttEndpoint, commands: Sequence[Command], *, timeout_s: float = 10.0
) -> list[Command]:
    """Send ``commands`` in one request on a connection of its own; their responses, in order
    (errors not raised); :class:`DynsecUnavailableError` when the broker does not answer."""
    admin = DynsecAdmin(endpoint, timeout_s=timeout_s)
    await admin.start()
    try:
        return await admin.execute(*commands)
    finally:
        await admin.close()


def dynsec_request_sync(
    endpoint: MqttEndpoint, commands: Sequence[Command], *, timeout_s: float = 10.0
) -> list[Command]:
    """:func:`dynsec_request` for synchronous callers, also from inside a running event loop
    (it runs on a thread of its own)."""
    outcome: list[list[Command] | BaseException] = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(dynsec_request(endpoint, commands, timeout_s=timeout_s)))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append(exc)

    worker = threading.Thread(target=run, name="dynsec-request", daemon=True)
    worker.start()
    worker.join()
    (result,) = outcome
    if isinstance(result, BaseException):
        raise result
    return result
