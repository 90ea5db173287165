"""The evaluator queue's messages: packed records (``{"v": 1, "records": [...]}``) from ingest."""

from __future__ import annotations

import logging

from fleetpulse.common.contracts.records import Record, decode_record
from fleetpulse.common.messaging import unpack_records

log = logging.getLogger(__name__)


def decode_records(body: str | bytes, traceparent: str | None = None) -> tuple[list[Record], int]:
    """The records of a packed body and how many malformed ones were left out.

    Raises ``ValueError`` when the body itself is not a packed batch.
    """
    records, malformed = [], 0
    for raw in unpack_records(body):
        try:
            records.append(decode_record(raw, traceparent))
        except (KeyError, TypeError, ValueError) as exc:
            malformed += 1
            log.warning(
                "malformed record left out", extra={"error": f"{type(exc).__name__}: {exc}"}
            )
    return records, malformed
