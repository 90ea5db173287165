"""SQS source: the ``{prefix}ingest`` queue fed by an AWS IoT topic rule; same pipeline as MQTT.

Bodies accepted (``infra/terraform/iot.tf`` sends the first):

- ``{"topic": "tenant/t/device/d/telemetry", "payload_b64": "<base64>", "received_at_ms": 1700000000000}``
  (rule SQL ``SELECT topic() AS topic, encode(*, 'base64') AS payload_b64, timestamp() AS
  received_at_ms``). ``received_at_ms`` (the broker's receive time) is used as the receive time,
  so a reading without ``ts`` keeps the same row key when SQS redelivers it.
- ``{"topic": ..., "payload": <base64 string | inline JSON value>}`` (older rule form).

A body that is none of those (not JSON, no topic, bad base64, ...) is quarantined as
``BAD_JSON`` under topic ``sqs:{queue name}`` with the reason in ``detail``. Messages are deleted
only after their batch committed (the pipeline acknowledges through :meth:`SqsSource._delete`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from fleetpulse.ingest.batch import Envelope
from fleetpulse.ingest.pipeline import Pipeline, now_us

log = logging.getLogger(__name__)


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
    def __init__(self, sqs: Any, queue_url: str, pipeline: Pipeline, *, wait_s: int = 10) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._bad_topic = f"sqs:{queue_url.rstrip('/').rsplit('/', 1)[-1]}"
        self._pipeline = pipeline
        self._wait_s = wait_s
        pipeline.register_source("sqs", self._delete)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                answer = await self._sqs.receive_message(
                    QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self._wait_s
                )
            except Exception as exc:  # network / throttling: back off, nothing was taken
                log.warning("sqs receive failed", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
                continue
            for message in answer.get("Messages", []):
                await self._pipeline.submit(self._envelope(message))

    def _envelope(self, message: dict[str, Any]) -> Envelope:
        m = unwrap(message["Body"])
        return Envelope(
            "sqs",
            m.topic if m.topic is not None else self._bad_topic,
            m.payload,
            m.received_us or now_us(),
            message["ReceiptHandle"],
            m.defect,
        )

    async def _delete(self, handles: list[Any]) -> None:
        for start in range(0, len(handles), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": h}
                for i, h in enumerate(handles[start : start + 10])
            ]
            try:
                await self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
            except Exception as exc:  # not deleted: SQS redelivers, the write is idempotent
                log.warning("sqs delete failed", extra={"error": str(exc)})
