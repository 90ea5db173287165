"""SqsConsumer and SqsBatchPublisher against moto's real HTTP server."""

from __future__ import annotations

import asyncio
import base64
import gzip
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from fleetpulse.common.messaging import (
    MAX_UNPACKED_BYTES,
    PublishError,
    QueueRef,
    RetryLater,
    SqsBatchPublisher,
    SqsConsumer,
    SqsMessage,
    declare_queue,
    pack_records,
    unpack_records,
)
from fleetpulse.common.observability import inject_context
from fleetpulse.testing.moto import receive_all

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def _queue(sqs: Any, name: str, **options: Any) -> QueueRef:
    return await declare_queue(sqs, name, **{"dlq": False, "visibility_timeout_s": 1, **options})


async def _send(
    sqs: Any, queue: QueueRef, *bodies: str, attributes: dict[str, str] | None = None
) -> None:
    message_attributes = {
        k: {"DataType": "String", "StringValue": v} for k, v in (attributes or {}).items()
    }
    for start in range(0, len(bodies), 10):
        await sqs.send_message_batch(
            QueueUrl=queue.url,
            Entries=[
                {"Id": str(i), "MessageBody": body, "MessageAttributes": message_attributes}
                for i, body in enumerate(bodies[start : start + 10])
            ],
        )


@asynccontextmanager
async def running(consumer: SqsConsumer) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def consumer(
    sqs: Any, queue: QueueRef, handler: Callable[[SqsMessage], Awaitable[None]], **options: Any
) -> SqsConsumer:
    defaults: dict[str, Any] = {"wait_time_s": 1, "visibility_timeout_s": 1, "name": "test"}
    return SqsConsumer(sqs, queue.url, handler, **{**defaults, **options})


async def test_deletes_only_after_the_handler_succeeded(sqs_client: Any, queue_prefix: str) -> None:
    queue = await _queue(sqs_client, queue_prefix + "q")
    await _send(sqs_client, queue, "ok", "flaky")
    calls: Counter[str] = Counter()

    async def handler(message: SqsMessage) -> None:
        calls[message.body] += 1
        if message.body == "flaky" and message.receive_count == 1:
            raise RuntimeError("transient")

    async with running(consumer(sqs_client, queue, handler)):
        await until(lambda: calls["flaky"] == 2)
        await asyncio.sleep(1.5)  # longer than the visibility timeout: nothing else comes back
    assert calls == {"ok": 1, "flaky": 2}
    assert await receive_all(sqs_client, queue.url, quiet_s=1.2) == []


@pytest.mark.timeout(60)
async def test_a_queue_that_vanished_is_declared_again(sqs_client: Any, queue_prefix: str) -> None:
    """An emulator that restarts empty loses the queue; with ``on_missing_queue`` (AUTO_CREATE)
    the consumer declares it again and carries on, instead of backing off forever."""
    name = queue_prefix + "vanishing"
    queue = await _queue(sqs_client, name)
    declared = 0

    async def declare_again() -> None:
        nonlocal declared
        await _queue(sqs_client, name)
        declared += 1  # counted once the queue exists again, so "after" has a queue to go to

    seen: list[str] = []

    async def handler(message: SqsMessage) -> None:
        seen.append(message.body)

    async with running(consumer(sqs_client, queue, handler, on_missing_queue=declare_again)):
        await _send(sqs_client, queue, "before")
        await until(lambda: seen == ["before"])
        await sqs_client.delete_queue(QueueUrl=queue.url)
        await until(lambda: declared >= 1, timeout_s=20)
        await _send(sqs_client, queue, "after")
        await until(lambda: seen == ["before", "after"], timeout_s=20)


@pytest.mark.timeout(30)
async def test_always_failing_message_lands_in_the_dlq(sqs_client: Any, queue_prefix: str) -> None:
    queue = await declare_queue(
        sqs_client, queue_prefix + "q", max_receive_count=2, visibility_timeout_s=1
    )
    dlq_url = (await sqs_client.get_queue_url(QueueName=queue.name + "-dlq"))["QueueUrl"]
    await _send(sqs_client, queue, "poison")
    attempts: list[int] = []

    async def handler(message: SqsMessage) -> None:
        attempts.append(message.receive_count)
        raise ValueError("cannot handle this")

    async with running(consumer(sqs_client, queue, handler)):
        dead = await receive_all(sqs_client, dlq_url, expected=1, timeout_s=15)
    assert [m["Body"] for m in dead] == ["poison"]
    assert attempts == [1, 2]


