"""SQS: a consumer with bounded concurrency and at-least-once semantics, and a publisher that
packs many records into few messages.

:class:`SqsConsumer` deletes a message only after its handler returned. A handler that raises
leaves the message to reappear when its visibility expires (after the queue's
``maxReceiveCount`` SQS moves it to the DLQ); raising :class:`RetryLater` instead asks for the
message again after a chosen delay. Handlers must be idempotent: SQS delivers at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from fleetpulse.common.errors import ExternalError
from fleetpulse.common.messaging._batching import backoff_s, chunk, send_with_retry
from fleetpulse.common.messaging.errors import AWS_ERRORS, aws_errors, queue_missing
from fleetpulse.common.messaging.packing import pack_records
from fleetpulse.common.observability import extract_context, inject_context, meter, tracer
from fleetpulse.common.runtime import sleep_until_stopped

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import (
        BatchResultErrorEntryTypeDef,
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
        MessageAttributeValueOutputTypeDef,
        MessageAttributeValueTypeDef,
        MessageTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

MAX_VISIBILITY_S = 43_200

log = logging.getLogger(__name__)
_messages_counter = meter("fleetpulse.messaging").create_counter(
    "fleetpulse.sqs.messages", description="SQS messages handled, by queue consumer and outcome"
)


class RetryLater(Exception):  # noqa: N818 - a request to the consumer, not an error
    """Raise from a handler to receive the message again after ``delay_s`` (backoff)."""

    def __init__(self, delay_s: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay_s}s")
        self.delay_s = delay_s


@dataclass(frozen=True, slots=True)
class SqsMessage:
    """One received message. ``attributes`` are its String/Number message attributes."""

    id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]
    receive_count: int
    sent_at: datetime | None

    @classmethod
    def from_response(cls, raw: MessageTypeDef) -> SqsMessage:
        system = raw.get("Attributes", {})
        sent_ms = system.get("SentTimestamp")
        return cls(
            id=raw.get("MessageId", ""),
            receipt_handle=raw.get("ReceiptHandle", ""),
            body=raw.get("Body", ""),
            attributes=_string_attributes(raw.get("MessageAttributes", {})),
            receive_count=int(system.get("ApproximateReceiveCount", "1")),
            sent_at=datetime.fromtimestamp(int(sent_ms) / 1000, UTC) if sent_ms else None,
        )


def _string_attributes(raw: Mapping[str, MessageAttributeValueOutputTypeDef]) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in raw.items() if "StringValue" in value}


MessageHandler = Callable[[SqsMessage], Awaitable[None]]


@dataclass(slots=True)
class _InFlight:
    message: SqsMessage
    extended_at: float = field(default_factory=time.monotonic)


class SqsConsumer:
    """Long-polls ``queue_url`` and runs ``handler`` on each message, at most ``concurrency`` at
    a time, until :meth:`run`'s ``stop`` event is set.

    Parameters:
        sqs: an aiobotocore SQS client (``aws_client("sqs", cfg)``), owned by the caller.
        queue_url: the queue to consume.
        handler: ``async (SqsMessage) -> None``; returning acknowledges (deletes) the message,
            raising leaves it for redelivery, raising :class:`RetryLater` delays it.
        concurrency: most handlers running at once; no message is received beyond that.
        batch_size: most messages per ReceiveMessage call (1-10).
        wait_time_s: long-poll wait (0-20 s).
        visibility_timeout_s: how long a received message stays hidden; extended while its
            handler runs, so it only matters when this process dies.
        extend_every_s: how often a running handler's message is extended (default a third of
            the visibility timeout).
        shutdown_timeout_s: on stop, how long in-flight handlers may take before being cancelled
            (their messages are released for another consumer).
        name: names the consumer in logs, spans and metrics.
        on_missing_queue: awaited when the queue turns out not to exist (an emulator that
            restarted empty), to declare it again; with ``AUTO_CREATE`` only. Without it the
            consumer keeps backing off until the queue is back.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        handler: MessageHandler,
        *,
        concurrency: int = 10,
        batch_size: int = 10,
        wait_time_s: int = 20,
        visibility_timeout_s: int = 30,
        extend_every_s: float | None = None,
        shutdown_timeout_s: float = 20.0,
        name: str = "sqs-consumer",
        on_missing_queue: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        if concurrency < 1 or not 1 <= batch_size <= 10 or visibility_timeout_s < 1:
            raise ValueError("concurrency >= 1, 1 <= batch_size <= 10, visibility_timeout_s >= 1")
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self._concurrency = concurrency
        self._batch_size = batch_size
        self._wait_time_s = wait_time_s
        self._visibility_timeout_s = visibility_timeout_s
        self._extend_every_s = extend_every_s or visibility_timeout_s / 3
        self._shutdown_timeout_s = shutdown_timeout_s
        self._name = name
        self._on_missing_queue = on_missing_queue
        self._in_flight: dict[asyncio.Task[None], _InFlight] = {}
        self._deleter = _BatchDeleter(sqs, queue_url, name)
        self._tracer = tracer("fleetpulse.messaging.sqs")

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish in-flight handlers and return."""
        extender = asyncio.create_task(self._extend_forever())
        try:
            await self._receive_until(stop)
            await self._drain()
        finally:
            leftovers = [extender, *self._in_flight]  # non-empty only when run() was cancelled
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
            await self._deleter.close()

    async def _receive_until(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            free = self._concurrency - len(self._in_flight)
            if free <= 0:
                await _first_of(stop, *self._in_flight)
                continue
            try:
                with aws_errors:
                    messages = await self._receive(min(free, self._batch_size), stop)
            except ExternalError as exc:
                failures += 1
                log.warning(
                    "receive failed; backing off",
                    extra={
                        "consumer": self._name,
                        "error": type(exc.__cause__ or exc).__name__,
                        "attempt": failures,
                    },
                )
                if queue_missing(exc):
                    await self._declare_queue_again()
                await sleep_until_stopped(stop, backoff_s(failures, 0.5, 20.0))
                continue
            failures = 0
            for message in messages:
                self._start(message)

    async def _declare_queue_again(self) -> None:
        if self._on_missing_queue is None:
            return
        log.warning("queue missing; declaring it again", extra={"consumer": self._name})
        try:
            await self._on_missing_queue()
        except AWS_ERRORS as exc:
            log.warning(
                "declaring the queue failed", extra={"consumer": self._name, "error": str(exc)}
            )

    async def _receive(self, count: int, stop: asyncio.Event) -> list[SqsMessage]:
        """Up to ``count`` messages; [] when ``stop`` is set while waiting."""
        receive = asyncio.ensure_future(
            self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self._wait_time_s,
                VisibilityTimeout=self._visibility_timeout_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                MessageAttributeNames=["All"],
            )
        )
        await _first_of(stop, receive)
        if not receive.done():
            # Messages this call may already hold reappear after their visibility timeout.
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receive
            return []
        return [SqsMessage.from_response(raw) for raw in receive.result().get("Messages", [])]

    def _start(self, message: SqsMessage) -> None:
        task = asyncio.create_task(self._handle(message), name=f"{self._name}:{message.id}")
        self._in_flight[task] = _InFlight(message)
        task.add_done_callback(self._in_flight.pop)

    async def _handle(self, message: SqsMessage) -> None:
        context = extract_context(message.attributes)
        with self._tracer.start_as_current_span(
            f"{self._name} process",
            context=context,
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "aws_sqs", "messaging.message.id": message.id},
        ):
            outcome = await self._outcome(message)
        _messages_counter.add(1, {"consumer": self._name, "outcome": outcome})

    async def _outcome(self, message: SqsMessage) -> str:
        try:
            await self._handler(message)
        except RetryLater as retry:
            await self._set_visibility([message], retry.delay_s)
            return "retry_later"
        except Exception:
            log.exception(
                "handler failed; message left for redelivery",
                extra={
                    "consumer": self._name,
                    "message_id": message.id,
                    "receive_count": message.receive_count,
                },
            )
            return "failed"
        self._deleter.add(message.receipt_handle)
        return "handled"

    async def _extend_forever(self) -> None:
        """Keep the messages of running handlers hidden, so slow work is not handed out twice."""
        while True:
            await asyncio.sleep(self._extend_every_s / 2)
            now = time.monotonic()
            due = [
                entry
                for entry in self._in_flight.values()
                if now - entry.extended_at >= self._extend_every_s / 2
            ]
            if due:
                await self._set_visibility(
                    [entry.message for entry in due], self._visibility_timeout_s
                )
                for entry in due:
                    entry.extended_at = now

    async def _set_visibility(self, messages: Sequence[SqsMessage], timeout_s: float) -> None:
        seconds = max(0, min(MAX_VISIBILITY_S, round(timeout_s)))
        for start in range(0, len(messages), 10):
            entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds}
                for i, m in enumerate(messages[start : start + 10])
            ]
            try:
                response = await self._sqs.change_message_visibility_batch(
                    QueueUrl=self._queue_url, Entries=entries
                )
            except AWS_ERRORS as exc:
                log.warning(
                    "cannot change visibility",
                    extra={"consumer": self._name, "error": type(exc).__name__},
                )
                continue
            _log_failed(response.get("Failed", []), "change visibility", self._name)

    async def _drain(self) -> None:
        """Let in-flight handlers finish up to the deadline; cancel and release the rest."""
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(set(self._in_flight), timeout=self._shutdown_timeout_s)
        if not pending:
            return
        unfinished = [self._in_flight[task].message for task in pending if task in self._in_flight]
        log.warning(
            "cancelling handlers at shutdown", extra={"consumer": self._name, "count": len(pending)}
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._set_visibility(unfinished, 0)


class _BatchDeleter:
    """Deletes acknowledged messages in batches of up to 10, a few milliseconds after the ack."""

    def __init__(self, sqs: SQSClient, queue_url: str, name: str, linger_s: float = 0.02) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._name = name
        self._linger_s = linger_s
        self._pending: list[str] = []
        self._flusher: asyncio.Task[None] | None = None

    def add(self, receipt_handle: str) -> None:
        self._pending.append(receipt_handle)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self._linger_s)
        await self.flush()

    async def close(self) -> None:
        """Delete everything acknowledged so far."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()

    async def flush(self) -> None:
        while self._pending:
            handles, self._pending = self._pending[:10], self._pending[10:]
            await self._delete(handles)

    async def _delete(self, handles: list[str]) -> None:
        entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(handles)
        ]
        try:
            response = await self._sqs.delete_message_batch(
                QueueUrl=self._queue_url, Entries=entries
            )
        except AWS_ERRORS as exc:
            # The messages come back after their visibility timeout; handlers are idempotent.
            log.warning(
                "delete failed; messages will be redelivered",
                extra={"consumer": self._name, "error": type(exc).__name__, "count": len(handles)},
            )
            return
        _log_failed(response.get("Failed", []), "delete", self._name)


