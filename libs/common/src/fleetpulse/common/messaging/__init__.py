"""Messaging: SQS consumer and packed publisher, SNS publisher, resource declaration, the event
envelope and the outbox relay (events -> SNS ``{prefix}domain-events``)."""

from fleetpulse.common.messaging.envelope import event_to_message, message_to_event
from fleetpulse.common.messaging.errors import MessagingError, PublishError, ResourceNotFoundError
from fleetpulse.common.messaging.outbox import OutboxRelay
from fleetpulse.common.messaging.packing import MAX_UNPACKED_BYTES, pack_records, unpack_records
from fleetpulse.common.messaging.resources import (
    DELIVERIES_FILTER,
    DISPATCHER_FILTER,
    QUEUES,
    SUBSCRIPTIONS,
    PlatformNames,
    PlatformResources,
    QueueRef,
    QueueSpec,
    declare_platform,
    declare_platform_queue,
    declare_queue,
    declare_topic,
    declare_unless_subscribed,
    guard_publishes,
    platform_resources,
    queue_names,
    queue_ref,
    redeclare_platform,
    resolve_platform,
    subscribe_queue,
    topic_arn,
)
from fleetpulse.common.messaging.sns import SnsMessage, SnsPublisher
from fleetpulse.common.messaging.sqs import (
    MessageHandler,
    RetryLater,
    SqsBatchPublisher,
    SqsConsumer,
    SqsMessage,
)

__all__ = [
    "DELIVERIES_FILTER",
    "DISPATCHER_FILTER",
    "MAX_UNPACKED_BYTES",
    "QUEUES",
    "SUBSCRIPTIONS",
    "MessageHandler",
    "MessagingError",
    "OutboxRelay",
    "PlatformNames",
    "PlatformResources",
    "PublishError",
    "QueueRef",
    "QueueSpec",
    "ResourceNotFoundError",
    "RetryLater",
    "SnsMessage",
    "SnsPublisher",
    "SqsBatchPublisher",
    "SqsConsumer",
    "SqsMessage",
    "declare_platform",
    "declare_platform_queue",
    "declare_queue",
    "declare_topic",
    "declare_unless_subscribed",
    "event_to_message",
    "guard_publishes",
    "message_to_event",
    "pack_records",
    "platform_resources",
    "queue_names",
    "queue_ref",
    "redeclare_platform",
    "resolve_platform",
    "subscribe_queue",
    "topic_arn",
    "unpack_records",
]
