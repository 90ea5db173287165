"""Queues, topics and subscriptions: declared by services when ``AUTO_CREATE`` is on (local
emulators), only looked up otherwise (Terraform owns them in AWS).

Every declaration is idempotent: calling it again with the same arguments changes nothing, and
with new arguments (a filter policy, a receive count) updates the existing resource.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from fleetpulse.common.contracts import DeliveryScheduled
from fleetpulse.common.messaging.errors import ResourceNotFoundError, error_code, queue_missing

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

log = logging.getLogger(__name__)

DLQ_SUFFIX = "-dlq"
DLQ_RETENTION_S = 14 * 24 * 3600
_QUEUE_EXISTS = frozenset({"QueueAlreadyExists", "QueueNameExists"})

#: SNS filter policies of the platform's subscribed queues (on the ``type`` attribute).
DISPATCHER_FILTER: dict[str, Any] = {"type": [{"prefix": "Alert"}]}
DELIVERIES_FILTER: dict[str, Any] = {"type": [DeliveryScheduled.TYPE]}
#: The queues subscribed to ``{prefix}domain-events`` (key without the prefix -> filter policy).
SUBSCRIPTIONS: Mapping[str, dict[str, Any]] = MappingProxyType(
    {"dispatcher": DISPATCHER_FILTER, "deliveries": DELIVERIES_FILTER}
)


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """How one platform queue is declared: its visibility timeout and, with its DLQ, how many
    receives a message gets before SQS moves it there."""

    visibility_timeout_s: int
    max_receive_count: int
    dlq: bool = True


#: The one declaration of the platform's work queues, keyed by name without the prefix. Services
#: (``AUTO_CREATE``), ``make dev`` and the tests declare from it; ``infra/terraform/main.tf``
#: (``local.queues``) holds the same values, which ``tests/test_service_shape.py`` checks.
QUEUES: Mapping[str, QueueSpec] = MappingProxyType(
    {
        "ingest": QueueSpec(visibility_timeout_s=60, max_receive_count=5),
        "evaluator": QueueSpec(visibility_timeout_s=60, max_receive_count=5),
        "dispatcher": QueueSpec(visibility_timeout_s=60, max_receive_count=5),
        "deliveries": QueueSpec(visibility_timeout_s=300, max_receive_count=10),
    }
)


@dataclass(frozen=True, slots=True)
class QueueRef:
    """An SQS queue: its name, the URL the API calls take, and the ARN policies name."""

    name: str
    url: str
    arn: str


@dataclass(frozen=True, slots=True)
class PlatformNames:
    """Names of the platform's queues and topic for one ``queue_prefix``."""

    ingest: str
    evaluator: str
    dispatcher: str
    deliveries: str
    domain_events: str


@dataclass(frozen=True, slots=True)
class PlatformResources:
    """The platform's queues and the domain-events topic ARN."""

    ingest: QueueRef
    evaluator: QueueRef
    dispatcher: QueueRef
    deliveries: QueueRef
    domain_events_arn: str


def queue_names(prefix: str) -> PlatformNames:
    """``{prefix}ingest``, ``{prefix}evaluator``, ``{prefix}dispatcher``, ``{prefix}deliveries``
    and the topic ``{prefix}domain-events``."""
    return PlatformNames(
        ingest=f"{prefix}ingest",
        evaluator=f"{prefix}evaluator",
        dispatcher=f"{prefix}dispatcher",
        deliveries=f"{prefix}deliveries",
        domain_events=f"{prefix}domain-events",
    )


async def declare_queue(
    sqs: SQSClient,
    name: str,
    *,
    dlq: bool = True,
    max_receive_count: int = 5,
    visibility_timeout_s: int = 30,
) -> QueueRef:
    """Create ``name`` (and ``{name}-dlq`` with a redrive policy after ``max_receive_count``
    receives), or bring an existing queue's attributes up to date."""
    attributes: dict[QueueAttributeNameType, str] = {"VisibilityTimeout": str(visibility_timeout_s)}
    if dlq:
        dead = await _create_or_update(
            sqs, name + DLQ_SUFFIX, {"MessageRetentionPeriod": str(DLQ_RETENTION_S)}
        )
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dead.arn, "maxReceiveCount": str(max_receive_count)}
        )
    return await _create_or_update(sqs, name, attributes)


