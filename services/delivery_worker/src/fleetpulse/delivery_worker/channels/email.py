"""``EmailChannel``: SMTP via aiosmtplib (STARTTLS and AUTH as configured) to ``config.to``."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
import orjson

from fleetpulse.common.templates import MAX_OUTPUT, NotificationTemplateError, render
from fleetpulse.delivery_worker.channels.base import Notification, subject_line, templates_of
from fleetpulse.delivery_worker.retry import AttemptResult


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str | None
    port: int = 587
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    ca_file: str | None = None
    sender: str = "alerts@fleetpulse.local"
    timeout_s: float = 15.0


class EmailChannel:
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._tls = ssl.create_default_context(cafile=config.ca_file) if config.starttls else None

    async def close(self) -> None:
        return None

    async def send(self, notification: Notification) -> AttemptResult:
        cfg, started = self._config, time.perf_counter()
        recipients = [str(r) for r in notification.config.get("to") or []]
        if not cfg.host or not recipients:
            return AttemptResult(ok=False, error="no SMTP host or no recipients", permanent=True)
        try:
            message = self._message(notification, recipients)
        except NotificationTemplateError as exc:  # the same template fails on every retry
            return AttemptResult(ok=False, error=f"template: {exc}"[:500], permanent=True)
        try:
            await aiosmtplib.send(
                message,
                hostname=cfg.host,
                port=cfg.port,
                username=cfg.username,
                password=cfg.password,
                start_tls=cfg.starttls,
                tls_context=self._tls,
                timeout=cfg.timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            return AttemptResult(
                ok=False,
                status_code=exc.code,
                error=f"SMTP {exc.code}: {exc.message}"[:500],
                latency_ms=_ms(started),
                endpoint_failure=exc.code >= 400,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return AttemptResult(
                ok=False,
                error=f"{type(exc).__name__}: {exc}"[:500],
                latency_ms=_ms(started),
                endpoint_failure=True,
            )
        return AttemptResult(ok=True, status_code=250, latency_ms=_ms(started))

    def _message(self, notification: Notification, recipients: list[str]) -> EmailMessage:
        """The message, from the integration's templates where it has them (subject, body,
        body_html); :class:`NotificationTemplateError` if one cannot be rendered."""
        templates, payload = templates_of(notification.config), notification.payload
        message = EmailMessage()
        message["From"] = self._config.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject_line(payload, templates.get("subject"))
        message["Message-ID"] = f"<{notification.message_id}@fleetpulse>"
        if body := templates.get("body"):
            message.set_content(render(body, payload, max_chars=MAX_OUTPUT["body"]))
        else:
            message.set_content(orjson.dumps(dict(payload), option=orjson.OPT_INDENT_2).decode())
        if html := templates.get("body_html"):
            limit = MAX_OUTPUT["body_html"]
            message.add_alternative(render(html, payload, max_chars=limit, html=True), "html")
        return message


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
