"""Issue 13 item 6: a rule name with CR/LF (header injection) and a channel that raises.

A channel never raises out of ``send``; if one does anyway, the worker records a failed attempt
(``DeliveryAttempted`` with the error) and retries on schedule, like any other failure, instead
of letting the job end in the DLQ with no event.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from fleetpulse.common.crypto import SecretBox
from fleetpulse.delivery_worker.breaker import CircuitBreakers
from fleetpulse.delivery_worker.channels.base import Notification
from fleetpulse.delivery_worker.channels.email import EmailChannel, SmtpConfig
from fleetpulse.delivery_worker.retry import AttemptResult
from fleetpulse.delivery_worker.service import DeliveryWorker, Requeue
from fleetpulse.delivery_worker.store import PostgresDeliveryStore
from fleetpulse.testing.ports import free_port

pytestmark = pytest.mark.security
INJECTED = "hot\r\nBcc: attacker@evil.example\r\nX-Injected: 1"


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


async def test_a_name_with_crlf_cannot_add_headers_or_recipients() -> None:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    payload = {
        "type": "alert.opened",
        "data": {"severity": "critical", "rule_name": INJECTED, "device_id": "d1\n"},
    }
    try:
        channel = EmailChannel(SmtpConfig("127.0.0.1", port, starttls=False))
        result = await channel.send(
            Notification("dlv_1", "t1", "i1", {"to": ["ops@example.com"]}, payload)
        )
    finally:
        controller.stop()
    assert result.ok, result.error
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["ops@example.com"]
    content = envelope.content
    text = content.decode() if isinstance(content, bytes) else str(content)
    headers = text.split("\r\n\r\n", 1)[0] if "\r\n\r\n" in text else text.split("\n\n", 1)[0]
    assert "Subject: [FleetPulse] FIRING critical hot Bcc: attacker@evil.example" in headers
    assert "\nBcc:" not in headers
    assert "\nX-Injected:" not in headers


class RaisingChannel:
    def __init__(self) -> None:
        self.calls = 0

    async def send(self, notification: Notification) -> AttemptResult:
        self.calls += 1
        raise ValueError("Header values may not contain linefeed or carriage return characters")

    async def close(self) -> None:
        return None


async def test_a_channel_that_raises_is_a_failed_attempt_event(seeder: Any) -> None:
    integration = await seeder.integration(kind="email", to=["ops@example.com"])
    scheduled = await seeder.delivery(integration)
    channel = RaisingChannel()
    worker = DeliveryWorker(
        PostgresDeliveryStore(seeder.store),
        {"email": channel},
        SecretBox(seeder.key),
        CircuitBreakers(),
        rng=random.Random(1),
    )
    outcome = await worker.handle(scheduled)  # used to raise: the message went to the DLQ
    assert channel.calls == 1
    assert isinstance(outcome, Requeue)
    types = await seeder.stream_types(scheduled.data["delivery_id"])
    assert types == ["DeliveryScheduled", "DeliveryAttempted"]
    events = await seeder.store.read_stream(scheduled.stream_id)
    attempted = events[-1].data
    assert "linefeed" in str(attempted.get("error"))
