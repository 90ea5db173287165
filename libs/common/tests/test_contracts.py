"""The contract structs give back exactly the stored JSON (no data migration), the registry knows
every event, and the severity order is one."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fleetpulse.common.contracts import (
    EVENT_TYPES,
    SEVERITIES,
    UNSET,
    AlertOpened,
    AlertResolved,
    Event,
    UnknownEventTypeError,
    decode_event,
    severity_at_least,
    severity_rank,
)
from fleetpulse.common.eventstore import NewEvent

T0 = "2026-01-01T00:00:00+00:00"
MATCHER = {"name": "severity", "type": "=", "value": "major"}
#: Representative stored payloads, as the producers write them and the existing tests append.
PAYLOADS: list[tuple[str, dict[str, Any]]] = [
    ("TenantCreated", {"tenant_id": "acme", "name": "Acme", "created_at": "2026-01-01T00:00:00Z"}),
    ("TenantCreated", {"tenant_id": "acme", "name": "Acme"}),
    ("DeviceRegistered", {"device_id": "d1", "name": None, "tags": {"site": "s1"},
                          "registered_at": T0}),
    ("DeviceRegistered", {"device_id": "d1", "name": "t", "tags": {}, "registered_at": T0,
                          "profile_id": "prof_1"}),
    ("DeviceRegistered", {"device_id": "d1", "tags": {"a": "b"}}),
    ("DeviceCredentialsIssued", {"device_id": "d1", "username": "acme.d1",
                                 "client_id": "acme.d1", "credentials_version": 1}),
    ("DeviceCredentialsRotated", {"device_id": "d1", "credentials_version": 2}),
    ("DeviceDecommissioned", {"device_id": "d1", "decommissioned_at": T0}),
    ("DeviceUpdated", {"device_id": "d1", "name": None}),
    ("DeviceUpdated", {"device_id": "d1", "tags": None, "attributes": None}),
    ("DeviceUpdated", {"device_id": "d1", "tags": {"a": "b"}, "attributes": {"fw": {"v": 2}}}),
    ("ProvisioningProfileCreated", {"profile_id": "p1", "name": "line", "provision_key": "pk_1",
                                    "secret_hash": "sha256:x", "device_limit": None,
                                    "expires_at": None, "tags": {}}),
    ("ProvisioningProfileClaimed", {"profile_id": "p1", "device_id": "d1", "claimed_at": T0}),
    ("ProvisioningProfileRevoked", {"profile_id": "p1"}),
    ("RuleCreated", {"rule_id": "r1", "name": "hot", "kind": "threshold", "severity": "major",
                     "metric": "temp_c", "operator": "gt", "threshold": 80, "duration_s": 0,
                     "device_selector": {"tags": {}}, "enabled": True}),
    ("RuleUpdated", {"rule_id": "r1", "name": "hot", "kind": "threshold", "severity": "minor",
                     "metric": "temp_c", "operator": "gt", "threshold": 80.5,
                     "clear_threshold": 70.0, "duration_s": 5, "device_selector": {"tags": {}},
                     "schedule": {"timezone": "UTC", "windows": []}, "enabled": False}),
    ("RuleCreated", {"rule_id": "r2", "name": "quiet", "kind": "no_data", "severity": "info",
                     "timeout_s": 60, "device_selector": {"tags": {"a": "b"}}}),
    ("RuleCreated", {"rule_id": "r3", "name": "c", "kind": "condition", "severity": "critical",
                     "all": [{"metric": "t", "operator": "gt", "threshold": 1}], "duration_s": 0,
                     "device_selector": {"tags": {}}, "enabled": True}),
    ("RuleDeleted", {"rule_id": "r1"}),
    ("IntegrationCreated", {"integration_id": "i1", "name": "hook", "kind": "webhook",
                            "config": {"url": "https://x"}, "secret_sealed": "v1:abc"}),
    ("IntegrationCreated", {"integration_id": "i1", "name": "i1", "kind": "email",
                            "config": {"to": ["a@b"]}, "secret_sealed": None}),
    ("IntegrationUpdated", {"integration_id": "i1", "name": "hook", "kind": "webhook",
                            "config": {"url": "https://x", "headers": {"X-A": "sealed"}}}),
    ("IntegrationDisabled", {"integration_id": "i1", "reason": "410 Gone"}),
    ("RouteCreated", {"route_id": "rt1", "name": "all", "integration_id": "i1",
                      "match": {"severity_at_least": "major"}, "group_by": ["rule_id"],
                      "group_wait_s": 0, "group_interval_s": None, "repeat_interval_s": None}),
    ("RouteUpdated", {"route_id": "rt1", "name": "all", "integration_id": "i1", "match": {},
                      "group_by": [], "group_wait_s": 30, "group_interval_s": 300,
                      "repeat_interval_s": 3600}),
    ("RouteDeleted", {"route_id": "rt1"}),
    ("SilenceCreated", {"silence_id": "s1", "matchers": [MATCHER], "starts_at": T0,
                        "ends_at": "2026-01-02T00:00:00Z", "created_by": "ops", "comment": ""}),
    ("SilenceExpired", {"silence_id": "s1", "ends_at": T0, "expired_by": "ops"}),
    ("InhibitRuleCreated", {"inhibit_rule_id": "inh_1", "name": "gw", "source_matchers": [MATCHER],
                            "target_matchers": [MATCHER], "equal": ["device_id"],
                            "created_by": "ops"}),
    ("InhibitRuleDeleted", {"inhibit_rule_id": "inh_1"}),
    ("AlertOpened", {"alert_id": "a1", "fingerprint": "acme:r1:d1", "rule_id": "r1",
                     "rule_name": "hot", "device_id": "d1", "severity": "major",
                     "opened_at": T0, "metric": "temp_c", "value": 41.5, "threshold": 30,
                     "reason": "temp_c gt 30"}),
    ("AlertOpened", {"alert_id": "a1", "fingerprint": "acme:r1:d1", "rule_id": "r1",
                     "rule_name": "hot", "device_id": "d1", "severity": "critical",
                     "opened_at": T0, "reason": None, "kind": "threshold", "metric": "on",
                     "value": True, "threshold": 1, "operator": "eq"}),
    ("AlertOpened", {"alert_id": "a2", "fingerprint": "acme:r3:d1", "rule_id": "r3",
                     "rule_name": "c", "device_id": "d1", "severity": "minor", "opened_at": T0,
                     "reason": "all", "kind": "condition", "values": {"t gt 1": 2}}),
    ("AlertOpened", {"alert_id": "a3", "fingerprint": "acme:r2:d1", "rule_id": "r2",
                     "rule_name": "quiet", "device_id": "d1", "severity": "info",
                     "opened_at": T0, "reason": "no data for 60s", "kind": "no_data"}),
    ("AlertAcknowledged", {"alert_id": "a1", "acknowledged_at": T0, "by": "ops"}),
    ("AlertSilenced", {"alert_id": "a1", "until": T0, "by": "ops"}),
    ("AlertResolved", {"alert_id": "a1", "resolved_at": "2026-01-01T00:07:00+00:00"}),
    ("AlertResolved", {"alert_id": "a1", "resolved_at": T0, "fingerprint": "acme:r1:d1",
                       "rule_id": "r1", "device_id": "d1", "severity": "major", "value": 12,
                       "reason": "rule_deleted"}),
    ("AlertResolved", {"alert_id": "a2", "resolved_at": T0, "fingerprint": "acme:r3:d1",
                       "rule_id": "r3", "device_id": "d1", "severity": "minor",
                       "values": {"t gt 1": 0.5}}),
    ("AlertClosed", {"alert_id": "a1", "closed_at": T0, "by": "ops"}),
    ("DeliveryScheduled", {"delivery_id": "d1", "alert_id": "a1", "alert_event_id": "e1",
                           "alert_event_type": "AlertOpened", "integration_id": "i1",
                           "route_id": "r1", "notification_type": "firing",
                           "payload": {"type": "alert.opened", "data": {"repeat": False}}}),
    ("DeliveryScheduled", {"delivery_id": "d2", "alert_id": "a1", "alert_event_id": "e2",
                           "alert_event_type": "AlertResolved", "integration_id": "i1",
                           "route_id": None, "notification_type": "resolved", "payload": {},
                           "not_before": T0}),
    ("DeliveryAttempted", {"delivery_id": "d1", "attempt": 1, "status_code": 500,
                           "latency_ms": 12.5, "error": "HTTP 500", "next_attempt_at": T0,
                           "attempted_at": T0}),
    ("DeliveryAttempted", {"delivery_id": "d1", "attempt": 2, "status_code": None,
                           "latency_ms": None, "error": None, "next_attempt_at": None,
                           "attempted_at": T0}),
    ("DeliverySucceeded", {"delivery_id": "d1", "attempt": 2}),
    ("DeliverySucceeded", {"delivery_id": "d1", "attempt": 2, "completed_at": T0}),
    ("DeliveryAbandoned", {"delivery_id": "d1", "attempts": 1, "reason": "gone"}),
    ("DeliveryAbandoned", {"delivery_id": "d1", "attempts": 5, "reason": "HTTP 500",
                           "completed_at": T0}),
]  # fmt: skip


@pytest.mark.parametrize(("type_", "data"), PAYLOADS, ids=[f"{t}-{i}" for i, (t, _) in
                                                           enumerate(PAYLOADS)])  # fmt: skip
def test_decoding_and_encoding_gives_back_the_stored_json(type_: str, data: dict[str, Any]) -> None:
    event = decode_event(type_, data)
    assert type_ == type(event).TYPE
    stored = event.to_data()
    assert stored == data
    # the same JSON text, so ints stay ints and null stays null
    assert msgspec.json.encode(stored, order="sorted") == msgspec.json.encode(data, order="sorted")
    assert NewEvent.of(event).data == data and NewEvent.of(event).type == type_


def test_every_registered_event_has_a_payload_here() -> None:
    assert {t for t, _ in PAYLOADS} == set(EVENT_TYPES)
    assert all(name == cls.TYPE == cls.__name__ for name, cls in EVENT_TYPES.items())


def test_unset_is_left_out_and_none_is_written() -> None:
    base: dict[str, Any] = {"alert_id": "a", "fingerprint": "t:r:d", "rule_id": "r",
                            "device_id": "d"}  # fmt: skip
    event = AlertOpened(**base, severity="info", reason=None)
    assert event.to_data() == {**base, "severity": "info", "reason": None}
    assert AlertResolved(alert_id="a", value=UNSET).to_data() == {"alert_id": "a"}


def test_unknown_types_and_malformed_data_are_refused() -> None:
    with pytest.raises(UnknownEventTypeError):
        decode_event("Bumped", {})
    with pytest.raises(msgspec.ValidationError):
        decode_event("AlertOpened", {"alert_id": "a1"})
    with pytest.raises(msgspec.ValidationError):
        decode_event("DeliveryAttempted", {"delivery_id": "d", "attempt": "1"})


def test_events_are_frozen() -> None:
    event = decode_event("RuleDeleted", {"rule_id": "r1"})
    assert isinstance(event, Event)
    with pytest.raises(AttributeError):
        event.rule_id = "r2"  # type: ignore[attr-defined]


def test_one_severity_order_most_severe_first() -> None:
    assert SEVERITIES == ("critical", "major", "minor", "warning", "info")
    assert [severity_rank(s) for s in SEVERITIES] == [0, 1, 2, 3, 4]
    assert severity_at_least("critical", "major") and severity_at_least("major", "major")
    assert not severity_at_least("minor", "major") and not severity_at_least("info", "warning")
    assert not severity_at_least("bogus", "info") and not severity_at_least("critical", "bogus")
    with pytest.raises(ValueError, match="unknown severity"):
        severity_rank("bogus")