async def _create_or_update(
    sqs: SQSClient, name: str, attributes: dict[QueueAttributeNameType, str]
) -> QueueRef:
    try:
        url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
    except ClientError as exc:
        if error_code(exc) not in _QUEUE_EXISTS:
            raise
        url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        await sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return QueueRef(name=name, url=url, arn=await _queue_arn(sqs, url))


async def queue_ref(sqs: SQSClient, name: str) -> QueueRef:
    """Look an existing queue up; raises :class:`ResourceNotFoundError` when it is missing."""
    try:
        url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
    except ClientError as exc:
        if queue_missing(exc):
            raise ResourceNotFoundError("SQS queue", name) from None
        raise
    return QueueRef(name=name, url=url, arn=await _queue_arn(sqs, url))


async def _queue_arn(sqs: SQSClient, url: str) -> str:
    response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return response["Attributes"]["QueueArn"]


async def declare_topic(sns: SNSClient, name: str) -> str:
    """Create the SNS topic ``name`` (idempotent) and return its ARN."""
    return (await sns.create_topic(Name=name))["TopicArn"]


async def topic_arn(sns: SNSClient, name: str) -> str:
    """The ARN of an existing topic; raises :class:`ResourceNotFoundError` when it is missing."""
    paginator = sns.get_paginator("list_topics")
    async for page in paginator.paginate():
        for topic in page.get("Topics", []):
            arn = topic.get("TopicArn", "")
            if arn.rsplit(":", 1)[-1] == name:
                return arn
    raise ResourceNotFoundError("SNS topic", name)


async def subscribe_queue(
    sns: SNSClient,
    sqs: SQSClient,
    topic_arn: str,
    queue: QueueRef,
    filter_policy: dict[str, Any] | None = None,
) -> str:
    """Deliver ``topic_arn`` to ``queue`` raw (message attributes become SQS attributes), only
    messages matching ``filter_policy`` (on message attributes); returns the subscription ARN."""
    await _allow_topic(sqs, queue, topic_arn)
    existing = await _subscription_of(sns, topic_arn, queue.arn)
    if existing is None:
        response = await sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue.arn,
            Attributes=_subscribe_attributes(filter_policy),
            ReturnSubscriptionArn=True,
        )
        return response["SubscriptionArn"]
    updates = {"RawMessageDelivery": "true", "FilterPolicy": json.dumps(filter_policy or {})}
    for attribute, value in updates.items():
        await sns.set_subscription_attributes(
            SubscriptionArn=existing, AttributeName=attribute, AttributeValue=value
        )
    return existing


def _subscribe_attributes(filter_policy: dict[str, Any] | None) -> dict[str, str]:
    attributes = {"RawMessageDelivery": "true"}
    if filter_policy:
        attributes["FilterPolicy"] = json.dumps(filter_policy)
    return attributes


async def _subscription_of(sns: SNSClient, topic_arn: str, queue_arn: str) -> str | None:
    return (await _queue_subscriptions(sns, topic_arn)).get(queue_arn)


async def _queue_subscriptions(sns: SNSClient, topic_arn: str) -> dict[str, str]:
    """Queue ARN -> subscription ARN of the SQS subscriptions on ``topic_arn``."""
    found: dict[str, str] = {}
    paginator = sns.get_paginator("list_subscriptions_by_topic")
    async for page in paginator.paginate(TopicArn=topic_arn):
        for subscription in page.get("Subscriptions", []):
            if subscription.get("Protocol") == "sqs":
                found[subscription.get("Endpoint", "")] = subscription.get("SubscriptionArn", "")
    return found


async def _allow_topic(sqs: SQSClient, queue: QueueRef, topic_arn: str) -> None:
    """Add a statement letting ``topic_arn`` send to ``queue``, keeping the others."""
    response = await sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["Policy"])
    policy = _policy_document(response.get("Attributes", {}).get("Policy"), queue.arn)
    sid = "sns-" + topic_arn.rsplit(":", 1)[-1]
    if any(statement.get("Sid") == sid for statement in policy["Statement"]):
        return
    policy["Statement"].append(
        {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue.arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        }
    )
    await sqs.set_queue_attributes(QueueUrl=queue.url, Attributes={"Policy": json.dumps(policy)})


def _policy_document(raw: str | None, queue_arn: str) -> dict[str, Any]:
    if raw:
        document: dict[str, Any] = json.loads(raw)
        document.setdefault("Statement", [])
        return document
    return {"Version": "2012-10-17", "Id": f"{queue_arn}/policy", "Statement": []}


