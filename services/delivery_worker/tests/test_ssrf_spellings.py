"""SSRF (issue 13 item 1, issue 12 item 14): every spelling of an internal host that the HTTP
client (aiohttp + yarl: IDNA/UTS46, WHATWG IPv4 forms) turns into one, against a real receiver
on loopback. With the guard on nothing arrives and the attempt is final; with
ALLOW_PRIVATE_WEBHOOKS the same URLs reach the receiver (the positive control)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from fleetpulse.common.ssrf import BlockedDestinationError, GuardedConnector
from fleetpulse.common.webhooks import generate_secret
from fleetpulse.delivery_worker.channels.base import Notification
from fleetpulse.delivery_worker.channels.webhook import WebhookChannel
from fleetpulse.delivery_worker.retry import Verdict, decide

pytestmark = pytest.mark.security

# Hosts that reach 127.0.0.1 (or ::1) through the client: the receiver listens there.
LOOPBACK_SPELLINGS = [
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # fullwidth digits (UTS46 maps them to ASCII)
    "127\u30020\u30020\u30021",  # ideographic full stop U+3002
    "127\uff0e0\uff0e0\uff0e1",  # fullwidth full stop U+FF0E
    "127\uff610\uff610\uff611",  # halfwidth ideographic full stop U+FF61
    "\u2460\u2461\u2466.0.0.1",  # circled digits
    "127.1",
    "2130706433",
    "0x7f.1",
    "0x7f000001",
    "0177.0.0.1",
    "0177.1",
    "017700000001",
    "0x7f.0x0.0x0.0x1",
    "127.000.000.001",
    "\U0001d7cf\U0001d7d0\U0001d7d5.0.0.1",  # mathematical bold digits
    "127.0.0.1.",  # trailing dot
    "[::ffff:127.0.0.1]",
    "[0:0:0:0:0:ffff:7f00:1]",
    "localhost",
    "LOCALHOST.",
    "\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3",  # circled letters: localhost
]
# Hosts that must be refused and can't be served in a test: refused before any connect.
OTHER_INTERNAL = [
    "169.254.169.254",
    "0xa9.0xfe.0xa9.0xfe",
    "2852039166",
    "169.254.43518",
    "[::ffff:169.254.169.254]",
    "\uff11\uff16\uff19.\uff12\uff15\uff14.\uff11\uff16\uff19.\uff12\uff15\uff14",
    "100.64.0.1",
    "10.1",
    "0.0.0.0",
    "0",
    "[::]",
    "[::1]",
    "[fd00::1]",
    "[::127.0.0.1]",  # IPv4-compatible
    "[64:ff9b::7f00:1]",  # NAT64
    "[2002:7f00:1::]",  # 6to4
    "a.localhost",
    "\uff41\uff42.localhost",
]
UNUSABLE = [
    "http://evil@127.0.0.1:{port}/hook",  # userinfo
    "http://user:pw@hooks.example.com/hook",
    "http://[fe80::1%25eth0]:{port}/hook",  # zone id
    "http://1.2.3.4.5/hook",
    "http://256.256.256.256/hook",
    "http://0x1ffffffff/hook",
    "ftp://hooks.example.com/hook",
    "http://127.0.0.1:80@hooks.example.com/hook",
    "http://127.0.0.1%09/hook",
    "http://localhost%00.example.com/hook",
    "http://%31%32%37.0.0.1/hook",
    "http://127.0.0.1:99999/hook",
]


def notification(url: str) -> Notification:
    payload = {"type": "alert.opened", "timestamp": "2030-01-01T00:00:00Z", "data": {}}
    return Notification("dlv_ssrf", "t1", "i1", {"url": url}, payload, generate_secret())


async def send(url: str, *, allow_private: bool) -> Any:
    channel = WebhookChannel(allow_private=allow_private, timeout_s=2.0)
    try:
        return await channel.send(notification(url))
    finally:
        await channel.close()


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_loopback_spellings_are_refused_and_final(
    receiver_factory: Callable[..., Any], host: str
) -> None:
    receiver = await receiver_factory()
    url = f"http://{host}:{receiver.port}/hook"
    refused = await send(url, allow_private=False)
    assert not refused.ok
    assert refused.permanent, refused.error
    assert "refused destination" in (refused.error or "")
    assert decide(refused, attempt=1).verdict is Verdict.ABANDON
    assert receiver.received == []
    if host.startswith("[") and "ffff" not in host:
        return
    allowed = await send(url, allow_private=True)  # positive control: the URL does reach it
    assert allowed.ok, allowed.error
    assert len(receiver.received) == 1


@pytest.mark.parametrize("host", OTHER_INTERNAL)
async def test_other_internal_spellings_are_refused(host: str) -> None:
    result = await send(f"http://{host}/hook", allow_private=False)
    assert result.permanent, result.error
    assert "refused destination" in (result.error or "")


@pytest.mark.parametrize("template", UNUSABLE)
async def test_a_url_no_client_can_use_is_final_not_retried(template: str) -> None:
    """Issue 12 item 14: these used to fail as transient errors and be retried for 28 hours."""
    for allow_private in (False, True):
        result = await send(template.format(port=1), allow_private=allow_private)
        assert result.permanent, result.error
        assert decide(result, attempt=1).verdict is Verdict.ABANDON


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0177.0.0.1", "0x7f.1"])
async def test_numeric_forms_are_normalised_when_private_hosts_are_allowed(
    receiver_factory: Callable[..., Any], host: str
) -> None:
    """aiohttp itself refuses non-canonical IPv4; we send to the WHATWG meaning (127.0.0.1)."""
    receiver = await receiver_factory()
    result = await send(f"http://{host}:{receiver.port}/hook", allow_private=True)
    assert result.ok, result.error


async def test_the_connector_checks_what_it_connects_to(
    receiver_factory: Callable[..., Any],
) -> None:
    """Below the URL check: the connection itself is refused for a name that resolves to
    loopback and for a literal, so no parser difference can get past it."""
    receiver = await receiver_factory()
    for host in ("localhost", "127.0.0.1", "[::ffff:7f00:1]"):
        url = f"http://{host}:{receiver.port}/hook"
        async with aiohttp.ClientSession(connector=GuardedConnector()) as session:
            with pytest.raises(BlockedDestinationError):
                await session.post(url, data=b"{}")
    assert receiver.received == []
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector()) as session,
        session.post(f"http://localhost:{receiver.port}/hook", data=b"{}") as resp,
    ):
        assert resp.status < 300  # positive control: an unguarded connector gets through
    assert len(receiver.received) == 1


async def test_redirects_to_private_addresses_are_not_followed(
    receiver_factory: Callable[..., Any],
) -> None:
    target = await receiver_factory()
    redirect = await receiver_factory(default=(307, {"Location": target.url}))
    result = await send(redirect.url, allow_private=True)
    assert (result.ok, result.status_code) == (False, 307)
    assert len(redirect.received) == 1  # positive control: the first hop was reached
    assert target.received == []


@pytest.mark.parametrize(
    ("header", "delay"),
    [("2.5", 2.5), ("0.5", 1.0), ("120", 120.0), ("99999999999.5", 12 * 3600.0)],
)
async def test_retry_after_with_fractional_seconds_is_honoured_and_capped(
    receiver_factory: Callable[..., Any], header: str, delay: float
) -> None:
    """Issue 12 item 15: ``Retry-After: 2.5`` used to be ignored (the schedule's 5 s instead)."""
    receiver = await receiver_factory(default=(503, {"Retry-After": header}))
    result = await send(receiver.url, allow_private=True)
    assert result.retry_after_s is not None
    decision = decide(result, attempt=1)
    assert decision.verdict is Verdict.RETRY
    assert decision.delay_s == pytest.approx(delay)


async def test_retry_after_as_an_http_date(receiver_factory: Callable[..., Any]) -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    receiver = await receiver_factory(default=(429, {"Retry-After": when}))
    result = await send(receiver.url, allow_private=True)
    assert 80 <= decide(result, attempt=1).delay_s <= 91


async def test_the_worker_abandons_an_internal_url_at_once(
    seeder: Any, receiver_factory: Callable[..., Any]
) -> None:
    """Through the worker, on PostgreSQL: one attempt, abandoned with the guard's reason (the
    integration was stored before the API refused such URLs), nothing reaches the receiver."""
    import random

    from fleetpulse.common.crypto import SecretBox
    from fleetpulse.delivery_worker.breaker import CircuitBreakers
    from fleetpulse.delivery_worker.service import DeadLetter, DeliveryWorker
    from fleetpulse.delivery_worker.store import PostgresDeliveryStore

    receiver = await receiver_factory()
    channel = WebhookChannel(allow_private=False, timeout_s=2.0)
    worker = DeliveryWorker(
        PostgresDeliveryStore(seeder.store),
        {"webhook": channel},
        SecretBox(seeder.key),
        CircuitBreakers(),
        rng=random.Random(1),
    )
    try:
        for host in ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.1", "0x7f.1"):
            integration = await seeder.integration(url=f"http://{host}:{receiver.port}/hook")
            scheduled = await seeder.delivery(integration)
            outcome = await worker.handle(scheduled)
            assert isinstance(outcome, DeadLetter)  # abandoned with an event, no retries
            events = await seeder.store.read_stream(scheduled.stream_id)
            assert [e.type for e in events] == [
                "DeliveryScheduled",
                "DeliveryAttempted",
                "DeliveryAbandoned",
            ]
            assert "loopback" in events[-1].data["reason"]
    finally:
        await channel.close()
    assert receiver.received == []
    # positive control: a worker whose channel allows private hosts reaches the same receiver
    allowing = WebhookChannel(allow_private=True, timeout_s=2.0)
    control = DeliveryWorker(
        PostgresDeliveryStore(seeder.store),
        {"webhook": allowing},
        SecretBox(seeder.key),
        CircuitBreakers(),
        rng=random.Random(1),
    )
    try:
        integration = await seeder.integration(url=f"http://127.1:{receiver.port}/hook")
        assert not isinstance(await control.handle(await seeder.delivery(integration)), DeadLetter)
    finally:
        await allowing.close()
    assert len(receiver.received) == 1
