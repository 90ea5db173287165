"""The issuer's RS256 key: one PEM file created once with mode 600, and its public JWK set."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

KEY_SIZE = 2048


def load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    """The private key in ``path``; created (mode 600, exclusively) if it does not exist yet."""
    if not path.exists():
        _create(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return key


def load_key(path: Path) -> rsa.RSAPrivateKey:
    """The private key in ``path``; ``FileNotFoundError`` if the issuer never created it."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: start the dev stack (make dev) first")
    return load_or_create_key(path)


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first: use theirs
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The public half as a JWK with ``kid`` (RFC 7638 thumbprint), ``use`` and ``alg``."""
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=key_id(key), use="sig", alg="RS256")
    return jwk


def key_id(key: rsa.RSAPrivateKey) -> str:
    """The RFC 7638 SHA-256 thumbprint of the public key: stable for as long as the key is."""
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def jwks(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The JWKS document served at ``{issuer}/protocol/openid-connect/certs``."""
    return {"keys": [public_jwk(key)]}
