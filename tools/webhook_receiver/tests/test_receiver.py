"""The sample receiver accepts signed webhooks and refuses everything else."""

from __future__ import annotations

import time

import orjson
from aiohttp.test_utils import TestClient, TestServer

from fleetpulse.common.webhooks import generate_secret, signature_headers
from fleetpulse.webhook_receiver.app import Receiver

SECRET = generate_secret()


async def test_verifies_raw_bytes_and_flags_duplicates(capsys) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver(SECRET)
    body = orjson.dumps({"type": "alert.opened", "data": {"alert_id": "a1"}})
    async with TestClient(TestServer(receiver.app())) as client:
        for _ in range(2):
            headers = signature_headers(SECRET, "dlv_1", int(time.time()), body)
            assert (await client.post("/hook", data=body, headers=headers)).status == 204
        tampered = signature_headers(SECRET, "dlv_2", int(time.time()), body)
        assert (await client.post("/hook", data=body + b" ", headers=tampered)).status == 401
        stale = signature_headers(SECRET, "dlv_3", int(time.time()) - 3600, body)
        assert (await client.post("/hook", data=body, headers=stale)).status == 401
        assert (await client.post("/hook", data=body)).status == 401
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["duplicate"] for line in lines] == [False, True]
    assert lines[0]["payload"]["data"]["alert_id"] == "a1"
    assert (receiver.accepted, receiver.rejected) == (2, 3)