def _log_failed(failed: Sequence[BatchResultErrorEntryTypeDef], action: str, name: str) -> None:
    if failed:
        log.warning(
            f"{action} failed for some messages",
            extra={"consumer": name, "count": len(failed), "code": failed[0].get("Code")},
        )


async def _first_of(stop: asyncio.Event, *awaitables: asyncio.Future[Any]) -> None:
    """Wait until ``stop`` is set or one of ``awaitables`` is done."""
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({stopped, *awaitables}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()


class SqsBatchPublisher:
    """Sends many small records as few packed messages (:mod:`~.packing`: gzip by default).

    Parameters:
        sqs: an aiobotocore SQS client, owned by the caller.
        queue_url: the destination queue.
        max_message_bytes: upper bound of one message (body plus attributes); SQS allows 256 KiB.
        max_attempts: tries per batch before :meth:`publish` gives up with ``PublishError``.
        gzip: send the compressed form (``False``: plain JSON bodies).
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        *,
        max_message_bytes: int = 240_000,
        max_attempts: int = 5,
        gzip: bool = True,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._max_message_bytes = max_message_bytes
        self._max_attempts = max_attempts
        self._gzip = gzip

    async def publish(
        self, records: Sequence[Mapping[str, Any]], attributes: Mapping[str, str] | None = None
    ) -> int:
        """Send ``records``; returns how many messages that took.

        Raises ``PublishError`` if some could not be sent: do not acknowledge their source then.
        The current trace context travels as the ``traceparent`` attribute.
        """
        message_attributes = _attribute_values({**inject_context(), **(attributes or {})})
        budget = self._max_message_bytes - _attributes_size(message_attributes)
        bodies = pack_records(records, max_bytes=budget, gzip=self._gzip)
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "MessageBody": body, "MessageAttributes": message_attributes}
            for i, body in enumerate(bodies)
        ]
        batches = chunk(
            entries, lambda entry: len(entry["MessageBody"]) + _attributes_size(message_attributes)
        )
        await asyncio.gather(*(self._send(batch) for batch in batches))
        return len(bodies)

    async def _send(self, batch: list[SendMessageBatchRequestEntryTypeDef]) -> None:
        async def send(
            entries: list[SendMessageBatchRequestEntryTypeDef],
        ) -> Sequence[Mapping[str, object]]:
            response = await self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            return response.get("Failed", [])

        await send_with_retry(
            send, batch, what="SQS SendMessageBatch", max_attempts=self._max_attempts
        )


def _attribute_values(attributes: Mapping[str, str]) -> dict[str, MessageAttributeValueTypeDef]:
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in attributes.items()
        if value
    }


def _attributes_size(attributes: Mapping[str, MessageAttributeValueTypeDef]) -> int:
    return sum(
        len(name) + len("String") + len(value.get("StringValue", "").encode())
        for name, value in attributes.items()
    )
