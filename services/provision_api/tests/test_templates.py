"""Notification templates through the API to real receivers: an email integration's subject
and body, a webhook's data.summary, rendered by the delivery worker (real aiosmtpd, real HTTP
receiver); bad templates are 422 at create time; a template failing at send time is a failed
attempt (the delivery is abandoned with the reason), never an exception."""

from __future__ import annotations

import email
import random
from collections.abc import AsyncIterator
from email.message import Message
from typing import Any

import httpx
import orjson
import pytest_asyncio
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from fleetpulse.common.crypto import SecretBox
from fleetpulse.common.eventstore import PostgresEventStore, RecordedEvent
from fleetpulse.delivery_worker.breaker import CircuitBreakers
from fleetpulse.delivery_worker.channels.email import EmailChannel, SmtpConfig
from fleetpulse.delivery_worker.channels.webhook import WebhookChannel
from fleetpulse.delivery_worker.service import DeliveryWorker
from fleetpulse.delivery_worker.store import PostgresDeliveryStore
from fleetpulse.dispatcher.service import Dispatcher
from fleetpulse.dispatcher.store import PostgresDispatchStore
from fleetpulse.provision_api.settings import Settings
from fleetpulse.testing.ports import free_port

from .conftest import TestIssuer, make_settings
from .test_silences import _open

SUBJECT = "[{{ alert.severity | upper }}] {{ alert.rule_name }} on {{ alert.device_id }}"
BODY = "{{ alert.reason }}: {{ alert.value }} (limit {{ alert.threshold }})"
HTML = "<p>{{ alert.reason }} on <b>{{ alert.device_id }}</b></p>"
SUMMARY = "{{ alert.device_id }} {{ alert.status }}: {{ alert.reason }}"


@pytest_asyncio.fixture
async def settings(database_url: str, oidc: TestIssuer) -> Settings:
    return make_settings(database_url, oidc, allow_private_webhooks=True)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.messages.append(email.message_from_bytes(bytes(envelope.content)))
        return "250 OK"


@pytest_asyncio.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
    bodies: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(orjson.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield bodies, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


async def _deliver(
    store: PostgresEventStore, settings: Settings, smtp_port: int
) -> list[RecordedEvent]:
    """Run the delivery worker over every scheduled delivery once."""
    webhook = WebhookChannel(allow_private=True, timeout_s=5.0)
    worker = DeliveryWorker(
        PostgresDeliveryStore(store),
        {
            "webhook": webhook,
            "email": EmailChannel(SmtpConfig("127.0.0.1", smtp_port, starttls=False)),
        },
        SecretBox(settings.webhook_encryption_key.get_secret_value()),
        CircuitBreakers(),
        rng=random.Random(1),
    )
    rows = await store.pool.fetch(
        "SELECT * FROM events WHERE type = 'DeliveryScheduled' ORDER BY position"
    )
    events = [RecordedEvent.from_row(r) for r in rows]
    try:
        for event in events:
            await worker.handle(event)
    finally:
        await webhook.close()
    return events


async def _integration(api: httpx.AsyncClient, oidc: TestIssuer, body: dict[str, Any]) -> str:
    created = await api.post("/api/v1/integrations", headers=oidc.headers(), json=body)
    assert created.status_code == 201, created.text
    integration_id: str = created.json()["integration_id"]
    route = await api.post(
        "/api/v1/routes",
        headers=oidc.headers(),
        json={"name": body["name"], "integration_id": integration_id},
    )
    assert route.status_code == 201, route.text
    return integration_id


async def test_templates_render_into_the_email_and_the_webhook(
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    tenants: list[str],
    event_store: PostgresEventStore,
    settings: Settings,
    smtp: tuple[Inbox, int],
    receiver: tuple[list[dict[str, Any]], str],
) -> None:
    inbox, port = smtp
    bodies, url = receiver
    await _integration(
        api,
        oidc,
        {
            "name": "mail",
            "kind": "email",
            "to": ["ops@example.com"],
            "templates": {"subject": SUBJECT, "body": BODY, "body_html": HTML},
        },
    )
    await _integration(
        api,
        oidc,
        {"name": "hook", "kind": "webhook", "url": url, "templates": {"summary": SUMMARY}},
    )
    await _integration(api, oidc, {"name": "plain", "kind": "email", "to": ["raw@example.com"]})
    dispatcher = Dispatcher(PostgresDispatchStore(event_store))
    await _open(event_store, dispatcher, "reefer<7>")
    await _deliver(event_store, settings, port)

    by_to = {m["To"]: m for m in inbox.messages}
    templated = by_to["ops@example.com"]
    assert templated["Subject"] == "[MAJOR] hot on reefer<7>"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in templated.walk()
        if not p.is_multipart()
    }
    assert parts["text/plain"].strip() == "temp_c > 8: 12.0 (limit 8.0)"
    assert parts["text/html"].strip() == "<p>temp_c &gt; 8 on <b>reefer&lt;7&gt;</b></p>"
    # the positive control: an integration without templates keeps the default message
    plain = by_to["raw@example.com"]
    assert plain["Subject"].startswith("[FleetPulse] FIRING major")
    [body] = bodies
    assert body["data"]["summary"] == "reefer<7> firing: temp_c > 8"
    assert body["data"]["device_id"] == "reefer<7>"


