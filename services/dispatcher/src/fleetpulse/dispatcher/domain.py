"""Routing decisions, pure: which routes an alert matches, how alerts group, what is sent.

No I/O here. The application layer loads routes, device tags and alert state, asks this module
what to do, and records the answer.

Semantics (documented in the service README):
- A route matches when the alert's severity is at least ``match.severity_at_least``, its rule is
  in ``match.rule_ids`` (if given) and the device has every ``match.device_tags`` pair (if
  given); an empty match matches every alert.
- Maintenance windows: ``match.maintenance_windows`` on the route or
  ``config.maintenance_windows`` on the integration, recurring (RRULE or cron in an IANA time
  zone, with a duration) or absolute ``{"start", "end"}`` (see :mod:`fleetpulse.common.windows`);
  firing notifications inside a window are suppressed (resolved ones never are).
- One integration gets one notification per alert event, even when several routes lead to it:
  the first matching route (by route id) wins.
- Grouping, as Alertmanager does it. Without ``group_by`` every alert is its own group.
  ``group_wait_s`` delays a new group's first notification to collect the alerts that join it
  meanwhile. ``group_interval_s`` (default 0): once a group was notified, alerts joining it wait
  until ``group_interval_s`` after its last notification, then one notification lists every
  alert of the group still firing (new ones first). ``repeat_interval_s``: while a notified
  alert of the group still fires and nothing new joined, the same firing notification is sent
  again every ``repeat_interval_s`` (a new delivery, ``notification_type`` ``repeat``, payload
  ``data.repeat`` true). Alerts that ended, or are silenced, are left out; a group with none
  left stops repeating.
- Silences (Alertmanager-style, ``silences`` table): an alert whose labels match every matcher
  of a silence active now gets no firing (or repeat) notification; the alert itself still opens
  and resolves. A held firing notification waits in ``dispatch_held`` (re-checked every 30 s)
  and goes out once nothing holds it if the alert still fires, as in Alertmanager; if the alert
  ends first it is never sent, and since only integrations that got the firing notification get
  the resolved one, none follows it. A notified alert that gets silenced stops repeating.
- Inhibition (Alertmanager's inhibit rules, ``inhibit_rules`` table): an alert matching a
  rule's target matchers is held like a silenced one while another open (or acknowledged)
  alert matches its source matchers with the same values of the ``equal`` labels. It is
  decided when the notification is due: a route with ``group_wait_s`` lets a source that opens
  at the same time as its targets (a gateway and its devices going quiet) arrive first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from fleetpulse.common.contracts import AlertClosed, AlertOpened, AlertResolved
from fleetpulse.common.contracts.constants import severity_at_least
from fleetpulse.common.matchers import Matcher, alert_labels, matches_all
from fleetpulse.common.windows import MaintenanceWindow as MaintenanceWindow  # re-exported
from fleetpulse.common.windows import Window, parse_windows

FIRING_EVENTS = frozenset({AlertOpened.TYPE})
ENDING_EVENTS = frozenset({AlertResolved.TYPE, AlertClosed.TYPE})
WEBHOOK_TYPES = {
    AlertOpened.TYPE: "alert.opened",
    AlertResolved.TYPE: "alert.resolved",
    AlertClosed.TYPE: "alert.closed",
}
ALERT_FIELDS = (
    "alert_id",
    "fingerprint",
    "rule_id",
    "rule_name",
    "device_id",
    "severity",
    "opened_at",
    "metric",
    "value",
    "threshold",
    "reason",
)


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What routing looks at: the AlertOpened data plus the device's tags."""

    tenant_id: str
    data: Mapping[str, Any]
    device_tags: Mapping[str, str] = field(default_factory=dict)
    device_attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        """What silence and inhibition matchers see (:func:`alert_labels`)."""
        return alert_labels(self.data, self.device_tags, self.device_attributes)

    @property
    def alert_id(self) -> str:
        return str(self.data["alert_id"])

    @property
    def severity(self) -> str:
        return str(self.data.get("severity", "info"))

    def label(self, name: str) -> str | None:
        """``rule_id``, ``device_id``, ``severity``... or ``tags.<key>`` for a device tag."""
        if name.startswith("tags."):
            return self.device_tags.get(name.removeprefix("tags."))
        value = self.data.get(name)
        return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Route:
    route_id: str
    integration_id: str
    severity_at_least: str | None = None
    rule_ids: frozenset[str] | None = None
    device_tags: Mapping[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    group_wait_s: int = 0
    repeat_interval_s: int | None = None
    maintenance_windows: tuple[Window, ...] = ()
    group_interval_s: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Route:
        match = row.get("match") or {}
        rule_ids = match.get("rule_ids")
        return cls(
            route_id=row["route_id"],
            integration_id=row["integration_id"],
            severity_at_least=match.get("severity_at_least"),
            rule_ids=frozenset(map(str, rule_ids)) if rule_ids else None,
            device_tags={str(k): str(v) for k, v in (match.get("device_tags") or {}).items()},
            group_by=tuple(map(str, row.get("group_by") or ())),
            group_wait_s=int(row.get("group_wait_s") or 0),
            repeat_interval_s=row.get("repeat_interval_s"),
            maintenance_windows=parse_windows(match.get("maintenance_windows")),
            group_interval_s=int(row.get("group_interval_s") or 0),
        )

    def matches(self, alert: AlertFacts) -> bool:
        return (
            self._severity_ok(alert.severity)
            and (self.rule_ids is None or alert.label("rule_id") in self.rule_ids)
            and all(alert.device_tags.get(k) == v for k, v in self.device_tags.items())
        )

    def _severity_ok(self, severity: str) -> bool:
        if self.severity_at_least is None:
            return True
        return severity_at_least(severity, self.severity_at_least)

    @property
    def groups(self) -> bool:
        """Whether this route holds alerts back (grouping, waiting or throttling)."""
        return (
            bool(self.group_by)
            or self.group_wait_s > 0
            or self.group_interval_s > 0
            or bool(self.repeat_interval_s)
        )


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    labels: dict[str, str | None]


def group_of(route: Route, alert: AlertFacts) -> Group:
    """The alert's group on ``route``: its ``group_by`` labels, or the alert alone."""
    if not route.group_by:
        return Group(key=f"alert:{alert.alert_id}", labels={"alert_id": alert.alert_id})
    labels = {name: alert.label(name) for name in route.group_by}
    digest = hashlib.sha256(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return Group(key=digest, labels=labels)


@dataclass(frozen=True, slots=True)
class Target:
    """Where one firing alert goes: an integration, through the route that chose it."""

    route: Route
    integration_id: str


def firing_targets(
    routes: Iterable[Route],
    alert: AlertFacts,
    *,
    now: datetime,
    enabled_integrations: Mapping[str, tuple[Window, ...]],
    silenced_until: datetime | None,
) -> list[Target]:
    """The integrations that get a firing notification for ``alert``, one per integration."""
    if silenced_until is not None and now < silenced_until:
        return []
    chosen: dict[str, Target] = {}
    for route in sorted(routes, key=lambda r: r.route_id):
        windows = enabled_integrations.get(route.integration_id)
        if windows is None or route.integration_id in chosen or not route.matches(alert):
            continue
        if any(w.covers(now) for w in (*route.maintenance_windows, *windows)):
            continue
        chosen[route.integration_id] = Target(route, route.integration_id)
    return list(chosen.values())


def silenced_by(silences: Iterable[Sequence[Matcher]], labels: Mapping[str, str]) -> bool:
    """Whether any active silence (its matchers, all of which must match) covers ``labels``."""
    return any(matches_all(matchers, labels) for matchers in silences)


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """Alertmanager's inhibit rule: an open alert matching ``source`` mutes the other alerts
    matching ``target`` whose ``equal`` labels have the same values (missing on both: equal)."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()


def inhibited(
    alert_id: str,
    labels: Mapping[str, str],
    rules: Iterable[InhibitRule],
    sources: Sequence[tuple[str, Mapping[str, str]]],
) -> bool:
    """Whether an open alert among ``sources`` (id, labels) inhibits this alert; an alert
    never inhibits itself."""
    for rule in rules:
        if not matches_all(rule.target, labels):
            continue
        for source_id, source in sources:
            if (
                source_id != alert_id
                and matches_all(rule.source, source)
                and all(source.get(n, "") == labels.get(n, "") for n in rule.equal)
            ):
                return True
    return False


@dataclass(frozen=True, slots=True)
class GroupState:
    """A group's alerts (each the AlertOpened event data with its event id) and timing:
    ``pending`` joined since the last notification, ``firing`` were notified and still fire."""

    pending: tuple[Mapping[str, Any], ...] = ()
    flush_at: datetime | None = None
    last_notified_at: datetime | None = None
    firing: tuple[Mapping[str, Any], ...] = ()


def join_group(
    state: GroupState, member: Mapping[str, Any], route: Route, now: datetime
) -> GroupState:
    """Add a firing alert to its group and say when the group's next notification is due:
    ``group_wait_s`` from now for a group with nothing notified and firing, else
    ``group_interval_s`` after its last notification."""
    if any(m["alert_id"] == member["alert_id"] for m in (*state.pending, *state.firing)):
        return state
    pending = (*state.pending, member)
    if state.last_notified_at is None or not state.firing:
        due = now + timedelta(seconds=route.group_wait_s)
    else:
        due = max(now, state.last_notified_at + timedelta(seconds=route.group_interval_s))
    if state.flush_at is not None:
        due = min(due, state.flush_at)
    return GroupState(pending, due, state.last_notified_at, state.firing)


@dataclass(frozen=True, slots=True)
class GroupFlush:
    """What a due group does: notify ``members`` (none: nothing to send) as ``kind``
    (``firing`` for new alerts, ``repeat``), then move to ``state``."""

    members: tuple[Mapping[str, Any], ...]
    kind: str
    state: GroupState


def flush_group(
    state: GroupState, still_firing: Callable[[str], bool], route: Route, now: datetime
) -> GroupFlush:
    """Decide a due group's notification (Alertmanager's dedup stage): new alerts -> notify
    all still firing; none new but ``repeat_interval_s`` elapsed since the last -> repeat;
    else nothing. ``still_firing(alert_id)`` says whether an alert is open and not silenced."""
    pending = tuple(m for m in state.pending if still_firing(str(m["alert_id"])))
    firing = tuple(m for m in state.firing if still_firing(str(m["alert_id"])))
    repeat = timedelta(seconds=route.repeat_interval_s or 0)
    if pending:
        members, kind = (*pending, *firing), "firing"
    elif firing and repeat and state.last_notified_at is not None:
        due = state.last_notified_at + repeat
        members, kind = (firing, "repeat") if now >= due else ((), "none")
    else:
        members, kind = (), "none"
    notified = now if members else state.last_notified_at
    kept = members if members else firing
    next_at = notified + repeat if kept and repeat and notified is not None else None
    return GroupFlush(members, kind, GroupState((), next_at, notified, kept))


def suppressed(
    state: GroupState, still_firing: Callable[[str], bool], route: Route, now: datetime
) -> GroupState:
    """A due group that may not notify now (integration disabled or in a maintenance window):
    its new alerts are dropped, as any firing notification inside a window is, and its
    notified alerts repeat again ``repeat_interval_s`` from now if they still fire."""
    firing = tuple(m for m in state.firing if still_firing(str(m["alert_id"])))
    repeat = route.repeat_interval_s
    next_at = now + timedelta(seconds=repeat) if firing and repeat else None
    return GroupState((), next_at, state.last_notified_at, firing)


def repeat_delivery_id(route_id: str, group_key: str, due_at: datetime, integration_id: str) -> str:
    """A repeat's delivery id: one per (group, scheduled time), so two dispatchers flushing
    the same due group name the same delivery."""
    return delivery_id_for(f"repeat:{route_id}:{group_key}:{due_at.isoformat()}", integration_id)


def delivery_id_for(alert_event_id: str, integration_id: str) -> str:
    """Deterministic, so a redelivered alert event names the same delivery."""
    digest = hashlib.sha256(f"{alert_event_id}:{integration_id}".encode()).hexdigest()
    return "dlv_" + digest[:26]


def alert_summary(data: Mapping[str, Any]) -> dict[str, Any]:
    return {name: data[name] for name in ALERT_FIELDS if name in data}


def firing_payload(
    tenant_id: str,
    members: Sequence[Mapping[str, Any]],
    route: Route,
    group: Mapping[str, Any],
    at: datetime,
    *,
    repeat: bool = False,
) -> dict[str, Any]:
    """The notification body of a group's firing notification (the first alert leads);
    ``data.repeat`` is true on a repeat of it."""
    alerts = [alert_summary(m) for m in members]
    return {
        "type": "alert.opened",
        "timestamp": at.isoformat(),
        "data": {
            **alerts[0],
            "status": "firing",
            "repeat": repeat,
            "tenant_id": tenant_id,
            "route_id": route.route_id,
            "group": dict(group),
            "alerts": alerts,
        },
    }


def ending_payload(
    tenant_id: str,
    event_type: str,
    event_data: Mapping[str, Any],
    alert: Mapping[str, Any],
    at: datetime,
) -> dict[str, Any]:
    """The notification body of an alert's resolved (or closed) notification."""
    data = {**alert_summary(alert), **{k: v for k, v in event_data.items() if v is not None}}
    return {
        "type": WEBHOOK_TYPES[event_type],
        "timestamp": at.isoformat(),
        "data": {**data, "status": "resolved", "tenant_id": tenant_id},
    }
