"""The service as deployed: serve() with the Mosquitto backend, probes, a write, graceful stop."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from fleetpulse.common.messaging import declare_queue, declare_topic, queue_names, subscribe_queue
from fleetpulse.common.runtime import ServiceContext
from fleetpulse.provision_api.bootstrap import serve
from fleetpulse.testing.mosquitto import MosquittoBroker
from fleetpulse.testing.moto import receive_all
from fleetpulse.testing.ports import free_port

from .conftest import TestIssuer, make_settings

pytestmark = pytest.mark.slow


async def test_serve_answers_probes_writes_and_stops(
    database_url: str,
    oidc: TestIssuer,
    mosquitto: MosquittoBroker,
    moto_server: str,
    queue_prefix: str,
    sqs_client: Any,
    sns_client: Any,
) -> None:
    port = free_port()
    settings = make_settings(
        database_url,
        oidc,
        api_host="127.0.0.1",
        api_port=port,
        mqtt_url=mosquitto.admin_url,
        outbox_relay=True,
        auto_create=True,
        aws_endpoint_url=moto_server,
        queue_prefix=queue_prefix,
    )
    topic = await declare_topic(sns_client, queue_names(queue_prefix).domain_events)
    queue = await declare_queue(sqs_client, f"{queue_prefix}audit")
    await subscribe_queue(sns_client, sqs_client, topic, queue, {"type": ["TenantCreated"]})
    context = ServiceContext(name="fleetpulse-provision-api", settings=settings)
    task = asyncio.create_task(serve(context))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(200):
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        assert (await client.get("/readyz")).json()["status"] == "ready"
        assert await context.health.failing_checks() == []
        created = await client.post(
            "/api/v1/tenants",
            json={"tenant_id": "acme", "name": "A"},
            headers=oidc.headers(None, ("platform-admin",)),
        )
        assert created.status_code == 201
        device = await client.post(
            "/api/v1/devices", json={"device_id": "svc-1"}, headers=oidc.headers()
        )
        assert device.status_code == 201, device.text
        schema = (await client.get("/openapi.json")).json()
        assert "/api/v1/devices/{device_id}/rotate-credentials" in schema["paths"]
    published = await receive_all(sqs_client, queue.url, expected=1, timeout_s=20)
    assert [json.loads(m["Body"])["type"] for m in published] == ["TenantCreated"]
    context.shutdown.set()
    await asyncio.wait_for(task, timeout=30)