async def test_bad_templates_are_422_naming_the_error(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    cases = [
        ({"subject": "{{ alert.rule_name"}, "templates.subject: line 1"),
        ({"body": "{{ alert.no_such_field }}"}, "no_such_field"),
        ({"body": "{{ alert.__class__ }}"}, "unsafe"),
        ({"body": "{{ 'x' * 10000000 }}"}, "too long"),
        ({"body_html": "{% include 'x' %}"}, "include is not allowed"),
        ({"subject": "{{ range(10) }}"}, "templates.subject"),
        ({"subject": "{{ alert.rule_name | center(1000000) }}"}, "center"),
    ]
    for templates, detail in cases:
        response = await api.post(
            "/api/v1/integrations",
            headers=oidc.headers(),
            json={"name": "m", "kind": "email", "to": ["a@example.com"], "templates": templates},
        )
        assert response.status_code == 422 and detail in response.text, (templates, response.text)
    hook = await api.post(
        "/api/v1/integrations",
        headers=oidc.headers(),
        json={
            "name": "h",
            "kind": "webhook",
            "url": "https://hooks.example.com/x",
            "templates": {"summary": "{% for a in alerts %}{{ a"},
        },
    )
    assert hook.status_code == 422 and "templates.summary" in hook.text
    listed = await api.get("/api/v1/integrations", headers=oidc.headers())
    assert listed.json()["items"] == []


async def test_a_template_failing_at_send_time_is_a_failed_attempt(
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    tenants: list[str],
    event_store: PostgresEventStore,
    settings: Settings,
    smtp: tuple[Inbox, int],
    receiver: tuple[list[dict[str, Any]], str],
) -> None:
    """Valid against the sample alert, but this alert's value is text: ``* 2`` of a string
    of 60,000 characters is refused by the sandbox's size bound when it is sent."""
    inbox, port = smtp
    bodies, url = receiver
    failing = await _integration(
        api,
        oidc,
        {
            "name": "hook",
            "kind": "webhook",
            "url": url,
            "templates": {"summary": "{{ alert.reason * 2 }}"},
        },
    )
    working = await _integration(
        api,
        oidc,
        {
            "name": "mail",
            "kind": "email",
            "to": ["ops@example.com"],
            "templates": {"subject": SUBJECT},
        },
    )
    dispatcher = Dispatcher(PostgresDispatchStore(event_store))
    alert_id = await _open_with_reason(event_store, dispatcher, "x" * 60_000)
    await _deliver(event_store, settings, port)
    deliveries = (
        await api.get("/api/v1/deliveries", params={"alert_id": alert_id}, headers=oidc.headers())
    ).json()["items"]
    by_integration = {d["integration_id"]: d for d in deliveries}
    failed = by_integration[failing]
    assert failed["status"] == "abandoned"
    assert failed["last_error"].startswith("template: ") and "too long" in failed["last_error"]
    assert bodies == []
    assert by_integration[working]["status"] == "succeeded"  # the positive control
    assert len(inbox.messages) == 1


async def _open_with_reason(store: PostgresEventStore, dispatcher: Dispatcher, reason: str) -> str:
    from .test_silences import _alert_event

    event = await _alert_event(
        store,
        "acme",
        "a-long",
        "AlertOpened",
        {
            "fingerprint": "acme:r1:d1",
            "rule_id": "r1",
            "rule_name": "hot",
            "device_id": "d1",
            "severity": "major",
            "opened_at": "2026-01-01T00:00:00Z",
            "reason": reason,
        },
    )
    await dispatcher.handle(event)
    return "a-long"
