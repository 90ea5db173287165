"""SNS: publish messages in batches (PublishBatch, 10 per call), retrying the entries that fail."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fleetpulse.common.messaging._batching import chunk, send_with_retry

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sns.type_defs import (
        MessageAttributeValueTypeDef,
        PublishBatchRequestEntryTypeDef,
    )


@dataclass(frozen=True, slots=True)
class SnsMessage:
    """A message to publish: body and String message attributes (used by filter policies)."""

    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)


class SnsPublisher:
    """Publishes to one topic.

    Parameters:
        sns: an aiobotocore SNS client, owned by the caller.
        topic_arn: the destination topic.
        max_attempts: tries per batch before ``publish_batch`` gives up with ``PublishError``.
        before_publish: awaited before each ``publish_batch`` (with ``AUTO_CREATE``, the check
            that the topic still has its subscriptions: ``resources.guard_publishes``); what it
            raises fails the call.
    """

    def __init__(
        self,
        sns: SNSClient,
        topic_arn: str,
        *,
        max_attempts: int = 5,
        before_publish: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._sns = sns
        self._topic_arn = topic_arn
        self._max_attempts = max_attempts
        self._before_publish = before_publish

    @property
    def topic_arn(self) -> str:
        return self._topic_arn

    async def publish_batch(self, messages: Sequence[SnsMessage]) -> None:
        """Publish every message (10 per call, calls in parallel); raises ``PublishError`` if
        some could not be published after retries."""
        if self._before_publish is not None:
            await self._before_publish()
        entries: list[PublishBatchRequestEntryTypeDef] = [
            _entry(str(i), m) for i, m in enumerate(messages)
        ]
        batches = chunk(entries, _entry_size)
        await asyncio.gather(*(self._send(batch) for batch in batches))

    async def _send(self, batch: list[PublishBatchRequestEntryTypeDef]) -> None:
        async def send(
            entries: list[PublishBatchRequestEntryTypeDef],
        ) -> Sequence[Mapping[str, object]]:
            response = await self._sns.publish_batch(
                TopicArn=self._topic_arn, PublishBatchRequestEntries=entries
            )
            return response.get("Failed", [])

        await send_with_retry(send, batch, what="SNS PublishBatch", max_attempts=self._max_attempts)


def _entry(entry_id: str, message: SnsMessage) -> PublishBatchRequestEntryTypeDef:
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        name: {"DataType": "String", "StringValue": value}
        for name, value in message.attributes.items()
        if value
    }
    return {"Id": entry_id, "Message": message.body, "MessageAttributes": attributes}


def _entry_size(entry: PublishBatchRequestEntryTypeDef) -> int:
    attributes = entry.get("MessageAttributes", {})
    return len(entry["Message"].encode()) + sum(
        len(name) + 6 + len(value.get("StringValue", "").encode())
        for name, value in attributes.items()
    )
