"""A lean MQTT 3.1.1 QoS 1 subscriber that acknowledges after the application's work, in bulk.

Why not zmqtt (``acking_client``)? Profiled under load in ingest (py-spy, 30k single-reading
messages), zmqtt's per-message path took about 60% of the process: a coroutine chain per
PUBLISH, subscription matching with specificity ranking per message, ``wait_for`` per
``get_message()``, and one ``transport.write`` (a ``send`` syscall) per PUBACK. A consumer with
one subscription and ack-after-commit needs none of that. This client:

- CONNECTs with ``clean_session=False`` (a persistent session: what was not acknowledged is
  redelivered when the same client id reconnects) and SUBSCRIBEs one filter at QoS 1;
- parses PUBLISH packets in ``data_received`` and hands each to ``deliver(topic, payload,
  token)`` synchronously: no task, future or queue per message;
- acknowledges with :meth:`MqttSubscriber.ack`, writing every PUBACK of a committed batch in one
  transport write. A token is ``epoch << 16 | packet_id``: tokens from a previous connection are
  ignored (the broker redelivers those messages on the new connection instead);
- applies backpressure: when ``deliver`` returns ``False`` it stops reading the socket, keeps the
  message, and continues once :meth:`MqttSubscriber.resume` is called;
- sends PINGREQ every ``keepalive / 2`` s, drops a connection silent for ``1.5 * keepalive`` s,
  and reconnects forever with jittered exponential backoff.

QoS 1 only (the subscription is QoS 1, so the broker never sends QoS 2); QoS 0 deliveries get
token ``None``.

Retained messages: a broker sends a topic's retained message with the RETAIN flag set only
because a subscription was made (MQTT 3.1.1 3.3.1.3; every reconnect re-subscribes), while a
retained message published while the subscription exists is forwarded with RETAIN 0. With
``deliver_retained`` set, deliveries flagged RETAIN go there instead of ``deliver`` (and are
acknowledged the same way), so the consumer can tell a re-sent retained message from new data.
(MQTT 5's subscription option Retain Handling = 2 would stop the broker from sending them at
all; this client speaks 3.1.1, so it tells them apart by the flag.) Proven by ``libs/common/tests/test_mqtt_ack.py`` (unacknowledged messages are
redelivered after a reconnect, acknowledged ones are not).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from fleetpulse.common.mqtt import Backoff, MqttEndpoint

__all__ = ["Deliver", "MqttSubscriber", "SubscriberError"]

log = logging.getLogger(__name__)

#: ``deliver(topic, payload, token)``; ``False`` means "full": the subscriber pauses reading and
#: offers the same message again after :meth:`MqttSubscriber.resume`.
Deliver = Callable[[str, bytes, int | None], bool]

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 0x10, 0x20, 0x30, 0x40
_SUBSCRIBE, _SUBACK, _PINGREQ, _PINGRESP, _DISCONNECT = 0x82, 0x90, 0xC0, 0xD0, 0xE0
_PUBACK_PACKET = struct.Struct(">BBH")
_U16 = struct.Struct(">H")
_PING = bytes((_PINGREQ, 0))
_LOST = -1  # what the CONNACK / SUBACK futures hold when the connection closed first
_CONNACK_ERRORS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class SubscriberError(Exception):
    """The broker refused the connection or the subscription, or broke the protocol."""


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return _U16.pack(len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _remaining_length(len(body)) + body


class _Protocol(asyncio.Protocol):
    """One connection: the MQTT state machine between the socket and :class:`MqttSubscriber`."""

    def __init__(self, owner: MqttSubscriber, epoch: int) -> None:
        self._owner = owner
        self._epoch = epoch << 16
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_received = asyncio.get_running_loop().time()
        self.held: deque[tuple[Deliver, str, bytes, int | None]] = deque()
        self.paused = False
        self._topics: dict[bytes, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.connack, self.suback):
            if not future.done():
                future.set_result(_LOST)
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        self.last_received = asyncio.get_running_loop().time()
        pos, end = 0, len(buf)
        try:
            while end - pos >= 2:
                first = buf[pos]
                length, multiplier, i = 0, 1, pos + 1
                while i < end:
                    byte = buf[i]
                    i += 1
                    length += (byte & 0x7F) * multiplier
                    if byte < 0x80:
                        break
                    multiplier *= 128
                    if multiplier > 128**3:
                        raise SubscriberError("malformed remaining length")
                else:
                    break  # the remaining length itself is incomplete
                if end - i < length:
                    break
                body_end = i + length
                if first & 0xF0 == _PUBLISH:
                    self._publish(first, buf, i, body_end)
                else:
                    self._control(first, bytes(buf[i:body_end]))
                pos = body_end
        except SubscriberError as exc:
            log.warning("mqtt protocol error; reconnecting", extra={"error": str(exc)})
            del buf[:]
            if self.transport is not None:
                self.transport.abort()
            return
        if pos:
            del buf[:pos]

    def _publish(self, first: int, buf: bytearray, i: int, end: int) -> None:
        qos = (first >> 1) & 0x03
        topic_len = (buf[i] << 8) | buf[i + 1]
        i += 2
        raw = bytes(buf[i : i + topic_len])
        topic = self._topics.get(raw)
        if topic is None:
            topic = raw.decode("utf-8", "replace")
            if len(self._topics) < 100_000:
                self._topics[raw] = topic
        i += topic_len
        token: int | None = None
        if qos:
            if qos != 1:
                raise SubscriberError("QoS 2 delivery on a QoS 1 subscription")
            token = self._epoch | (buf[i] << 8) | buf[i + 1]
            i += 2
        deliver = self._owner._deliver
        if first & 0x01 and self._owner._deliver_retained is not None:
            deliver = self._owner._deliver_retained
        payload = bytes(buf[i:end])
        if self.paused:
            self.held.append((deliver, topic, payload, token))
        elif not deliver(topic, payload, token):
            self.held.append((deliver, topic, payload, token))
            self.pause()

    def _control(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == _CONNACK and len(body) >= 2 and not self.connack.done():
            self.connack.set_result(body[1])
        elif kind == _SUBACK and len(body) >= 3 and not self.suback.done():
            self.suback.set_result(body[2])
        elif kind in (_PINGRESP, _PUBACK, _SUBACK & 0xF0):
            return
        else:
            raise SubscriberError(f"unexpected packet type 0x{first:02x}")

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def resume(self) -> None:
        held = self.held
        while held:
            deliver, topic, payload, token = held[0]
            if not deliver(topic, payload, token):
                return
            held.popleft()
        if self.paused:
            self.paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def ack(self, tokens: list[int]) -> int:
        epoch, pack = self._epoch, _PUBACK_PACKET.pack
        acks = [pack(_PUBACK, 2, t & 0xFFFF) for t in tokens if t & ~0xFFFF == epoch]
        if acks and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(acks))
            return len(acks)
        return 0


class MqttSubscriber:
    """Receives ``topic_filter`` at QoS 1 on a persistent session and acks on request; see module.

    ``deliver_retained`` (optional) receives the deliveries the broker flagged RETAIN (retained
    messages re-sent because of the subscription); without it they go to ``deliver`` too.
    """

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        client_id: str,
        topic_filter: str,
        deliver: Deliver,
        deliver_retained: Deliver | None = None,
        clean_session: bool = False,
        keepalive: int = 30,
        connect_timeout: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._client_id = client_id
        self._filter = topic_filter
        self._deliver = deliver
        self._deliver_retained = deliver_retained
        self._clean_session = clean_session
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._backoff = backoff or Backoff(initial=0.2, maximum=10.0)
        self._protocol: _Protocol | None = None
        self._epoch = 0
        self._stopping = False
        self.subscribed = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.subscribed.is_set()

    def ack(self, tokens: list[Any]) -> int:
        """Write the PUBACKs of ``tokens`` (from this connection) in one write; returns how many."""
        protocol = self._protocol
        if protocol is None:
            return 0
        return protocol.ack([t for t in tokens if t is not None])

    def resume(self) -> None:
        """The consumer has room again: offer held messages, then read the socket again."""
        if self._protocol is not None and not self._stopping:
            self._protocol.resume()

    def pause(self) -> None:
        """Stop delivering (e.g. while shutting down); unacked messages stay with the broker."""
        self._stopping = True
        if self._protocol is not None:
            self._protocol.pause()

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe and deliver until ``stop``; reconnect with backoff when lost.

        A refused CONNECT or SUBSCRIBE (bad credentials, not authorised) raises
        :class:`SubscriberError` after the first attempt fails that way only if it never
        connected before; afterwards everything is retried.
        """
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    protocol = await self._connect()
                except (OSError, ConnectionError, TimeoutError, SubscriberError) as exc:
                    self.subscribed.clear()
                    if isinstance(exc, SubscriberError) and self._epoch == 1:
                        raise
                    await self._wait_backoff(stop, exc)
                    continue
                self._backoff.reset()
                pinger = asyncio.create_task(self._ping(protocol))
                try:
                    waiting: set[asyncio.Future[Any]] = {protocol.lost, stopped}
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    pinger.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pinger
                if not stop.is_set():
                    self.subscribed.clear()
                    await self._wait_backoff(stop, ConnectionError("connection lost"))
        finally:
            stopped.cancel()

    async def disconnect(self) -> None:
        """Send DISCONNECT (the persistent session stays with the broker) and close."""
        self._stopping = True
        protocol, self._protocol = self._protocol, None
        self.subscribed.clear()
        if protocol is None or protocol.transport is None:
            return
        if not protocol.transport.is_closing():
            protocol.transport.write(bytes((_DISCONNECT, 0)))
            protocol.transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(protocol.lost), 5)

    async def _wait_backoff(self, stop: asyncio.Event, exc: BaseException) -> None:
        delay = self._backoff.next()
        log.warning(
            "mqtt subscriber connection failed; retrying",
            extra={"client_id": self._client_id, "error": repr(exc), "delay_s": delay},
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

    async def _connect(self) -> _Protocol:
        protocol, transport = await self._open()
        try:
            await self._handshake(protocol, transport)
            await self._subscribe(protocol, transport)
        except BaseException:
            transport.abort()
            raise
        self.subscribed.set()
        return protocol

    async def _open(self) -> tuple[_Protocol, asyncio.Transport]:
        loop = asyncio.get_running_loop()
        self._epoch = (self._epoch + 1) & 0xFFFF or 1
        epoch = self._epoch
        ssl_context = self._endpoint.ssl_context()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Protocol(self, epoch),
                self._endpoint.host,
                self._endpoint.port,
                ssl=ssl_context,
                server_hostname=self._endpoint.host if ssl_context else None,
            ),
            self._connect_timeout,
        )
        assert protocol.transport is not None
        return protocol, protocol.transport

    async def _handshake(self, protocol: _Protocol, transport: asyncio.Transport) -> None:
        transport.write(self._connect_packet())
        code = await asyncio.wait_for(asyncio.shield(protocol.connack), self._connect_timeout)
        if code == _LOST:
            raise ConnectionError("connection closed before CONNACK")
        if code:
            raise SubscriberError(f"CONNACK refused: {_CONNACK_ERRORS.get(code, f'code {code}')}")
        # the broker may redeliver the session's unacknowledged messages right after
        # CONNACK: their tokens are this connection's, so acks go here from now on
        self._protocol = protocol
        if self._stopping:
            protocol.pause()

    async def _subscribe(self, protocol: _Protocol, transport: asyncio.Transport) -> None:
        body = _U16.pack(1) + _string(self._filter) + b"\x01"
        transport.write(_packet(_SUBSCRIBE, body))
        granted = await asyncio.wait_for(asyncio.shield(protocol.suback), self._connect_timeout)
        if granted == _LOST:
            raise ConnectionError("connection closed before SUBACK")
        if granted == 0x80:
            raise SubscriberError(f"SUBSCRIBE {self._filter!r} refused by the broker")

    def _connect_packet(self) -> bytes:
        flags = 0x00 if not self._clean_session else 0x02
        payload = _string(self._client_id)
        if self._endpoint.username is not None:
            flags |= 0x80
            payload += _string(self._endpoint.username)
            password = self._endpoint.password_value
            if password is not None:
                flags |= 0x40
                payload += _string(password)
        variable = _string("MQTT") + bytes((4, flags)) + _U16.pack(self._keepalive)
        return _packet(_CONNECT, variable + payload)

    async def _ping(self, protocol: _Protocol) -> None:
        loop = asyncio.get_running_loop()
        interval = max(self._keepalive / 2, 0.5)
        while protocol.transport is not None and not protocol.transport.is_closing():
            await asyncio.sleep(interval)
            if protocol.transport.is_closing():
                return
            if loop.time() - protocol.last_received > self._keepalive * 1.5 and not protocol.paused:
                log.warning(
                    "mqtt broker silent; reconnecting", extra={"client_id": self._client_id}
                )
                protocol.transport.abort()
                return
            protocol.transport.write(_PING)
