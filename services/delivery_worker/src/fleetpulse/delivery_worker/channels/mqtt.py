"""``MqttChannel``: publish the notification JSON to ``config.topic`` with ``config.qos``.

One connection per worker, opened on first use and reopened after a failure.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack, suppress

import aiomqtt
import orjson
from pydantic import SecretStr

from fleetpulse.common.mqtt import MqttEndpoint, aiomqtt_client
from fleetpulse.delivery_worker.channels.base import Notification
from fleetpulse.delivery_worker.retry import AttemptResult


class MqttChannel:
    def __init__(self, url: SecretStr | str | None, *, timeout_s: float = 15.0) -> None:
        self._endpoint = MqttEndpoint.parse(url) if url else None
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._client: aiomqtt.Client | None = None

    async def send(self, notification: Notification) -> AttemptResult:
        topic = str(notification.config.get("topic") or "")
        qos = int(notification.config.get("qos", 1))
        if self._endpoint is None or not topic or qos not in (0, 1, 2):
            return AttemptResult(
                ok=False, error="no broker configured, no topic or bad qos", permanent=True
            )
        started = time.perf_counter()
        try:
            client = await self._connected()
            payload = orjson.dumps(dict(notification.payload))
            await asyncio.wait_for(client.publish(topic, payload, qos=qos), self._timeout_s)
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            await self.close()
            return AttemptResult(
                ok=False,
                error=f"{type(exc).__name__}: {exc}"[:500],
                latency_ms=_ms(started),
                endpoint_failure=True,
            )
        return AttemptResult(ok=True, latency_ms=_ms(started))

    async def _connected(self) -> aiomqtt.Client:
        async with self._lock:
            if self._client is None:
                assert self._endpoint is not None
                stack = AsyncExitStack()
                client = aiomqtt_client(self._endpoint, timeout=self._timeout_s)
                self._client = await asyncio.wait_for(
                    stack.enter_async_context(client), self._timeout_s
                )
                self._stack = stack
            return self._client

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with suppress(aiomqtt.MqttError, OSError):
                await stack.aclose()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
