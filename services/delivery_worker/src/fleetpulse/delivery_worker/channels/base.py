"""The ``Channel`` port: send one notification once, report what happened, never raise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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


def subject_line(payload: Mapping[str, Any]) -> str:
    data = payload.get("data") or {}
    status = "RESOLVED" if data.get("status") == "resolved" else "FIRING"
    return (
        f"[FleetPulse] {status} {data.get('severity', '')} {data.get('rule_name') or data.get('rule_id', '')}"
        f" on {data.get('device_id', '?')}"
    ).replace("  ", " ")