async def test_concurrency_is_bounded(sqs_client: Any, queue_prefix: str) -> None:
    queue = await _queue(sqs_client, queue_prefix + "q", visibility_timeout_s=10)
    await _send(sqs_client, queue, *(f"m{i}" for i in range(30)))
    running_now, peak, done = 0, 0, set()

    async def handler(message: SqsMessage) -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        await asyncio.sleep(0.1)
        running_now -= 1
        done.add(message.body)

    worker = consumer(sqs_client, queue, handler, concurrency=4, visibility_timeout_s=10)
    async with running(worker):
        await until(lambda: len(done) == 30)
    assert peak == 4


async def test_slow_handler_keeps_its_message_hidden(sqs_client: Any, queue_prefix: str) -> None:
    queue = await _queue(sqs_client, queue_prefix + "q")
    await _send(sqs_client, queue, "slow")
    calls: list[int] = []

    async def handler(message: SqsMessage) -> None:
        calls.append(message.receive_count)
        await asyncio.sleep(2.5)  # 2.5x the visibility timeout

    async with running(consumer(sqs_client, queue, handler, concurrency=3)):
        await until(lambda: len(calls) == 1)
        await asyncio.sleep(3)
    assert calls == [1]
    assert await receive_all(sqs_client, queue.url, quiet_s=1.2) == []


async def test_shutdown_lets_in_flight_handlers_finish(sqs_client: Any, queue_prefix: str) -> None:
    queue = await _queue(sqs_client, queue_prefix + "q", visibility_timeout_s=5)
    await _send(sqs_client, queue, "in-flight")
    started, finished = asyncio.Event(), asyncio.Event()

    async def handler(message: SqsMessage) -> None:
        started.set()
        await asyncio.sleep(1.0)
        finished.set()

    stop = asyncio.Event()
    task = asyncio.create_task(
        consumer(sqs_client, queue, handler, visibility_timeout_s=5).run(stop)
    )
    await asyncio.wait_for(started.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert finished.is_set()
    assert await receive_all(sqs_client, queue.url, quiet_s=0.5) == []  # deleted before returning


async def test_shutdown_deadline_cancels_and_releases_the_message(
    sqs_client: Any, queue_prefix: str
) -> None:
    queue = await _queue(sqs_client, queue_prefix + "q", visibility_timeout_s=30)
    await _send(sqs_client, queue, "stuck")
    started = asyncio.Event()

    async def handler(message: SqsMessage) -> None:
        started.set()
        await asyncio.sleep(60)

    stop = asyncio.Event()
    worker = consumer(sqs_client, queue, handler, visibility_timeout_s=30, shutdown_timeout_s=0.5)
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(started.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 5)
    released = await receive_all(sqs_client, queue.url, expected=1, timeout_s=3)
    assert [m["Body"] for m in released] == ["stuck"]  # at once, not after 30 s


async def test_retry_later_delays_redelivery(sqs_client: Any, queue_prefix: str) -> None:
    queue = await _queue(sqs_client, queue_prefix + "q", visibility_timeout_s=30)
    await _send(sqs_client, queue, "later")
    seen: list[float] = []

    async def handler(message: SqsMessage) -> None:
        seen.append(time.monotonic())
        if len(seen) == 1:
            raise RetryLater(2)

    async with running(consumer(sqs_client, queue, handler, visibility_timeout_s=30)):
        await until(lambda: len(seen) == 2, timeout_s=10)
    assert 1.5 <= seen[1] - seen[0] < 8


async def test_handler_runs_in_the_senders_trace(sqs_client: Any, queue_prefix: str) -> None:
    queue = await _queue(sqs_client, queue_prefix + "q")
    await _send(sqs_client, queue, "traced", attributes={"traceparent": TRACEPARENT, "type": "X"})
    seen: list[tuple[str, dict[str, str]]] = []

    async def handler(message: SqsMessage) -> None:
        seen.append((inject_context().get("traceparent", ""), message.attributes))

    async with running(consumer(sqs_client, queue, handler)):
        await until(lambda: len(seen) == 1)
    traceparent, attributes = seen[0]
    assert traceparent.split("-")[1] == TRACEPARENT.split("-")[1]
    assert attributes == {"traceparent": TRACEPARENT, "type": "X"}


def _readings(count: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "reading",
            "tenant_id": "t1",
            "device_id": f"d-{i % 97:04d}",
            "ts": "2026-11-22T04:00:00.000Z",
            "seq": i,
            "metrics": {"temp_c": 21.5, "door_open": False},
        }
        for i in range(count)
    ]