async def declare_platform_queue(sqs: SQSClient, prefix: str, key: str) -> QueueRef:
    """Declare ``{prefix}{key}`` as :data:`QUEUES` says (with its DLQ and redrive policy)."""
    spec = QUEUES[key]
    return await declare_queue(
        sqs,
        f"{prefix}{key}",
        dlq=spec.dlq,
        max_receive_count=spec.max_receive_count,
        visibility_timeout_s=spec.visibility_timeout_s,
    )


async def declare_platform(sqs: SQSClient, sns: SNSClient, prefix: str) -> PlatformResources:
    """Declare every queue of :data:`QUEUES` (with its DLQ), the domain-events topic and the
    filtered subscriptions (dispatcher: ``type`` Alert*, deliveries: ``type`` DeliveryScheduled)."""
    names = queue_names(prefix)
    queues = {key: await declare_platform_queue(sqs, prefix, key) for key in QUEUES}
    topic = await declare_topic(sns, names.domain_events)
    for key, filter_policy in SUBSCRIPTIONS.items():
        await subscribe_queue(sns, sqs, topic, queues[key], filter_policy)
    return PlatformResources(
        queues["ingest"], queues["evaluator"], queues["dispatcher"], queues["deliveries"], topic
    )


async def platform_resources(sqs: SQSClient, sns: SNSClient, prefix: str) -> PlatformResources:
    """Look the platform's resources up without creating anything (``AUTO_CREATE=false``)."""
    names = queue_names(prefix)
    return PlatformResources(
        ingest=await queue_ref(sqs, names.ingest),
        evaluator=await queue_ref(sqs, names.evaluator),
        dispatcher=await queue_ref(sqs, names.dispatcher),
        deliveries=await queue_ref(sqs, names.deliveries),
        domain_events_arn=await topic_arn(sns, names.domain_events),
    )


async def resolve_platform(
    sqs: SQSClient, sns: SNSClient, prefix: str, *, auto_create: bool
) -> PlatformResources:
    """:func:`declare_platform` with ``AUTO_CREATE``, else :func:`platform_resources`."""
    if auto_create:
        return await declare_platform(sqs, sns, prefix)
    return await platform_resources(sqs, sns, prefix)


def redeclare_platform(
    sqs: SQSClient, sns: SNSClient, prefix: str, *, auto_create: bool
) -> Callable[[], Awaitable[PlatformResources]] | None:
    """A consumer's ``on_missing_queue``: declare everything again with ``AUTO_CREATE`` (an
    emulator restarted empty); None otherwise (Terraform owns the resources)."""
    if not auto_create:
        return None
    return functools.partial(declare_platform, sqs, sns, prefix)


def guard_publishes(
    sqs: SQSClient, sns: SNSClient, prefix: str, topic_arn: str, *, auto_create: bool
) -> Callable[[], Awaitable[None]] | None:
    """A publisher's ``before_publish`` with ``AUTO_CREATE``: :func:`declare_unless_subscribed`
    on ``topic_arn``; None otherwise (Terraform owns the topic, which never loses them)."""
    if not auto_create:
        return None
    return functools.partial(declare_unless_subscribed, sqs, sns, prefix, topic_arn)


async def declare_unless_subscribed(
    sqs: SQSClient, sns: SNSClient, prefix: str, topic_arn: str
) -> None:
    """Declare the platform again (:func:`declare_platform`) unless ``topic_arn`` exists with
    every queue of :data:`SUBSCRIPTIONS` subscribed.

    Why before each publish: an emulator that restarted empty is declared again by the first
    consumer to notice, queues first, then the topic, then its subscriptions. A publish between
    the topic and its subscriptions is accepted by a topic with no subscribers, and the message
    is gone. Within one emulator's life subscriptions are only added, so finding them before a
    publish means the publish reaches them. One ``ListSubscriptionsByTopic`` call (local only).
    """
    try:
        subscribed = {arn.rsplit(":", 1)[-1] for arn in await _queue_subscriptions(sns, topic_arn)}
    except ClientError as exc:
        if error_code(exc) != "NotFound":
            raise
        subscribed = set()
    if not {f"{prefix}{key}" for key in SUBSCRIPTIONS} <= subscribed:
        log.warning("topic lacks its subscriptions; declaring the platform again")
        await declare_platform(sqs, sns, prefix)
