"""SQS source: the ``{prefix}ingest`` queue fed by an AWS IoT topic rule.

Body: ``{"topic": "tenant/t/device/d/telemetry", "payload": <base64 string>}`` (rule SQL
``SELECT encode(*, 'base64') AS payload, topic() AS topic FROM 'tenant/+/device/+/+'``), or
``"payload"`` as inline JSON. A body that is not one of those is quarantined as ``BAD_JSON``
under topic ``sqs:{queue}``. Messages are deleted only after their batch committed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any

import orjson

from fleetpulse.ingest.batch import Envelope
from fleetpulse.ingest.pipeline import Pipeline, now_us

log = logging.getLogger(__name__)


def unwrap(body: str) -> tuple[str, bytes]:
    """(topic, payload) of an IoT rule message; an unparseable body yields an invalid topic."""
    try:
        wrapper = orjson.loads(body)
        topic, payload = wrapper["topic"], wrapper["payload"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "sqs:unparseable", body.encode("utf-8", "replace")
    if isinstance(payload, str):
        try:
            return str(topic), base64.b64decode(payload, validate=True)
        except binascii.Error:
            return str(topic), payload.encode()
    return str(topic), orjson.dumps(payload)


class SqsSource:
    def __init__(self, sqs: Any, queue_url: str, pipeline: Pipeline, *, wait_s: int = 10) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
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
                topic, payload = unwrap(message["Body"])
                await self._pipeline.submit(
                    Envelope("sqs", topic, payload, now_us(), message["ReceiptHandle"])
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