async def test_batch_publisher_packs_thousands_of_records_into_few_messages(
    sqs_client: Any, queue_prefix: str
) -> None:
    queue = await _queue(sqs_client, queue_prefix + "q", visibility_timeout_s=30)
    records = _readings(5000)
    sent = await SqsBatchPublisher(sqs_client, queue.url).publish(records, {"source": "test"})
    assert sent <= 4
    messages = await receive_all(sqs_client, queue.url, expected=sent)
    assert len(messages) == sent
    assert all(len(m["Body"].encode()) < 240_000 for m in messages)
    assert all(m["MessageAttributes"]["source"]["StringValue"] == "test" for m in messages)
    received = [r for m in messages for r in unpack_records(m["Body"])]
    assert sorted(received, key=lambda r: r["seq"]) == records


async def test_batch_publisher_splits_into_batches_under_the_size_limit(
    sqs_client: Any, queue_prefix: str
) -> None:
    queue = await _queue(sqs_client, queue_prefix + "q", visibility_timeout_s=30)
    records = _readings(600)
    publisher = SqsBatchPublisher(sqs_client, queue.url, max_message_bytes=4000, gzip=False)
    sent = await publisher.publish(records)
    assert sent > 10  # more than one SendMessageBatch call
    messages = await receive_all(sqs_client, queue.url, expected=sent)
    assert all(len(m["Body"].encode()) <= 4000 for m in messages)
    assert (
        sorted((r for m in messages for r in unpack_records(m["Body"])), key=lambda r: r["seq"])
        == records
    )


async def test_batch_publisher_raises_when_it_cannot_send(
    sqs_client: Any, queue_prefix: str
) -> None:
    queue = await _queue(sqs_client, queue_prefix + "q")
    await sqs_client.delete_queue(QueueUrl=queue.url)
    publisher = SqsBatchPublisher(sqs_client, queue.url, max_attempts=2)
    with pytest.raises(PublishError):
        await publisher.publish(_readings(3))


def test_pack_and_unpack_round_trip() -> None:
    records = _readings(50)
    bodies = pack_records(records, max_bytes=1000)
    assert all(len(body.encode()) <= 1000 for body in bodies)
    assert all(orjson.loads(body)["v"] == 1 for body in bodies)
    assert [r for body in bodies for r in unpack_records(body)] == records
    with pytest.raises(ValueError, match="does not fit"):
        pack_records([{"blob": "x" * 2000}], max_bytes=1000)
    for bad in ("not json", '{"v": 2, "records": []}', '{"v": 1, "records": [1]}'):
        with pytest.raises(ValueError, match="packed body"):
            unpack_records(bad)


def _varied(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [
        {**record, "metrics": {"temp_c": round(rng.uniform(15, 30), 2), "door_open": i % 3 == 0}}
        for i, record in enumerate(_readings(count))
    ]


def test_gzip_bodies_round_trip_under_the_limit_and_carry_more_per_message() -> None:
    records = _varied(5000)
    plain = pack_records(records, max_bytes=20_000)
    packed = pack_records(records, max_bytes=20_000, gzip=True)
    assert all(body.startswith("H4sI") and len(body) <= 20_000 for body in packed)
    assert [r for body in packed for r in unpack_records(body)] == records
    assert [r for body in packed for r in unpack_records(body.encode())] == records
    assert len(packed) * 4 <= len(plain), (len(packed), len(plain))
    assert all(len(body) > 20_000 * 0.75 for body in packed[1:-1])  # full once the ratio is known
    (whole,) = pack_records(records, max_bytes=240_000, gzip=True)  # fits one: one body
    assert unpack_records(whole) == records

    noise = [{"blob": base64.b64encode(random.Random(i).randbytes(600)).decode()} for i in range(9)]
    mixed = pack_records(noise, max_bytes=1000, gzip=True)  # gzip does not shrink these
    assert all(len(body) <= 1000 for body in mixed)
    assert [r for body in mixed for r in unpack_records(body)] == noise


def test_gzip_bodies_that_are_broken_or_inflate_too_far_are_refused() -> None:
    body = pack_records(_varied(100), max_bytes=240_000, gzip=True)[0]
    bomb = base64.b64encode(gzip.compress(b"{" + b" " * (MAX_UNPACKED_BYTES + 1) + b"}", 9))
    cases = {
        "truncated": body[: len(body) // 2 // 4 * 4],
        "not base64": body[:-8] + "!!!!!!!!",
        "inflates beyond": bomb.decode(),
    }
    for reason, bad in cases.items():
        with pytest.raises(ValueError, match=reason.split()[0]):
            unpack_records(bad)
    assert len(unpack_records(body)) == 100  # the intact body, beside them
