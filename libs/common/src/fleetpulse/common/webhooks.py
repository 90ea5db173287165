"""Standard Webhooks signing and verification (https://www.standardwebhooks.com).

The signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}``; the signature header is a
space-separated list of ``v1,<base64 HMAC-SHA256>`` values; the secret is ``whsec_<base64>``.
Verification works on the raw body bytes as received: parsing and re-serialising JSON before
verifying would change the bytes and break the signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from fleetpulse.common.errors import FleetPulseError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SECRET_PREFIX",
    "WebhookVerificationError",
    "generate_secret",
    "headers_owner",
    "secret_owner",
    "sign",
    "signature_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
DEFAULT_TOLERANCE_S = 300
_SECRET_BYTES = 32


class WebhookVerificationError(FleetPulseError):
    """A webhook's headers are missing or malformed, its timestamp is out of tolerance, or no
    signature matches."""


def generate_secret() -> str:
    """A new signing secret, ``whsec_`` followed by 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def secret_owner(tenant_id: str, integration_id: str) -> str:
    """What an integration's sealed signing secret is bound to (``SecretBox.seal``)."""
    return f"{tenant_id}:{integration_id}"


def headers_owner(tenant_id: str, integration_id: str) -> str:
    """What an integration's sealed custom header values are bound to (``crypto.seal_values``)."""
    return f"{tenant_id}:{integration_id}:headers"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one message."""
    return "v1," + base64.b64encode(_digest(_key(secret), msg_id, timestamp, body)).decode()


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt of one message."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a received webhook; raises :class:`WebhookVerificationError` unless it is authentic.

    ``headers`` may use any letter case. Any one matching ``v1`` signature is enough (senders
    list several while rotating secrets); other versions are ignored.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    msg_id, timestamp, signatures = _required(lowered)
    _check_timestamp(timestamp, time.time() if now is None else now, tolerance_s)
    expected = _digest(_key(secret), msg_id, timestamp, raw_body)
    if not any(
        hmac.compare_digest(expected, candidate) for candidate in _v1_signatures(signatures)
    ):
        raise WebhookVerificationError("no matching signature")


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("secret is not base64") from None
    if not key:
        raise WebhookVerificationError("secret is empty")
    return key


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def _required(headers: Mapping[str, str]) -> tuple[str, int, str]:
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not an integer")
    return msg_id, int(timestamp), signatures


def _check_timestamp(timestamp: int, now: float, tolerance_s: int) -> None:
    if timestamp < now - tolerance_s:
        raise WebhookVerificationError("webhook-timestamp too old")
    if timestamp > now + tolerance_s:
        raise WebhookVerificationError("webhook-timestamp too new")


def _v1_signatures(header: str) -> list[bytes]:
    decoded = []
    for item in header.split():
        version, _, value = item.partition(",")
        if version != "v1":
            continue
        try:
            decoded.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return decoded
