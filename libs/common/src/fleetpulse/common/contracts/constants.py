"""Contract constants shared by every service: id and metric-name patterns, severities, the open
alert statuses and the alert fingerprint. One definition each; everything else imports them."""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal

#: Tenant, device, rule, route ... ids (MQTT topic levels, stream names, URL path segments).
ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
#: Metric names (telemetry keys, rule metrics, export column names).
METRIC_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"


class Severity(StrEnum):
    """Alert severities, declared most severe first: that is THE order (:func:`severity_rank`)."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INFO = "info"


SeverityName = Literal["critical", "major", "minor", "warning", "info"]
#: Most severe first.
SEVERITIES: Final = tuple(s.value for s in Severity)
_RANK: Final = {name: rank for rank, name in enumerate(SEVERITIES)}


def severity_rank(severity: str) -> int:
    """0 for ``critical`` up to 4 for ``info``: a lower rank is more severe (ValueError if unknown)."""
    try:
        return _RANK[severity]
    except KeyError:
        raise ValueError(f"unknown severity {severity!r}") from None


def severity_at_least(severity: str, minimum: str) -> bool:
    """``severity`` is ``minimum`` or more severe; an unknown one of either never is."""
    rank, bound = _RANK.get(severity), _RANK.get(minimum)
    return rank is not None and bound is not None and rank <= bound


#: Alert statuses that count as open (one open alert per fingerprint).
OPEN_STATUSES: Final = ("open", "acknowledged")


def fingerprint(tenant_id: str, rule_id: str, device_id: str) -> str:
    """The alert fingerprint: one open alert per (tenant, rule, device)."""
    return f"{tenant_id}:{rule_id}:{device_id}"


__all__ = [
    "ID_PATTERN",
    "METRIC_PATTERN",
    "OPEN_STATUSES",
    "SEVERITIES",
    "Severity",
    "SeverityName",
    "fingerprint",
    "severity_at_least",
    "severity_rank",
]
