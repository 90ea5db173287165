"""Pure parts: decisions, cursors, rate limits (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetpulse.provision_api import domain
from fleetpulse.provision_api.pagination import decode_cursor, encode_cursor
from fleetpulse.provision_api.ratelimit import InMemoryRateLimiter

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_if_match_is_checked_only_when_given() -> None:
    assert domain.expect_version(None, 4) == 4
    assert domain.expect_version(4, 4) == 4
    with pytest.raises(domain.StaleVersionError):
        domain.expect_version(3, 4)


@pytest.mark.parametrize(
    ("status", "allowed"),
    [("open", True), ("acknowledged", False), ("resolved", False), ("closed", False)],
)
def test_only_open_alerts_are_acknowledged(status: str, allowed: bool) -> None:
    if allowed:
        assert domain.acknowledge("a1", status, "user:u", NOW).type == "AlertAcknowledged"
    else:
        with pytest.raises(domain.ConflictError):
            domain.acknowledge("a1", status, "user:u", NOW)


def test_silence_until_is_now_plus_duration() -> None:
    event = domain.silence("a1", "acknowledged", "user:u", NOW, 3600)
    assert event.data == {"alert_id": "a1", "until": "2026-01-01T01:00:00Z", "by": "user:u"}
    with pytest.raises(domain.ConflictError):
        domain.close("a1", "closed", "user:u", NOW)


def _profile(**changes: object) -> domain.ProfileState:
    values: dict[str, object] = {
        "profile_id": "p",
        "status": "active",
        "device_limit": 2,
        "devices_claimed": 1,
        "expires_at": NOW + timedelta(days=1),
        "secret_hash": domain.hash_secret("s3cret"),
    }
    values.update(changes)
    return domain.ProfileState(**values)  # type: ignore[arg-type]


def test_claim_checks() -> None:
    domain.check_claim(_profile(), "s3cret", NOW)
    with pytest.raises(domain.UnauthenticatedError):
        domain.check_claim(_profile(), "wrong", NOW)
    for changed in ({"status": "revoked"}, {"devices_claimed": 2}, {"expires_at": NOW}):
        with pytest.raises(domain.ForbiddenError):
            domain.check_claim(_profile(**changed), "s3cret", NOW)


def test_device_events_carry_no_password() -> None:
    issued = domain.credentials_issued("acme", "d1", 1)
    assert issued.data == {
        "device_id": "d1",
        "username": "acme.d1",
        "client_id": "acme.d1",
        "credentials_version": 1,
    }


def test_cursors_round_trip_and_reject_tampering() -> None:
    cursor = encode_cursor(NOW, "a1")
    assert decode_cursor(cursor, datetime, str) == [NOW, "a1"]
    assert decode_cursor(None, str) is None
    for bad in ("!!!", encode_cursor("x"), encode_cursor(1, 2), encode_cursor("a\x00")):
        with pytest.raises(domain.InvalidError) as info:
            decode_cursor(bad, datetime, str)
        assert info.value.field == "query.cursor"


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = InMemoryRateLimiter(2, clock=lambda: now[0])
    assert limiter.take_now("ip") == 0 and limiter.take_now("ip") == 0
    assert limiter.take_now("ip") == pytest.approx(30.0)
    assert limiter.take_now("other") == 0
    now[0] = 30.0
    assert limiter.take_now("ip") == 0
