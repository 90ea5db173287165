"""The backtest, pure: one rule over a stream of stored readings, by the evaluator's own core.

Feed readings in time order (any chunking: each device's states, watermarks and condition
memories are carried between chunks as the evaluator carries them between batches), then
:meth:`Backtest.finish` at the end of the range. The stream is also the clock: a pending
duration opens when the stream passes its due time by more than ``grace`` (the live clock's
``duration_grace_s``), so a reading inside the grace can still cancel it, as it can live.

Threshold and condition rules only: ``no_data`` depends on receive time and the live clock,
which stored telemetry does not replay faithfully.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import count
from typing import Any

from fleetpulse.common.rules.domain import (
    DeviceOutcome,
    OpenAlert,
    Record,
    Rule,
    RuleMemory,
    RulePlan,
    RuleState,
    Watermarks,
    evaluate_device,
    tick_pending,
)


class UnsupportedRuleError(ValueError):
    """A rule the backtest cannot replay (``no_data``)."""


@dataclass(slots=True)
class PreviewAlert:
    """An alert the rule would have raised: ``resolved_at`` ``None`` while still open at the
    end of the range; values are what the alert events would carry."""

    device_id: str
    alert_id: str
    opened_at: datetime
    opened_value: Any
    reason: str
    resolved_at: datetime | None = None
    resolved_value: Any = None


@dataclass(slots=True)
class _Device:
    plan: RulePlan
    states: dict[str, RuleState] = field(default_factory=dict)
    seen: Watermarks | None = None
    memory: dict[str, RuleMemory] = field(default_factory=dict)


class Backtest:
    """Replays ``rule`` for devices with the given attributes (``attributes``: device id ->
    attributes; a device not in it has none)."""

    def __init__(
        self,
        rule: Rule,
        attributes: Mapping[str, Mapping[str, Any]] | None = None,
        grace: timedelta = timedelta(seconds=1),
    ) -> None:
        if rule.kind == "no_data":
            raise UnsupportedRuleError("the backtest replays threshold and condition rules only")
        self._rule = rule
        self._attributes = attributes or {}
        self._grace = grace
        self._devices: dict[str, _Device] = {}
        self._ids = (f"preview-{i}" for i in count(1))
        self.alerts: list[PreviewAlert] = []
        self._open: dict[str, PreviewAlert] = {}
        self.readings = 0

    def feed(self, records: Iterable[Record]) -> None:
        """Readings in time order (device time, oldest first)."""
        by_device: dict[str, list[Record]] = {}
        for record in records:
            by_device.setdefault(record.device_id, []).append(record)
        for device_id, mine in by_device.items():
            self.readings += len(mine)
            device = self._device(device_id)
            outcome = evaluate_device(
                device.plan,
                device.states,
                device.seen,
                mine,
                self._new_id,
                memory=device.memory,
                clock=self._grace,
            )
            self._carry(device, outcome)

    def finish(self, end: datetime) -> list[PreviewAlert]:
        """The clock reached ``end``: due pending durations open. Returns every alert, by
        ``opened_at`` then device."""
        for device_id, device in self._devices.items():
            if device.states:
                outcome = DeviceOutcome(dict(device.states), set(), [], device.seen or Watermarks())
                tick_pending(device.plan, outcome, device_id, end - self._grace, self._new_id)
                self._carry(device, outcome)
        return sorted(self.alerts, key=lambda a: (a.opened_at, a.device_id))

    def _new_id(self) -> str:
        return next(self._ids)

    def _device(self, device_id: str) -> _Device:
        device = self._devices.get(device_id)
        if device is None:
            plan = RulePlan.of([self._rule], self._attributes.get(device_id, {}))
            device = self._devices[device_id] = _Device(plan)
        return device

    def _carry(self, device: _Device, outcome: DeviceOutcome) -> None:
        device.states, device.seen = outcome.states, outcome.seen
        device.memory = outcome.memory
        for decision in outcome.decisions:
            if isinstance(decision, OpenAlert):
                alert = PreviewAlert(
                    decision.device_id,
                    decision.alert_id,
                    decision.opened_at,
                    decision.value,
                    decision.reason,
                )
                self.alerts.append(alert)
                self._open[decision.alert_id] = alert
            else:
                alert = self._open.pop(decision.alert_id)
                alert.resolved_at, alert.resolved_value = decision.resolved_at, decision.value
