"""The dispatcher's handlers: alert events in, ``DeliveryScheduled`` events out.

Each alert event is handled in one transaction that records it in the inbox (a redelivered
event changes nothing), takes a per-alert lock (so an alert's opening and resolution are never
decided concurrently), and appends the deliveries with the deliveries projection applied inline.
Lock order, to stay free of deadlocks: alert lock, then group rows (sorted), then appends (which
hold the event store's append lock until commit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from fleetpulse.common.contracts import AlertClosed, AlertOpened, AlertResolved, DeliveryScheduled
from fleetpulse.common.eventstore import NewEvent, RecordedEvent, first_delivery, metadata
from fleetpulse.common.matchers import alert_labels, matches_all
from fleetpulse.dispatcher.domain import (
    ENDING_EVENTS,
    FIRING_EVENTS,
    AlertFacts,
    GroupState,
    Route,
    Target,
    delivery_id_for,
    ending_payload,
    firing_payload,
    firing_targets,
    flush_group,
    group_of,
    inhibited,
    join_group,
    repeat_delivery_id,
    silenced_by,
    suppressed,
)
from fleetpulse.dispatcher.store import PostgresDispatchStore

log = logging.getLogger(__name__)
CONSUMER = "dispatcher"
ACTOR = "dispatcher"
ENDED_STATUSES = ("resolved", "closed")
HOLD_RECHECK = timedelta(seconds=30)  # how often a held firing notification is re-checked

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Flush:
    """A group notification to send now: its route, members and group description; a
    ``repeat`` carries the group key and the time it was due (its delivery id)."""

    route: Route
    members: tuple[Mapping[str, Any], ...]
    group: Mapping[str, Any]
    kind: str = "firing"
    group_key: str = ""
    due_at: datetime | None = None


class Dispatcher:
    def __init__(self, store: PostgresDispatchStore, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    async def handle(self, event: RecordedEvent) -> None:
        """Handle one alert event (at least once is fine: the inbox drops repeats)."""
        if event.type not in FIRING_EVENTS | ENDING_EVENTS:
            return
        alert = event.decoded()
        assert isinstance(alert, AlertOpened | AlertResolved | AlertClosed)
        async with self._store.pool.acquire() as conn, conn.transaction():
            await self._store.lock_alert(conn, event.tenant_id, alert.alert_id)
            if not await first_delivery(conn, CONSUMER, str(event.event_id)):
                return
            match alert:
                case AlertOpened():
                    await self._on_firing(conn, event, alert)
                case AlertResolved() | AlertClosed():
                    await self._on_ending(conn, event, alert)

    async def _on_firing(
        self, conn: asyncpg.Connection, event: RecordedEvent, opened: AlertOpened
    ) -> None:
        tenant, now = event.tenant_id, self._clock()
        alert = await self._store.alert(conn, tenant, opened.alert_id)
        if alert is not None and alert["status"] in ENDED_STATUSES:
            return  # it ended before we saw it open: nothing fired, nothing to resolve
        member = {
            **opened.to_data(),
            "alert_event_id": str(event.event_id),
            "correlation_id": event.metadata.get("correlation_id"),
            # a group flushes later, from the clock: the lead's trace goes on with it
            "traceparent": event.metadata.get("traceparent"),
        }
        if await self._held(conn, tenant, [member], now):
            await self._store.hold(conn, tenant, member, now, now + HOLD_RECHECK)
            return
        await self._notify(conn, tenant, alert, member, now, causation=event)

    async def _notify(
        self,
        conn: asyncpg.Connection,
        tenant: str,
        alert: Mapping[str, Any] | None,
        member: Mapping[str, Any],
        now: datetime,
        causation: RecordedEvent | None,
    ) -> None:
        """Route a firing alert that nothing holds: send to each target, or join its groups."""
        device_id = str(member.get("device_id"))
        tags, attributes = (await self._store.devices(conn, tenant, [device_id])).get(
            device_id, ({}, {})
        )
        facts = AlertFacts(tenant, member, tags, attributes)
        targets = await self._targets(conn, facts, alert, now)
        flushes = [
            _Flush(t.route, (member,), group_of(t.route, facts).labels)
            for t in targets
            if not t.route.groups
        ]
        flushes += await self._join_groups(
            conn, tenant, [t for t in targets if t.route.groups], facts, member, now
        )
        for flush in flushes:
            await self._send_firing(conn, tenant, flush, now, causation=causation)

    async def release_held(self, limit: int = 50) -> int:
        """Re-check held firing notifications that are due: send those nothing holds any more
        (the alert still open), forget those whose alert ended, hold the rest another
        ``HOLD_RECHECK``. Returns how many were re-checked."""
        now = self._clock()
        async with self._store.pool.acquire() as conn:
            due = await self._store.due_held(conn, now, limit)
        checked = 0
        for tenant, alert_id in due:
            async with self._store.pool.acquire() as conn, conn.transaction():
                await self._store.lock_alert(conn, tenant, alert_id)
                row = await self._store.held(conn, tenant, alert_id)
                if row is None or row["check_at"] > now:
                    continue
                checked += 1
                await self._release(conn, tenant, alert_id, row["member"], now)
        return checked

    async def _release(
        self,
        conn: asyncpg.Connection,
        tenant: str,
        alert_id: str,
        member: dict[str, Any],
        now: datetime,
    ) -> None:
        alert = await self._store.alert(conn, tenant, alert_id)
        if alert is None or alert["status"] in ENDED_STATUSES:
            await self._store.unhold(conn, tenant, alert_id)  # never sent: nothing to resolve
        elif await self._held(conn, tenant, [member], now):
            await self._store.hold(conn, tenant, member, now, now + HOLD_RECHECK)
        else:
            await self._store.unhold(conn, tenant, alert_id)
            await self._notify(conn, tenant, alert, member, now, causation=None)

    async def _targets(
        self,
        conn: asyncpg.Connection,
        facts: AlertFacts,
        alert: Mapping[str, Any] | None,
        now: datetime,
    ) -> list[Target]:
        tenant = facts.tenant_id
        return firing_targets(
            await self._store.routes(conn, tenant),
            facts,
            now=now,
            enabled_integrations=await self._store.enabled_integrations(conn, tenant),
            silenced_until=alert["silenced_until"] if alert else None,
        )

    async def _join_groups(
        self,
        conn: asyncpg.Connection,
        tenant: str,
        targets: Sequence[Target],
        facts: AlertFacts,
        member: Mapping[str, Any],
        now: datetime,
    ) -> list[_Flush]:
        due = []
        for target in sorted(
            targets, key=lambda t: (t.route.route_id, group_of(t.route, facts).key)
        ):
            route, group = target.route, group_of(target.route, facts)
            state = await self._store.lock_group(conn, tenant, route, group.key, group.labels)
            state = join_group(state, member, route, now)
            if state.flush_at is not None and state.flush_at <= now:
                still = await self._still_firing(conn, tenant, state, now)
                decided = flush_group(state, still.__contains__, route, now)
                if decided.members:
                    due.append(
                        _Flush(
                            route,
                            decided.members,
                            group.labels,
                            decided.kind,
                            group.key,
                            state.flush_at,
                        )
                    )
                state = decided.state
            await self._store.save_group(conn, tenant, route.route_id, group.key, state)
        return due

    async def _send_firing(
        self,
        conn: asyncpg.Connection,
        tenant: str,
        flush: _Flush,
        now: datetime,
        causation: RecordedEvent | None = None,
    ) -> None:
        lead, integration = flush.members[0], flush.route.integration_id
        repeat = flush.kind == "repeat"
        if repeat:
            assert flush.due_at is not None
            route_id = flush.route.route_id
            delivery_id = repeat_delivery_id(route_id, flush.group_key, flush.due_at, integration)
        else:
            delivery_id = delivery_id_for(str(lead["alert_event_id"]), integration)
        payload = firing_payload(
            tenant, flush.members, flush.route, flush.group, now, repeat=repeat
        )
        scheduled = DeliveryScheduled(
            delivery_id=delivery_id,
            alert_id=lead["alert_id"],
            alert_event_id=lead["alert_event_id"],
            alert_event_type=AlertOpened.TYPE,
            integration_id=integration,
            route_id=flush.route.route_id,
            notification_type=flush.kind,
            payload=payload,
        )
        event = NewEvent.of(scheduled, _metadata(causation, lead))
        await self._store.schedule(conn, tenant, delivery_id, event)
        await self._store.record_firing(
            conn,
            tenant,
            [str(m["alert_id"]) for m in flush.members],
            integration,
            flush.route.route_id,
            delivery_id,
            now,
        )

    async def _on_ending(
        self, conn: asyncpg.Connection, event: RecordedEvent, ended: AlertResolved | AlertClosed
    ) -> None:
        tenant, alert_id, now = event.tenant_id, ended.alert_id, self._clock()
        await self._store.leave_groups(conn, tenant, alert_id)
        await self._store.unhold(conn, tenant, alert_id)
        notified = await self._store.unresolved_notifications(conn, tenant, alert_id)
        if not notified:
            return
        alert = await self._store.alert(conn, tenant, alert_id) or {"alert_id": alert_id}
        payload = ending_payload(tenant, event.type, event.data, _alert_summary(alert), now)
        for row in notified:
            delivery_id = delivery_id_for(str(event.event_id), row["integration_id"])
            scheduled = DeliveryScheduled(
                delivery_id=delivery_id,
                alert_id=alert_id,
                alert_event_id=str(event.event_id),
                alert_event_type=ended.TYPE,
                integration_id=row["integration_id"],
                route_id=row["route_id"],
                notification_type="resolved",
                payload=payload,
            )
            await self._store.schedule(
                conn,
                tenant,
                delivery_id,
                NewEvent.of(scheduled, metadata(actor=ACTOR, causation=event)),
            )
            await self._store.record_resolved(
                conn, tenant, alert_id, row["integration_id"], delivery_id
            )

    async def flush_due_groups(self, limit: int = 50) -> int:
        """Send the notifications of groups whose wait is over; returns how many groups."""
        now = self._clock()
        async with self._store.pool.acquire() as conn, conn.transaction():
            rows = await self._store.due_groups(conn, now, limit)
            for row in rows:
                await self._flush_group(conn, row, now)
            return len(rows)

    async def _flush_group(
        self, conn: asyncpg.Connection, row: Mapping[str, Any], now: datetime
    ) -> None:
        tenant, key = row["tenant_id"], row["group_key"]
        state = GroupState(
            tuple(row["pending"]), row["flush_at"], row["last_notified_at"], tuple(row["firing"])
        )
        route = await self._store.route(conn, tenant, row["route_id"])
        if route is None:  # the route was deleted: the group is done
            await self._store.save_group(conn, tenant, row["route_id"], key, GroupState())
            return
        still = await self._still_firing(conn, tenant, state, now)
        if not await self._may_notify(conn, tenant, route, now):
            quiet = suppressed(state, still.__contains__, route, now)
            await self._store.save_group(conn, tenant, route.route_id, key, quiet)
            return
        decided = flush_group(state, still.__contains__, route, now)
        if decided.members:
            flush = _Flush(
                route, decided.members, row["labels"], decided.kind, key, row["flush_at"]
            )
            await self._send_firing(conn, tenant, flush, now)
        await self._store.save_group(conn, tenant, route.route_id, key, decided.state)

    async def _still_firing(
        self,
        conn: asyncpg.Connection,
        tenant: str,
        state: GroupState,
        now: datetime,
    ) -> set[str]:
        """The ids of the group's alerts still open and not silenced (by their own silence,
        a matcher silence or an inhibit rule). Its new alerts held by a matcher silence or an
        inhibit rule leave the group for ``dispatch_held``, to be notified once released."""
        members = [*state.pending, *state.firing]
        ids = [str(m["alert_id"]) for m in members]
        states = await self._store.alert_states(conn, tenant, ids)
        kept = set()
        for alert_id in ids:
            alert = states.get(alert_id, {})
            silenced = alert.get("silenced_until")
            if alert.get("status") in ENDED_STATUSES or (silenced is not None and now < silenced):
                continue
            kept.add(alert_id)
        if not kept:
            return kept
        held = await self._held(
            conn, tenant, [m for m in members if str(m["alert_id"]) in kept], now
        )
        for member in state.pending:
            if str(member["alert_id"]) in held:
                await self._store.hold(conn, tenant, dict(member), now, now + HOLD_RECHECK)
        return kept - held

    async def _held(
        self,
        conn: asyncpg.Connection,
        tenant: str,
        alerts: Sequence[Mapping[str, Any]],
        now: datetime,
    ) -> set[str]:
        """The ids of ``alerts`` (AlertOpened data) whose notifications an active silence or
        an inhibit rule holds now."""
        silences = await self._store.active_silences(conn, tenant, now)
        rules = await self._store.inhibit_rules(conn, tenant)
        if not silences and not rules:
            return set()
        devices = await self._store.devices(
            conn, tenant, sorted({str(a.get("device_id")) for a in alerts})
        )
        labelled = [
            (str(a["alert_id"]), alert_labels(a, *devices.get(str(a.get("device_id")), ({}, {}))))
            for a in alerts
        ]
        held = {alert_id for alert_id, labels in labelled if silenced_by(silences, labels)}
        targets = [
            (alert_id, labels)
            for alert_id, labels in labelled
            if alert_id not in held and any(matches_all(r.target, labels) for r in rules)
        ]
        if targets:
            sources = await self._store.open_alert_labels(conn, tenant)
            held |= {a for a, labels in targets if inhibited(a, labels, rules, sources)}
        return held

    async def _may_notify(
        self, conn: asyncpg.Connection, tenant: str, route: Route, now: datetime
    ) -> bool:
        windows = (await self._store.enabled_integrations(conn, tenant)).get(route.integration_id)
        if windows is None:
            return False
        return not any(w.covers(now) for w in (*route.maintenance_windows, *windows))


def _alert_summary(alert: Mapping[str, Any]) -> dict[str, Any]:
    details = alert.get("details") or {}
    summary = {k: v for k, v in alert.items() if k not in ("details", "silenced_until", "status")}
    summary.update({k: v for k, v in details.items() if k in ("rule_name", "metric", "threshold")})
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in summary.items()}


def _metadata(causation: RecordedEvent | None, lead: Mapping[str, Any]) -> dict[str, Any]:
    if causation is not None:
        return metadata(actor=ACTOR, causation=causation)
    trace = {"traceparent": lead["traceparent"]} if lead.get("traceparent") else {}
    return metadata(
        actor=ACTOR,
        correlation_id=lead.get("correlation_id"),
        causation_id=lead.get("alert_event_id"),
        **trace,
    )
