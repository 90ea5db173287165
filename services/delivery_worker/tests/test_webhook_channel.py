"""WebhookChannel against real loopback receivers: headers, signature, status handling, SSRF."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from fleetpulse.common.webhooks import generate_secret, verify
from fleetpulse.delivery_worker.channels.base import Notification
from fleetpulse.delivery_worker.channels.webhook import WebhookChannel

SECRET = generate_secret()
PAYLOAD = {"type": "alert.opened", "timestamp": "2030-01-01T00:00:00+00:00", "data": {"x": "é"}}


@pytest_asyncio.fixture
async def channel() -> AsyncIterator[WebhookChannel]:
    channel = WebhookChannel(allow_private=True, timeout_s=1.0)
    yield channel
    await channel.close()


def notification(url: str, **config: Any) -> Notification:
    return Notification("dlv_1", "t1", "i1", {"url": url, **config}, PAYLOAD, SECRET)


async def test_signed_standard_webhook_with_custom_headers(
    channel: WebhookChannel, receiver_factory: Callable[..., Any]
) -> None:
    receiver = await receiver_factory()
    result = await channel.send(
        notification(
            receiver.url,
            headers={"X-Team": "ops", "webhook-id": "forged", "Content-Type": "text/plain"},
        )
    )
    assert result.ok
    assert result.status_code == 204
    got = receiver.received[0]
    verify(SECRET, got.headers, got.body)
    assert got.headers["webhook-id"] == "dlv_1"
    assert got.headers["X-Team"] == "ops"
    assert got.headers["Content-Type"] == "application/json"
    assert (
        got.body.decode()
        == '{"type":"alert.opened","timestamp":"2030-01-01T00:00:00+00:00","data":{"x":"é"}}'
    )


@pytest.mark.parametrize(
    ("status", "ok"),
    [(200, True), (202, True), (299, True), (400, False), (500, False), (302, False), (301, False)],
)
async def test_only_2xx_is_success_and_redirects_are_not_followed(
    channel: WebhookChannel, receiver_factory: Callable[..., Any], status: int, ok: bool
) -> None:
    target = await receiver_factory()
    receiver = await receiver_factory(default=(status, {"Location": target.url}))
    result = await channel.send(notification(receiver.url))
    assert result.ok is ok
    assert result.status_code == status
    assert target.received == []
    # positive control: the redirect target does receive what is sent to it directly
    assert (await channel.send(notification(target.url))).ok
    assert len(target.received) == 1


async def test_retry_after_and_gone(
    channel: WebhookChannel, receiver_factory: Callable[..., Any]
) -> None:
    receiver = await receiver_factory(answers=[(429, {"Retry-After": "7"}), (410, {})])
    throttled = await channel.send(notification(receiver.url))
    assert (throttled.status_code, throttled.retry_after_s, throttled.endpoint_failure) == (
        429,
        7,
        True,
    )
    gone = await channel.send(notification(receiver.url))
    assert gone.gone
    assert not gone.endpoint_failure


async def test_timeout_and_refused_connection_are_endpoint_failures(
    channel: WebhookChannel, receiver_factory: Callable[..., Any]
) -> None:
    receiver = await receiver_factory(default=3.0)
    slow = await channel.send(notification(receiver.url))
    assert (slow.ok, slow.error, slow.endpoint_failure) == (False, "timeout", True)
    assert 900 <= slow.latency_ms < 2500
    from fleetpulse.testing.ports import free_port

    refused = await channel.send(notification(f"http://127.0.0.1:{free_port()}/"))
    assert refused.endpoint_failure
    assert "Connect" in (refused.error or "")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "169.254.169.254",
        "10.0.0.8",
        "[::ffff:127.0.0.1]",
        "[fd00::1]",
        "0.0.0.0",
    ],
)
async def test_private_destinations_are_refused_by_default(
    receiver_factory: Callable[..., Any], host: str
) -> None:
    receiver = await receiver_factory()
    channel = WebhookChannel(allow_private=False, timeout_s=1.0)
    try:
        result = await channel.send(notification(f"http://{host}:{receiver.port}/hook"))
    finally:
        await channel.close()
    assert result.permanent
    assert "refused destination" in (result.error or "")
    assert receiver.received == []
    # positive control: the receiver is reachable; allowing private destinations reaches it
    allowed = WebhookChannel(allow_private=True, timeout_s=1.0)
    try:
        assert (await allowed.send(notification(f"http://127.0.0.1:{receiver.port}/hook"))).ok
    finally:
        await allowed.close()
    assert len(receiver.received) == 1
