"""SQS source: the ``{prefix}ingest`` queue fed by an AWS IoT topic rule; same pipeline as MQTT.

Bodies accepted (``infra/terraform/iot.tf`` sends the first):

- ``{"topic": "tenant/t/device/d/telemetry", "payload_b64": "<base64>", "received_at_ms": 1700000000000}``
  (rule SQL ``SELECT topic() AS topic, encode(*, 'base64') AS payload_b64, timestamp() AS
  received_at_ms``). ``received_at_ms`` (the broker's receive time) is used as the receive time,
  so a reading without ``ts`` keeps the same row key when SQS redelivers it.
- ``{"topic": ..., "payload": <base64 string | inline JSON value>}`` (older rule form).

A body that is none of those (not JSON, no topic, bad base64, ...) is quarantined as
``BAD_JSON`` under topic ``sqs:{queue name}`` with the reason in ``detail``. Messages are deleted
only after their batch committed: the source is a handler on the shared
:class:`~fleetpulse.common.messaging.SqsConsumer` (visibility extension, missing-queue recovery,
backoff), and its handler returns, so the consumer deletes the message, only once the pipeline
acknowledged it through :meth:`SqsSource._acknowledge`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from fleetpulse.common.messaging import SqsMessage
from fleetpulse.ingest.batch import Envelope
from fleetpulse.ingest.pipeline import Pipeline, now_us


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """What an IoT rule message carries; ``defect`` says why it could not be unwrapped."""

    topic: str | None
    payload: bytes
    received_us: int | None = None
    defect: str | None = None


def _bad(body: str, defect: str) -> Unwrapped:
    return Unwrapped(None, body.encode("utf-8", "replace"), None, defect)


def unwrap(body: str) -> Unwrapped:
    """Topic, payload bytes and receive time of an IoT rule message (pure)."""
    try:
        wrapper = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _bad(body, f"sqs body is not JSON: {exc}")
    if not isinstance(wrapper, dict) or not isinstance(wrapper.get("topic"), str):
        return _bad(body, "sqs body has no string 'topic'")
    topic = wrapper["topic"]
    received_us = _received_us(wrapper.get("received_at_ms"))
    if "payload_b64" in wrapper:
        encoded = wrapper["payload_b64"]
        if not isinstance(encoded, str):
            return _bad(body, "'payload_b64' is not a string")
        try:
            return Unwrapped(topic, base64.b64decode(encoded, validate=True), received_us)
        except binascii.Error:
            return _bad(body, "'payload_b64' is not valid base64")
    if "payload" not in wrapper:
        return _bad(body, "sqs body has neither 'payload_b64' nor 'payload'")
    payload = wrapper["payload"]
    if isinstance(payload, str):
        try:
            return Unwrapped(topic, base64.b64decode(payload, validate=True), received_us)
        except binascii.Error:
            return Unwrapped(topic, payload.encode(), received_us)
    return Unwrapped(topic, orjson.dumps(payload), received_us)


def _received_us(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value * 1000
    return None


class SqsSource:
    """The ``{prefix}ingest`` entrypoint: unwrap, submit to the pipeline, wait for the commit.

    Parameters:
        pipeline: where envelopes go; the source registers as ``"sqs"`` with it.
        queue_name: names the quarantine topic of bodies that are not IoT rule messages.
        window: most messages unacknowledged at a time (the consumer's concurrency).
    """

    def __init__(self, pipeline: Pipeline, queue_name: str, *, window: int) -> None:
        self._pipeline = pipeline
        self._bad_topic = f"sqs:{queue_name}"
        self._committed: dict[str, asyncio.Future[None]] = {}
        pipeline.register_source("sqs", self._acknowledge, window=window)

    async def handle(self, message: SqsMessage) -> None:
        """Returns once the batch holding ``message`` committed (never before: no ack)."""
        committed = asyncio.get_running_loop().create_future()
        self._committed[message.receipt_handle] = committed
        try:
            await self._pipeline.submit(self._envelope(message))
            await committed
        finally:
            self._committed.pop(message.receipt_handle, None)

    def _envelope(self, message: SqsMessage) -> Envelope:
        m = unwrap(message.body)
        return Envelope(
            "sqs",
            m.topic if m.topic is not None else self._bad_topic,
            m.payload,
            m.received_us or now_us(),
            message.receipt_handle,
            m.defect,
        )

    async def _acknowledge(self, handles: list[Any]) -> None:
        for handle in handles:
            committed = self._committed.get(handle)
            if committed is not None and not committed.done():
                committed.set_result(None)
