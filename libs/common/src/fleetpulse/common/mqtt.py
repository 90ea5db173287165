"""MQTT for every service: endpoint parsing, client factories, reconnect backoff, shared topics.

:func:`aiomqtt_client` (aiomqtt, on paho) builds plain clients that publish or subscribe and need
no control over acknowledgements: the simulator, the delivery MQTT channel, dynsec administration.
aiomqtt acknowledges a QoS 1 message when it is received, before the application has seen it.
Consumers that must acknowledge only after their work (ingest: after the batch commit) use
:class:`fleetpulse.common.mqtt_subscriber.MqttSubscriber`; zmqtt's acking client, which the
tests compare it with, lives in :mod:`fleetpulse.testing.mqtt`.

``FLEETPULSE_MQTT_URL`` is ``mqtt://user:pass@host:port`` or ``mqtts://`` (TLS, port 8883 by
default); :meth:`MqttEndpoint.parse` reads it and never shows the password in ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from pydantic import SecretStr

from fleetpulse.common.retry import equal_jitter
from fleetpulse.common.runtime import sleep_until_stopped

__all__ = [
    "Backoff",
    "MqttEndpoint",
    "aiomqtt_client",
    "integration_namespace",
    "publish_topic_problem",
    "run_with_reconnect",
    "shared_subscription",
]

log = logging.getLogger(__name__)
MAX_TOPIC_BYTES = 65535
INTEGRATION_NAMESPACE = "fleetpulse/{tenant}/"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_GROUP = re.compile(r"^[^/+#]+$")


def publish_topic_problem(topic: str) -> str | None:
    """Why ``topic`` is no MQTT PUBLISH topic name (MQTT 5.0 section 4.7), or None: not empty,
    at most 65535 bytes of UTF-8, no wildcards (+ #), no leading $ (broker topics), and no NUL
    or other control characters (a broker disconnects a client that sends them)."""
    if not topic:
        return "must not be empty"
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8"
    if size > MAX_TOPIC_BYTES:
        return f"must be at most {MAX_TOPIC_BYTES} bytes of UTF-8"
    if "+" in topic or "#" in topic:
        return "must not contain the wildcards + or #"
    if topic.startswith("$"):
        return "must not start with $ (reserved for the broker)"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in topic):
        return "must not contain NUL or control characters"
    return None


def integration_namespace(tenant_id: str) -> str:
    """The topic prefix under which a tenant's MQTT integrations publish (``fleetpulse/{t}/``);
    the delivery worker's broker user may publish only under ``fleetpulse/#``."""
    return INTEGRATION_NAMESPACE.format(tenant=tenant_id)


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where and how to connect; ``password`` is a ``SecretStr`` and never printed."""

    host: str
    port: int
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def parse(cls, url: str | SecretStr) -> MqttEndpoint:
        """Read ``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://...``; ``ValueError`` if malformed."""
        raw = url.get_secret_value() if isinstance(url, SecretStr) else url
        parts = urlsplit(raw)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError("must be an mqtt:// or mqtts:// URL")
        if not parts.hostname:
            raise ValueError("has no host")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ValueError("has an invalid port") from None
        password = SecretStr(unquote(parts.password)) if parts.password is not None else None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=password,
            tls=parts.scheme == "mqtts",
        )

    @property
    def password_value(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The default verifying TLS context for ``mqtts``, ``None`` for plain ``mqtt``."""
        return ssl.create_default_context() if self.tls else None

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def shared_subscription(group: str, topic_filter: str) -> str:
    """``$share/{group}/{filter}``: the broker gives each message to one member of ``group``."""
    if not _GROUP.match(group):
        raise ValueError(f"invalid share group {group!r}: no '/', '+' or '#'")
    if not topic_filter or topic_filter.startswith("$share/"):
        raise ValueError(f"invalid topic filter {topic_filter!r}")
    return f"$share/{group}/{topic_filter}"


def aiomqtt_client(
    endpoint: MqttEndpoint,
    *,
    identifier: str | None = None,
    clean_session: bool | None = None,
    **options: Any,
) -> aiomqtt.Client:
    """An aiomqtt client for ``endpoint`` (use ``async with``); ``options`` go to ``aiomqtt.Client``."""
    return aiomqtt.Client(
        endpoint.host,
        endpoint.port,
        username=endpoint.username,
        password=endpoint.password_value,
        identifier=identifier,
        clean_session=clean_session,
        tls_context=endpoint.ssl_context(),
        **options,
    )


@dataclass(slots=True)
class Backoff:
    """Exponential backoff, half fixed and half random (``fleetpulse.common.retry.equal_jitter``):
    ``next()`` -> a delay in ``[c/2, c]`` with ``c = min(maximum, initial * factor**n)``."""

    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0
    attempt: int = 0

    def next(self) -> float:
        self.attempt += 1
        return equal_jitter(self.initial, self.maximum, self.factor).delay(self.attempt)

    def reset(self) -> None:
        self.attempt = 0


async def run_with_reconnect(
    connect: Callable[[], aiomqtt.Client],
    session: Callable[[aiomqtt.Client], Awaitable[None]],
    *,
    stop: asyncio.Event,
    backoff: Backoff | None = None,
) -> None:
    """Run ``session(client)`` on a fresh connection until it returns or ``stop`` is set.

    A lost or refused connection (``aiomqtt.MqttError``) is retried after a backoff delay, reset
    once a connection succeeds. ``connect`` builds a new client per attempt (aiomqtt clients
    are not reusable after a failure), e.g. ``lambda: aiomqtt_client(endpoint)``.
    """
    backoff = backoff or Backoff()
    while not stop.is_set():
        try:
            async with connect() as client:
                backoff.reset()
                await _until_stopped(session(client), stop)
                return
        except aiomqtt.MqttError as exc:
            delay = backoff.next()
            log.warning(
                "mqtt connection lost; retrying", extra={"error": str(exc), "delay_s": delay}
            )
            await sleep_until_stopped(stop, delay)


async def _until_stopped(work: Awaitable[None], stop: asyncio.Event) -> None:
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if not task.cancelled():
        task.result()
