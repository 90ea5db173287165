"""``WebhookChannel``: Standard Webhooks POSTs over aiohttp, behind the SSRF guard.

The body is the notification payload as JSON bytes, signed as sent. ``webhook-id`` is the
delivery id, so every retry carries the same id and receivers can deduplicate; the timestamp and
signature are fresh on each attempt. Redirects are not followed (a 3xx is a failure): following
one would send the signed body to a destination nobody configured and the guard never checked.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from fleetpulse.common.ssrf import (
    BlockedDestinationError,
    GuardedConnector,
    UnusableUrlError,
    check_destination,
    webhook_destination,
)
from fleetpulse.common.templates import MAX_OUTPUT, NotificationTemplateError, render
from fleetpulse.common.webhooks import signature_headers
from fleetpulse.delivery_worker.channels.base import Notification, templates_of
from fleetpulse.delivery_worker.retry import AttemptResult, parse_retry_after

RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
    }
)
USER_AGENT = "FleetPulse-Webhooks/1"


class WebhookChannel:
    def __init__(
        self, *, allow_private: bool = False, timeout_s: float = 15.0, max_connections: int = 100
    ) -> None:
        self._allow_private = allow_private
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        connector_class = aiohttp.TCPConnector if allow_private else GuardedConnector
        connector = connector_class(limit=max_connections, ttl_dns_cache=10)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=False
        )

    async def close(self) -> None:
        await self._session.close()

    async def send(self, notification: Notification) -> AttemptResult:
        url = str(notification.config.get("url", ""))
        started = time.perf_counter()
        try:
            body = orjson.dumps(with_summary(notification))
        except NotificationTemplateError as exc:  # the same template fails on every retry
            return AttemptResult(ok=False, error=f"template: {exc}"[:500], permanent=True)
        try:
            return await self._post(
                self._destination(url), body, self._headers(notification, body), started
            )
        except (BlockedDestinationError, UnusableUrlError, aiohttp.InvalidURL) as exc:
            # No retry can help: the URL is refused by the guard or no request can be made with it.
            return AttemptResult(ok=False, error=str(exc), permanent=True, latency_ms=_ms(started))
        except TimeoutError:
            return AttemptResult(
                ok=False, error="timeout", endpoint_failure=True, latency_ms=_ms(started)
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return AttemptResult(
                ok=False,
                error=f"{type(exc).__name__}: {exc}"[:500],
                endpoint_failure=True,
                latency_ms=_ms(started),
            )

    def _destination(self, url: str) -> URL:
        """The normalised URL (the host as the client connects to it), checked by the guard."""
        destination = webhook_destination(url)
        if not self._allow_private:
            check_destination(destination)
        return destination.url

    def _headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        custom = notification.config.get("headers") or {}
        headers = {
            str(k): str(v) for k, v in custom.items() if str(k).lower() not in RESERVED_HEADERS
        }
        headers.setdefault("User-Agent", USER_AGENT)
        headers["Content-Type"] = "application/json"
        headers.update(
            signature_headers(
                notification.secret or "", notification.message_id, int(time.time()), body
            )
        )
        return headers

    async def _post(
        self, url: URL, body: bytes, headers: Mapping[str, str], started: float
    ) -> AttemptResult:
        async with self._session.post(
            url, data=body, headers=dict(headers), allow_redirects=False
        ) as resp:
            await _drain(resp)
            return _result(resp, started)


def with_summary(notification: Notification) -> dict[str, Any]:
    """The payload, with ``data.summary`` rendered from the integration's ``summary`` template
    when it has one (:class:`NotificationTemplateError` if it cannot be rendered)."""
    payload = dict(notification.payload)
    template = templates_of(notification.config).get("summary")
    if template:
        summary = render(template, payload, max_chars=MAX_OUTPUT["summary"])
        payload["data"] = {**(payload.get("data") or {}), "summary": summary}
    return payload


async def _drain(resp: aiohttp.ClientResponse, limit: int = 64 * 1024) -> None:
    """Read (and discard) a bounded amount of the answer so the connection can be reused."""
    remaining = limit
    while remaining > 0 and (chunk := await resp.content.read(min(remaining, 16384))):
        remaining -= len(chunk)


def _result(resp: aiohttp.ClientResponse, started: float) -> AttemptResult:
    status, latency = resp.status, _ms(started)
    if 200 <= status < 300:
        return AttemptResult(ok=True, status_code=status, latency_ms=latency)
    retry_after = parse_retry_after(resp.headers.get("Retry-After"), datetime.now(UTC))
    return AttemptResult(
        ok=False,
        status_code=status,
        latency_ms=latency,
        error=f"HTTP {status}",
        retry_after_s=retry_after,
        endpoint_failure=status >= 500 or status == 429,
        gone=status == 410,
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


__all__ = ["WebhookChannel"]
