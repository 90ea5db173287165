"""The delivery worker's handler: one ``DeliveryScheduled`` in, one attempt (or a deferral) out.

For each received delivery: claim it (a lease, so two copies of a message never attempt it at
once), skip it if it is finished, defer it if its next attempt is not due or its integration's
circuit is open, otherwise attempt it through the integration's channel and record
``DeliveryAttempted`` (+ ``DeliverySucceeded`` / ``DeliveryAbandoned``, + ``IntegrationDisabled``
on 410) in one transaction with the projection. The answer tells the SQS entrypoint what to do
with the message: drop it, send it again after a delay, or dead-letter it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetpulse.common.contracts import (
    DeliveryAbandoned,
    DeliveryAttempted,
    DeliveryScheduled,
    DeliverySucceeded,
    Event,
    IntegrationDisabled,
)
from fleetpulse.common.crypto import SealError, SecretBox, open_values
from fleetpulse.common.errors import ConcurrencyError
from fleetpulse.common.eventstore import NewEvent, RecordedEvent, metadata
from fleetpulse.common.observability import meter
from fleetpulse.common.webhooks import headers_owner, secret_owner
from fleetpulse.delivery_worker.breaker import CircuitBreakers
from fleetpulse.delivery_worker.channels.base import Channel, Notification
from fleetpulse.delivery_worker.retry import AttemptResult, Decision, Verdict, decide
from fleetpulse.delivery_worker.store import AttemptRecord, Busy, Integration, PostgresDeliveryStore

log = logging.getLogger(__name__)
ACTOR = "delivery-worker"
_outcomes = meter("fleetpulse.delivery").create_counter(
    "fleetpulse.deliveries", description="Delivery attempts by channel and outcome"
)


@dataclass(frozen=True, slots=True)
class Done:
    """Nothing more to do with this message."""


@dataclass(frozen=True, slots=True)
class Requeue:
    delay_s: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str


Outcome = Done | Requeue | DeadLetter


class IntegrationCache:
    """Integrations read through a short TTL, so busy integrations cost no query per delivery."""

    def __init__(self, store: PostgresDeliveryStore, ttl_s: float = 5.0) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._entries: dict[tuple[str, str], tuple[float, Integration | None]] = {}

    async def get(self, tenant_id: str, integration_id: str) -> Integration | None:
        key, now = (tenant_id, integration_id), time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        integration = await self._store.integration(tenant_id, integration_id)
        self._entries[key] = (now, integration)
        return integration

    def forget(self, tenant_id: str, integration_id: str) -> None:
        self._entries.pop((tenant_id, integration_id), None)


class DeliveryWorker:
    def __init__(
        self,
        store: PostgresDeliveryStore,
        channels: Mapping[str, Channel],
        secrets: SecretBox,
        breakers: CircuitBreakers,
        *,
        lease_s: float = 60.0,
        slot_wait_s: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._channels = channels
        self._secrets = secrets
        self._breakers = breakers
        self._integrations = IntegrationCache(store)
        self._lease_s = lease_s
        self._slot_wait_s = slot_wait_s
        self._clock = clock
        self._rng = rng or random.Random()

    async def handle(self, event: RecordedEvent) -> Outcome:
        if event.type != DeliveryScheduled.TYPE:
            return Done()
        scheduled = _scheduled(event)
        tenant, delivery_id = event.tenant_id, scheduled.delivery_id
        claim = await self._store.claim(tenant, delivery_id, self._lease_s)
        if isinstance(claim, Busy):
            return Done() if claim.finished else Requeue(claim.retry_in_s)
        now = self._clock()
        if claim.next_attempt_at is not None and claim.next_attempt_at > now + timedelta(
            seconds=0.5
        ):
            await self._store.release(tenant, delivery_id)
            return Requeue((claim.next_attempt_at - now).total_seconds())
        integration = await self._integrations.get(tenant, scheduled.integration_id)
        if integration is None or not integration.enabled:
            return await self._abandon(
                event, claim.version, claim.attempts, "integration disabled or deleted"
            )
        return await self._attempt(event, integration, claim.attempts + 1, claim.version)

    async def _attempt(
        self, event: RecordedEvent, integration: Integration, attempt: int, version: int
    ) -> Outcome:
        tenant, delivery_id = event.tenant_id, _scheduled(event).delivery_id
        breaker_key = f"{tenant}:{integration.integration_id}"
        wait = await self._breakers.acquire(breaker_key, self._slot_wait_s)
        if wait > 0:
            await self._store.release(tenant, delivery_id)
            return Requeue(wait + self._rng.uniform(0, min(wait, 5.0)))
        try:
            result = await self._send(event, integration)
        except BaseException:
            self._breakers.release(breaker_key, endpoint_failure=False)
            raise
        self._breakers.release(breaker_key, endpoint_failure=result.endpoint_failure)
        decision = decide(result, attempt, self._rng)
        _outcomes.add(1, {"channel": integration.kind, "outcome": decision.verdict.value})
        return await self._record(event, integration, attempt, version, result, decision)

    async def _send(self, event: RecordedEvent, integration: Integration) -> AttemptResult:
        channel = self._channels.get(integration.kind)
        if channel is None:
            return AttemptResult(
                ok=False, error=f"no channel for {integration.kind}", permanent=True
            )
        try:
            secret = self._secret(event.tenant_id, integration)
        except SealError as exc:
            return AttemptResult(
                ok=False, error=f"cannot open the signing secret: {exc}", permanent=True
            )
        try:
            config = self._opened_config(event.tenant_id, integration)
        except SealError as exc:
            return AttemptResult(
                ok=False, error=f"cannot open a custom header: {exc}", permanent=True
            )
        scheduled = _scheduled(event)
        notification = Notification(
            message_id=scheduled.delivery_id,
            tenant_id=event.tenant_id,
            integration_id=integration.integration_id,
            config=config,
            payload=scheduled.payload or {},
            secret=secret,
        )
        try:
            return await channel.send(notification)
        except Exception as exc:  # a channel must not raise; if one does, it is a failed attempt
            log.exception("channel %s raised", integration.kind)
            return AttemptResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])

    def _secret(self, tenant_id: str, integration: Integration) -> str | None:
        if integration.secret_sealed is None:
            return None
        owner = secret_owner(tenant_id, integration.integration_id)
        return self._secrets.open(integration.secret_sealed, owner)

    def _opened_config(self, tenant_id: str, integration: Integration) -> Mapping[str, Any]:
        """The config with the custom header values the API sealed, opened for this attempt only."""
        sealed = integration.config.get("headers")
        if not sealed:
            return integration.config
        owner = headers_owner(tenant_id, integration.integration_id)
        return {**integration.config, "headers": open_values(self._secrets, sealed, owner)}

    async def _record(
        self,
        event: RecordedEvent,
        integration: Integration,
        attempt: int,
        version: int,
        result: AttemptResult,
        decision: Decision,
    ) -> Outcome:
        delivery_id, meta = _scheduled(event).delivery_id, metadata(actor=ACTOR, causation=event)
        outcome = attempt_events(delivery_id, attempt, result, decision, self._clock())
        events = [NewEvent.of(e, meta) for e in outcome]
        disable = None
        if decision.verdict is Verdict.DISABLE:
            disabled = IntegrationDisabled(
                integration_id=integration.integration_id, reason=decision.reason
            )
            disable = NewEvent.of(disabled, meta)
        record = AttemptRecord(
            event.tenant_id,
            delivery_id,
            version,
            events,
            release=decision.verdict is Verdict.RETRY,
            disable=disable,
            integration_id=integration.integration_id,
        )
        if not await self._stored(record):
            log.warning("delivery moved on during an attempt", extra={"delivery_id": delivery_id})
            return Requeue(1.0)
        if disable is not None:
            self._integrations.forget(event.tenant_id, integration.integration_id)
        return _outcome(decision)

    async def _abandon(
        self, event: RecordedEvent, version: int, attempts: int, reason: str
    ) -> Outcome:
        delivery_id = _scheduled(event).delivery_id
        meta = metadata(actor=ACTOR, causation=event)
        abandoned = NewEvent.of(_abandoned(delivery_id, attempts, reason, self._clock()), meta)
        record = AttemptRecord(event.tenant_id, delivery_id, version, [abandoned])
        return Done() if await self._stored(record) else Requeue(1.0)

    async def _stored(self, record: AttemptRecord) -> bool:
        """Record the attempt's events; False when the delivery moved on meanwhile (another
        worker recorded first: the message is requeued and re-read)."""
        try:
            await self._store.record(record)
        except ConcurrencyError:
            return False
        return True


def _scheduled(event: RecordedEvent) -> DeliveryScheduled:
    return DeliveryScheduled.from_data(event.data)


def attempt_events(
    delivery_id: str, attempt: int, result: AttemptResult, decision: Decision, now: datetime
) -> list[Event]:
    """What one attempt appends: :class:`DeliveryAttempted`, then the delivery's end if any."""
    retry_at = now + timedelta(seconds=decision.delay_s)
    attempted = DeliveryAttempted(
        delivery_id=delivery_id,
        attempt=attempt,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error=result.error,
        next_attempt_at=retry_at.isoformat() if decision.verdict is Verdict.RETRY else None,
        attempted_at=now.isoformat(),
    )
    if decision.verdict is Verdict.SUCCEEDED:
        return [attempted, DeliverySucceeded(delivery_id=delivery_id, attempt=attempt,
                                             completed_at=now.isoformat())]  # fmt: skip
    if decision.verdict in (Verdict.ABANDON, Verdict.DISABLE):
        return [attempted, _abandoned(delivery_id, attempt, decision.reason, now)]
    return [attempted]


def _abandoned(delivery_id: str, attempts: int, reason: str, at: datetime) -> DeliveryAbandoned:
    return DeliveryAbandoned(
        delivery_id=delivery_id, attempts=attempts, reason=reason, completed_at=at.isoformat()
    )


def _outcome(decision: Decision) -> Outcome:
    if decision.verdict is Verdict.RETRY:
        return Requeue(decision.delay_s)
    if decision.verdict is Verdict.ABANDON:
        return DeadLetter(decision.reason)
    return Done()
