"""Opaque keyset cursors: base64url JSON of the last row's sort key."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from fleetpulse.provision_api.domain import InvalidError
from fleetpulse.provision_api.schemas import in_range

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


def encode_cursor(*key: Any) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *kinds: type) -> list[Any] | None:
    """The key encoded in ``cursor``, each value checked against ``kinds``; None for no cursor."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong shape")
        return [_typed(v, kind) for v, kind in zip(values, kinds, strict=True)]
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise InvalidError("query.cursor", "not a cursor returned by this endpoint") from None


def _typed(value: Any, kind: type) -> Any:
    if kind is datetime:
        parsed = datetime.fromisoformat(str(value))
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return in_range(parsed)
    if kind is int and (
        not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**63
    ):
        raise ValueError("int")
    if not isinstance(value, kind):
        raise ValueError("type")
    if isinstance(value, str):
        value.encode("utf-8")  # lone surrogates raise UnicodeEncodeError (a ValueError)
        if "\x00" in value:
            raise ValueError("NUL")
    return value


def page(rows: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """``rows`` fetched with ``limit + 1``: the page and the cursor of the next one."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(*key(rows[-1]))
