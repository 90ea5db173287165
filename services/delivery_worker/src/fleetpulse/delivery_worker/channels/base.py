"""The ``Channel`` port: send one notification once, report what happened, never raise."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fleetpulse.common.templates import MAX_OUTPUT, render
from fleetpulse.delivery_worker.retry import AttemptResult


@dataclass(frozen=True, slots=True)
class Notification:
    """One delivery as a channel sees it. ``message_id`` is the same on every attempt."""

    message_id: str
    tenant_id: str
    integration_id: str
    config: Mapping[str, Any]
    payload: Mapping[str, Any]
    secret: str | None = None


class Channel(Protocol):
    async def send(self, notification: Notification) -> AttemptResult: ...

    async def close(self) -> None: ...


def subject_line(payload: Mapping[str, Any], template: str | None = None) -> str:
    """One header-safe line: control characters (CR, LF, ...) in names become spaces. With
    ``template`` (a Jinja2 source), the line is rendered from it
    (:class:`NotificationTemplateError` if it cannot be)."""
    if template is not None:
        line = render(template, payload, max_chars=MAX_OUTPUT["subject"])
    else:
        data = payload.get("data") or {}
        status = "RESOLVED" if data.get("status") == "resolved" else "FIRING"
        line = (
            f"[FleetPulse] {status} {data.get('severity', '')} {data.get('rule_name') or data.get('rule_id', '')}"
            f" on {data.get('device_id', '?')}"
        )
    return " ".join(_CONTROLS.sub(" ", line).split())


def templates_of(config: Mapping[str, Any]) -> Mapping[str, str]:
    """The integration's ``config.templates`` (empty when it has none)."""
    templates = config.get("templates")
    return templates if isinstance(templates, Mapping) else {}


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
