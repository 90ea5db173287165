"""Seal secrets at rest (webhook signing secrets) with AES-256-GCM.

The key is 32 bytes, given base64-encoded (``FLEETPULSE_WEBHOOK_ENCRYPTION_KEY``, usually a
``secretsmanager://`` reference). A sealed value is ``v1.<base64(nonce || ciphertext)>``; the
associated data binds it to its owner (for example ``tenant:integration``) so a sealed value
copied onto another integration does not open.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleetpulse.common.errors import FleetPulseError

PREFIX = "v1."
NONCE_BYTES = 12


class SealError(FleetPulseError):
    """A sealed value is malformed, or the key or owner does not match."""


class SecretBox:
    def __init__(self, key_b64: str) -> None:
        try:
            key = base64.b64decode(key_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("encryption key must be base64") from None
        if len(key) != 32:
            raise ValueError("encryption key must decode to 32 bytes")
        self._aead = AESGCM(key)

    @staticmethod
    def generate_key() -> str:
        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()

    def seal(self, plaintext: str, owner: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), owner.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, owner: str) -> str:
        if not sealed.startswith(PREFIX):
            raise SealError("unknown sealed-value format")
        try:
            raw = base64.b64decode(sealed.removeprefix(PREFIX), validate=True)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], owner.encode()).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SealError("sealed value does not open with this key and owner") from None


def seal_values(box: SecretBox, values: dict[str, str], owner: str) -> dict[str, str]:
    """Seal each value of a mapping (webhook custom headers), bound to ``owner`` and its key."""
    return {name: box.seal(value, _item_owner(owner, name)) for name, value in values.items()}


def open_values(box: SecretBox, sealed: dict[str, str], owner: str) -> dict[str, str]:
    """The plaintext of :func:`seal_values`; raises :class:`SealError` naming the key that fails."""
    opened = {}
    for name, value in sealed.items():
        try:
            opened[name] = box.open(value, _item_owner(owner, name))
        except SealError as exc:
            raise SealError(f"{name}: {exc}") from None
    return opened


def _item_owner(owner: str, name: str) -> str:
    return f"{owner}:{name.lower()}"
