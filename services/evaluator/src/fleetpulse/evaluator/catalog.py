"""Rules and device tags in memory, refreshed from the catalog projection (``rules``, ``devices``).

:class:`Catalog` is pure: which rules apply to which device. :class:`PostgresCatalogSource`
reloads it when a cheap fingerprint of either table changes, polled every
``refresh_s`` (1 s by default), so a Rule*/Device* event takes effect within a couple of seconds
of its projection committing; after each change it calls ``on_change`` (the evaluator's
deadline sync and the end of alerts whose rule or device is gone).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from fleetpulse.common.db import translated
from fleetpulse.common.errors import TransientError
from fleetpulse.common.rules.domain import (
    InvalidRuleError,
    Rule,
    RulePlan,
    rule_from_catalog,
    severity_rank,
)
from fleetpulse.common.runtime import sleep_until_stopped

log = logging.getLogger(__name__)
DeviceKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    tags: Mapping[str, Any]
    active: bool = True
    attributes: Mapping[str, Any] = field(default_factory=dict)
    """Per-device values rules compare to (``threshold_from: "attributes.<key>"``)."""


class Catalog:
    """Which rules select which device; answers are cached until the next replace."""

    def __init__(
        self, rules: Iterable[Rule] = (), devices: Mapping[DeviceKey, DeviceInfo] | None = None
    ) -> None:
        self._rules: dict[str, list[Rule]] = {}
        self._known: dict[tuple[str, str], Rule] = {}
        self._devices: dict[DeviceKey, DeviceInfo] = {}
        self._selected: dict[DeviceKey, list[Rule]] = {}
        self._plans: dict[DeviceKey, RulePlan] = {}
        self.replace(rules=rules, devices=devices or {})

    def replace(
        self,
        *,
        rules: Iterable[Rule] | None = None,
        devices: Mapping[DeviceKey, DeviceInfo] | None = None,
        disabled: Iterable[Rule] = (),
    ) -> None:
        """New rules (the enabled ones; ``disabled`` are only remembered) and/or devices."""
        if rules is not None:
            by_tenant: dict[str, list[Rule]] = {}
            for rule in sorted(rules, key=lambda r: (severity_rank(r.severity), r.rule_id)):
                by_tenant.setdefault(rule.tenant_id, []).append(rule)
            self._rules = by_tenant
            self._known = {(r.tenant_id, r.rule_id): r for r in disabled}
            for tenant_rules in by_tenant.values():
                self._known |= {(r.tenant_id, r.rule_id): r for r in tenant_rules}
        if devices is not None:
            self._devices = dict(devices)
        self._selected = {}
        self._plans = {}

    def rules_for(self, key: DeviceKey) -> list[Rule]:
        """The enabled rules of the device's tenant whose selector matches its tags, most severe
        first; none for a decommissioned device. An unknown device has no tags (yet)."""
        selected = self._selected.get(key)
        if selected is None:
            info = self._devices.get(key, DeviceInfo({}))
            rules = self._rules.get(key[0], []) if info.active else []
            selected = self._selected[key] = [r for r in rules if r.selects(info.tags)]
        return selected

    def plan_for(self, key: DeviceKey) -> RulePlan:
        """:meth:`rules_for` arranged for evaluation (cached; devices with the same rules share
        one plan)."""
        plan = self._plans.get(key)
        if plan is None:
            info = self._devices.get(key)
            attributes = info.attributes if info is not None else {}
            plan = self._plans[key] = RulePlan.of(self.rules_for(key), attributes)
        return plan

    def known_rule(self, tenant_id: str, rule_id: str) -> Rule | None:
        """The rule, enabled or disabled; ``None`` when it does not exist (deleted)."""
        return self._known.get((tenant_id, rule_id))

    def enabled(self, rule: Rule) -> bool:
        return any(r is rule for r in self._rules.get(rule.tenant_id, []))

    def device(self, key: DeviceKey) -> DeviceInfo | None:
        """The device's tags and status; ``None`` when it is not registered."""
        return self._devices.get(key)

    def selects(self, key: DeviceKey, rule_id: str) -> Rule | None:
        return next((r for r in self.rules_for(key) if r.rule_id == rule_id), None)


_RULES_FINGERPRINT = "SELECT count(*), coalesce(sum(hashtextextended(tenant_id || '/' || rule_id || '/' || version || '/' || enabled::text, 0)), 0) FROM rules"
_DEVICES_FINGERPRINT = "SELECT count(*), coalesce(sum(hashtextextended(tenant_id || '/' || device_id || '/' || version, 0)), 0) FROM devices"


class PostgresCatalogSource:
    """Keeps a :class:`Catalog` in step with the ``rules`` and ``devices`` projections."""

    def __init__(self, pool: asyncpg.Pool, catalog: Catalog) -> None:
        self._pool = pool
        self._catalog = catalog
        self._fingerprints: dict[str, tuple[int, int]] = {}

    async def refresh(self) -> bool:
        """Reload what changed since the last call; True if anything did."""
        rules_changed = await self._changed("rules", _RULES_FINGERPRINT)
        devices_changed = await self._changed("devices", _DEVICES_FINGERPRINT)
        if rules_changed:
            enabled, disabled = await self._load_rules()
            self._catalog.replace(rules=enabled, disabled=disabled)
        if devices_changed:
            self._catalog.replace(devices=await self._load_devices())
        return rules_changed or devices_changed

    async def run(
        self,
        stop: asyncio.Event,
        refresh_s: float = 1.0,
        on_change: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        """Refresh every ``refresh_s`` until ``stop``; ``on_change`` runs after a change (and
        again on the next round while it keeps failing)."""
        pending = False
        while not stop.is_set():
            try:
                with translated:
                    pending = await self.refresh() or pending
                    if pending and on_change is not None:
                        await on_change()
                        pending = False
            except TransientError as exc:
                error = type(exc.__cause__ or exc).__name__
                log.warning("catalog refresh failed; retrying", extra={"error": error})
            await sleep_until_stopped(stop, refresh_s)

    async def _changed(self, name: str, query: str) -> bool:
        row = await self._pool.fetchrow(query)
        fingerprint = (int(row[0]), int(row[1]))
        if self._fingerprints.get(name) == fingerprint:
            return False
        self._fingerprints[name] = fingerprint
        return True

    async def _load_rules(self) -> tuple[list[Rule], list[Rule]]:
        """The enabled rules and the disabled ones."""
        rows = await self._pool.fetch(
            "SELECT tenant_id, rule_id, name, kind, severity, definition, device_selector, version,"
            " enabled FROM rules"
        )
        rules: list[Rule] = []
        disabled: list[Rule] = []
        for row in rows:
            fields = dict(row)
            target = rules if fields.pop("enabled") else disabled
            try:
                target.append(rule_from_catalog(**fields))
            except InvalidRuleError as exc:
                log.warning(
                    "rule skipped",
                    extra={
                        "tenant_id": row["tenant_id"],
                        "rule_id": row["rule_id"],
                        "error": str(exc),
                    },
                )
        return rules, disabled

    async def _load_devices(self) -> dict[DeviceKey, DeviceInfo]:
        rows = await self._pool.fetch(
            "SELECT tenant_id, device_id, tags, status, attributes FROM devices"
        )
        return {
            (r["tenant_id"], r["device_id"]): DeviceInfo(
                r["tags"] or {}, r["status"] == "active", r["attributes"] or {}
            )
            for r in rows
        }
