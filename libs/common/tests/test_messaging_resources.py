"""Queue/topic declaration, platform wiring with filter policies, and the event envelope."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

import fleetpulse.common.messaging as messaging
from fleetpulse.common.eventstore import RecordedEvent
from fleetpulse.common.messaging import (
    QUEUES,
    ResourceNotFoundError,
    SnsMessage,
    SnsPublisher,
    declare_platform,
    declare_platform_queue,
    declare_queue,
    declare_topic,
    event_to_message,
    guard_publishes,
    message_to_event,
    platform_resources,
    queue_names,
    queue_ref,
    subscribe_queue,
    topic_arn,
)
from fleetpulse.testing.moto import receive_all


def test_public_api_is_explicit() -> None:
    assert sorted(messaging.__all__) == sorted(set(messaging.__all__))
    assert all(hasattr(messaging, name) for name in messaging.__all__)


def test_queue_names_follow_the_prefix() -> None:
    names = queue_names("fp-")
    assert (
        names.ingest,
        names.evaluator,
        names.dispatcher,
        names.deliveries,
        names.domain_events,
    ) == ("fp-ingest", "fp-evaluator", "fp-dispatcher", "fp-deliveries", "fp-domain-events")


async def test_declare_queue_creates_a_dlq_with_redrive_and_is_idempotent(
    sqs_client: Any, queue_prefix: str
) -> None:
    first = await declare_queue(
        sqs_client, queue_prefix + "work", max_receive_count=3, visibility_timeout_s=7
    )
    again = await declare_queue(
        sqs_client, queue_prefix + "work", max_receive_count=4, visibility_timeout_s=9
    )
    assert again == first
    attributes = (
        await sqs_client.get_queue_attributes(QueueUrl=first.url, AttributeNames=["All"])
    )["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(f":{queue_prefix}work-dlq")
    assert int(redrive["maxReceiveCount"]) == 4
    assert attributes["VisibilityTimeout"] == "9"
    assert await queue_ref(sqs_client, queue_prefix + "work") == first


async def test_lookups_of_missing_resources_fail_clearly(
    sqs_client: Any, sns_client: Any, queue_prefix: str
) -> None:
    with pytest.raises(ResourceNotFoundError, match=f"{queue_prefix}missing"):
        await queue_ref(sqs_client, queue_prefix + "missing")
    with pytest.raises(ResourceNotFoundError, match="AUTO_CREATE"):
        await topic_arn(sns_client, queue_prefix + "missing")
    with pytest.raises(ResourceNotFoundError):
        await platform_resources(sqs_client, sns_client, queue_prefix)


def _event(type_: str, tenant: str = "t1", **metadata: Any) -> RecordedEvent:
    return RecordedEvent(
        position=7,
        event_id=uuid.uuid4(),
        stream_id=f"alert-{tenant}-a1",
        version=1,
        type=type_,
        tenant_id=tenant,
        data={"alert_id": "a1", "value": 1.5},
        metadata=dict(metadata),
        recorded_at=datetime(2026, 11, 22, 4, 0, tzinfo=UTC),
    )


async def test_platform_routes_events_by_type(
    sqs_client: Any, sns_client: Any, queue_prefix: str
) -> None:
    platform = await declare_platform(sqs_client, sns_client, queue_prefix)
    assert await declare_platform(sqs_client, sns_client, queue_prefix) == platform  # idempotent
    assert await platform_resources(sqs_client, sns_client, queue_prefix) == platform
    events = [
        _event("AlertOpened"),
        _event("AlertResolved"),
        _event("DeliveryScheduled"),
        _event("DeliveryAttempted"),
        _event("RuleCreated"),
    ]
    await SnsPublisher(sns_client, platform.domain_events_arn).publish_batch(
        [SnsMessage(*event_to_message(e)) for e in events]
    )
    dispatcher = await receive_all(sqs_client, platform.dispatcher.url, quiet_s=0.7)
    deliveries = await receive_all(sqs_client, platform.deliveries.url, quiet_s=0.3)
    assert sorted(message_to_event(m["Body"]).type for m in dispatcher) == [
        "AlertOpened",
        "AlertResolved",
    ]
    assert [message_to_event(m["Body"]).type for m in deliveries] == ["DeliveryScheduled"]
    assert await receive_all(sqs_client, platform.evaluator.url, quiet_s=0.2) == []


async def _restart_empty(sqs: Any, sns: Any, prefix: str, arn: str) -> None:
    """What a restarted emulator holds: nothing of the platform."""
    for name in [*QUEUES, *(f"{key}-dlq" for key in QUEUES)]:
        url = (await sqs.get_queue_url(QueueName=prefix + name))["QueueUrl"]
        await sqs.delete_queue(QueueUrl=url)
    await sns.delete_topic(TopicArn=arn)


async def test_a_guarded_publish_waits_for_the_topic_to_have_its_subscriptions(
    sqs_client: Any, sns_client: Any, queue_prefix: str
) -> None:
    """The emulator restarted empty and a consumer declaring the platform again has made the
    queues and the topic, not yet the subscriptions: a plain publish is accepted and lost, a
    guarded one declares the subscriptions first and reaches the queues."""
    platform = await declare_platform(sqs_client, sns_client, queue_prefix)
    arn = platform.domain_events_arn
    await _restart_empty(sqs_client, sns_client, queue_prefix, arn)
    for key in QUEUES:
        await declare_platform_queue(sqs_client, queue_prefix, key)
    assert await declare_topic(sns_client, queue_prefix + "domain-events") == arn
    opened = [SnsMessage(*event_to_message(_event("AlertOpened")))]

    await SnsPublisher(sns_client, arn).publish_batch(opened)
    assert await receive_all(sqs_client, platform.dispatcher.url, quiet_s=0.5) == []

    guard = guard_publishes(sqs_client, sns_client, queue_prefix, arn, auto_create=True)
    guarded = SnsPublisher(sns_client, arn, before_publish=guard)
    await guarded.publish_batch(opened)
    received = await receive_all(sqs_client, platform.dispatcher.url, expected=1)
    assert [message_to_event(m["Body"]).type for m in received] == ["AlertOpened"]

    await _restart_empty(sqs_client, sns_client, queue_prefix, arn)  # topic gone too
    scheduled = [SnsMessage(*event_to_message(_event("DeliveryScheduled")))]
    await guarded.publish_batch(scheduled)
    received = await receive_all(sqs_client, platform.deliveries.url, expected=1)
    assert [message_to_event(m["Body"]).type for m in received] == ["DeliveryScheduled"]
    assert guard_publishes(sqs_client, sns_client, queue_prefix, arn, auto_create=False) is None


async def test_resubscribing_updates_the_filter_policy(
    sqs_client: Any, sns_client: Any, queue_prefix: str
) -> None:
    topic = await declare_topic(sns_client, queue_prefix + "topic")
    queue = await declare_queue(sqs_client, queue_prefix + "q", dlq=False)
    first = await subscribe_queue(sns_client, sqs_client, topic, queue, {"type": ["A"]})
    second = await subscribe_queue(sns_client, sqs_client, topic, queue, {"type": ["B"]})
    assert first == second
    publisher = SnsPublisher(sns_client, topic)
    await publisher.publish_batch([SnsMessage("a", {"type": "A"}), SnsMessage("b", {"type": "B"})])
    received = await receive_all(sqs_client, queue.url, quiet_s=0.5)
    assert [m["Body"] for m in received] == ["b"]
    policy = json.loads(
        (await sqs_client.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["Policy"]))[
            "Attributes"
        ]["Policy"]
    )
    assert [s["Condition"]["ArnEquals"]["aws:SourceArn"] for s in policy["Statement"]] == [topic]


async def test_sns_publisher_sends_many_with_attributes(
    sqs_client: Any, sns_client: Any, queue_prefix: str
) -> None:
    topic = await declare_topic(sns_client, queue_prefix + "topic")
    queue = await declare_queue(sqs_client, queue_prefix + "q", dlq=False)
    await subscribe_queue(sns_client, sqs_client, topic, queue)
    await SnsPublisher(sns_client, topic).publish_batch(
        [SnsMessage(f"m{i}", {"type": "T", "n": str(i)}) for i in range(35)]
    )
    received = await receive_all(sqs_client, queue.url, expected=35)
    assert sorted(m["Body"] for m in received) == sorted(f"m{i}" for i in range(35))
    assert all(m["MessageAttributes"]["type"]["StringValue"] == "T" for m in received)


def test_envelope_round_trips_and_carries_routing_attributes() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = _event("AlertOpened", tenant="acme", traceparent=traceparent, actor="evaluator")
    body, attributes = event_to_message(event)
    assert attributes == {"type": "AlertOpened", "tenant_id": "acme", "traceparent": traceparent}
    assert message_to_event(body) == event
    assert "traceparent" not in event_to_message(_event("X"))[1]
    with pytest.raises(ValueError, match="not an event envelope"):
        message_to_event('{"type": "X"}')
