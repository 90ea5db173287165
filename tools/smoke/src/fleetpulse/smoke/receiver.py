"""A webhook receiver on loopback that verifies Standard Webhooks signatures as they arrive."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fleetpulse.common.webhooks import WebhookVerificationError, verify


@dataclass(frozen=True, slots=True)
class ReceivedWebhook:
    webhook_id: str
    verified: bool
    body: dict[str, Any]
    error: str = ""

    @property
    def type(self) -> str:
        return str(self.body.get("type", ""))


@dataclass
class WebhookReceiver:
    """``url`` accepts POSTs; set ``secret`` (known once the integration exists) before any
    delivery can verify. Unverifiable requests are kept too (answered 401) so a check can say why."""

    host: str = "127.0.0.1"  # the address it binds
    secret: str | None = None
    received: list[ReceivedWebhook] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None
    port: int = 0
    public_host: str | None = None  # how the delivery worker reaches it (default: host)

    @property
    def url(self) -> str:
        return f"http://{self.public_host or self.host}:{self.port}/webhook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        webhook = self._check(dict(request.headers), raw)
        async with self.arrived:
            self.received.append(webhook)
            self.arrived.notify_all()
        return web.Response(status=204 if webhook.verified else 401)

    def _check(self, headers: dict[str, str], raw: bytes) -> ReceivedWebhook:
        webhook_id = headers.get("webhook-id", headers.get("Webhook-Id", ""))
        try:
            body = json.loads(raw)
        except ValueError:
            return ReceivedWebhook(webhook_id, False, {}, "body is not JSON")
        if self.secret is None:
            return ReceivedWebhook(webhook_id, False, body, "no secret known yet")
        try:
            verify(self.secret, headers, raw)
        except WebhookVerificationError as exc:
            return ReceivedWebhook(webhook_id, False, body, str(exc))
        return ReceivedWebhook(webhook_id, True, body)

    def find(self, event_type: str, alert_id: str) -> ReceivedWebhook | None:
        for webhook in self.received:
            data = webhook.body.get("data") or {}
            if webhook.type == event_type and data.get("alert_id") == alert_id:
                return webhook
        return None
