"""Batch APIs (SendMessageBatch, PublishBatch, DeleteMessageBatch) share two chores: cutting
entries into calls of at most 10 entries and a byte budget, and retrying the entries that failed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from fleetpulse.common.errors import ExternalError
from fleetpulse.common.messaging.errors import PublishError, aws_errors
from fleetpulse.common.retry import equal_jitter

MAX_BATCH_ENTRIES = 10
#: What SQS/SNS accept in one batch request, all entries together.
MAX_BATCH_BYTES = 262_144

E = TypeVar("E", bound=Mapping[str, object])
FailedEntries = Sequence[Mapping[str, object]]

log = logging.getLogger(__name__)


def chunk(
    entries: Sequence[E], size_of: Callable[[E], int], *, max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[list[E]]:
    """Consecutive runs of at most 10 entries whose sizes add up to at most ``max_bytes``."""
    batch: list[E] = []
    used = 0
    for entry in entries:
        size = size_of(entry)
        if batch and (len(batch) == MAX_BATCH_ENTRIES or used + size > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(entry)
        used += size
    if batch:
        yield batch


async def send_with_retry(
    send: Callable[[list[E]], Awaitable[FailedEntries]],
    entries: list[E],
    *,
    what: str,
    max_attempts: int = 5,
    base_delay_s: float = 0.2,
) -> None:
    """Call ``send`` (one batch request returning its ``Failed`` entries) until every entry went
    through; entries the service rejects as the sender's fault are not retried.

    Raises :class:`PublishError` when entries remain after ``max_attempts``.
    """
    pending, problem = entries, ""
    for attempt in range(1, max_attempts + 1):
        try:
            with aws_errors:
                failed = await send(pending)
        except ExternalError as exc:
            cause = exc.__cause__ or exc
            problem = f"{type(cause).__name__}: {cause}"
        else:
            _raise_on_sender_fault(failed, what)
            failed_ids = {str(entry.get("Id")) for entry in failed}
            pending = [entry for entry in pending if str(entry["Id"]) in failed_ids]
            if not pending:
                return
            problem = _describe(failed)
        log.warning(
            "batch entries failed; retrying",
            extra={"what": what, "attempt": attempt, "entries": len(pending), "error": problem},
        )
        if attempt < max_attempts:
            await asyncio.sleep(backoff_s(attempt, base_delay_s))
    raise PublishError(
        f"{what}: {len(pending)} entries not sent after {max_attempts} attempts: {problem}"
    )


def _raise_on_sender_fault(failed: FailedEntries, what: str) -> None:
    rejected = [entry for entry in failed if entry.get("SenderFault")]
    if rejected:
        raise PublishError(f"{what}: {len(rejected)} entries rejected: {_describe(rejected)}")


def _describe(failed: FailedEntries) -> str:
    first = failed[0] if failed else {}
    return f"{first.get('Code', '?')}: {first.get('Message', '')}"


def backoff_s(attempt: int, base_s: float = 0.2, cap_s: float = 30.0) -> float:
    """Exponential backoff with jitter (half fixed, half random) for retry ``attempt`` (1-based)."""
    return equal_jitter(base_s, cap_s).delay(attempt)
