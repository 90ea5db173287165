"""The smoke check's receiver accepts only authentic Standard Webhooks."""

from __future__ import annotations

import json
import time

import httpx

from fleetpulse.common.webhooks import generate_secret, signature_headers
from fleetpulse.smoke.receiver import WebhookReceiver


async def test_receiver_verifies_signatures_and_finds_by_type_and_alert() -> None:
    secret = generate_secret()
    receiver = WebhookReceiver(secret=secret)
    await receiver.start()
    try:
        body = json.dumps({"type": "alert.opened", "data": {"alert_id": "a1"}}).encode()
        good = signature_headers(secret, "msg_1", int(time.time()), body)
        bad = signature_headers(generate_secret(), "msg_2", int(time.time()), body)
        async with httpx.AsyncClient() as client:
            assert (await client.post(receiver.url, content=body, headers=good)).status_code == 204
            assert (await client.post(receiver.url, content=body, headers=bad)).status_code == 401
        assert [w.verified for w in receiver.received] == [True, False]
        found = receiver.find("alert.opened", "a1")
        assert found is not None and found.verified and found.webhook_id == "msg_1"
        assert receiver.find("alert.opened", "other") is None
        assert receiver.find("alert.resolved", "a1") is None
    finally:
        await receiver.stop()
