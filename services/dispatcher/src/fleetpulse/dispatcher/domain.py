"""Routing decisions, pure: which routes an alert matches, how alerts group, what is sent.

No I/O here. The application layer loads routes, device tags and alert state, asks this module
what to do, and records the answer.

Semantics (documented in the service README):
- A route matches when the alert's severity is at least ``match.severity_at_least``, its rule is
  in ``match.rule_ids`` (if given) and the device has every ``match.device_tags`` pair (if
  given); an empty match matches every alert.
- Maintenance windows: ``match.maintenance_windows`` on the route or
  ``config.maintenance_windows`` on the integration, a list of ``{"start", "end"}`` ISO-8601
  instants; firing notifications inside a window are suppressed (resolved ones never are).
- One integration gets one notification per alert event, even when several routes lead to it:
  the first matching route (by route id) wins.
- Without ``group_by`` every alert is its own group. ``group_wait_s`` delays a group's first
  notification to collect the alerts that join it meanwhile; ``repeat_interval_s`` is the least
  time between two firing notifications of a group: alerts joining inside it wait, and go out
  together when it ends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

SEVERITY_RANK = {"info": 0, "warning": 1, "minor": 2, "major": 3, "critical": 4}
FIRING_EVENTS = frozenset({"AlertOpened"})
ENDING_EVENTS = frozenset({"AlertResolved", "AlertClosed"})
WEBHOOK_TYPES = {
    "AlertOpened": "alert.opened",
    "AlertResolved": "alert.resolved",
    "AlertClosed": "alert.closed",
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
class MaintenanceWindow:
    start: datetime
    end: datetime

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


def parse_windows(raw: object) -> tuple[MaintenanceWindow, ...]:
    """Windows from config; malformed entries are ignored rather than blocking every alert."""
    windows = []
    for item in raw if isinstance(raw, list) else []:
        try:
            windows.append(MaintenanceWindow(_instant(item["start"]), _instant(item["end"])))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(windows)


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("maintenance window times need a time zone")
    return parsed


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What routing looks at: the AlertOpened data plus the device's tags."""

    tenant_id: str
    data: Mapping[str, Any]
    device_tags: Mapping[str, str] = field(default_factory=dict)

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
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()

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
        return SEVERITY_RANK.get(severity, -1) >= SEVERITY_RANK.get(self.severity_at_least, 99)

    @property
    def groups(self) -> bool:
        """Whether this route holds alerts back (grouping, waiting or throttling)."""
        return bool(self.group_by) or self.group_wait_s > 0 or bool(self.repeat_interval_s)


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
    enabled_integrations: Mapping[str, tuple[MaintenanceWindow, ...]],
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


@dataclass(frozen=True, slots=True)
class GroupState:
    """A group's pending alerts (each the AlertOpened event data with its event id) and timing."""

    pending: tuple[Mapping[str, Any], ...] = ()
    flush_at: datetime | None = None
    last_notified_at: datetime | None = None


def join_group(
    state: GroupState, member: Mapping[str, Any], route: Route, now: datetime
) -> GroupState:
    """Add a firing alert to its group and say when the group's next notification is due."""
    if any(m["alert_id"] == member["alert_id"] for m in state.pending):
        return state
    pending = (*state.pending, member)
    if state.flush_at is not None:
        return GroupState(pending, state.flush_at, state.last_notified_at)
    due = now + timedelta(seconds=route.group_wait_s)
    if state.last_notified_at is not None and route.repeat_interval_s:
        due = max(due, state.last_notified_at + timedelta(seconds=route.repeat_interval_s))
    return GroupState(pending, due, state.last_notified_at)


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
) -> dict[str, Any]:
    """The notification body of a group's firing notification (the first alert leads)."""
    alerts = [alert_summary(m) for m in members]
    return {
        "type": "alert.opened",
        "timestamp": at.isoformat(),
        "data": {
            **alerts[0],
            "status": "firing",
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
