"""The payload contract, pure: topic -> device, bytes -> readings or a quarantine reason.

No I/O here. :class:`Validator` turns one received message into :class:`Accepted` records or a
:class:`Rejected` verdict with one of the contract's reasons; the device registry and the clock
are passed in, so every rule is unit-tested without a broker or a database.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from fleetpulse.common.contracts.constants import ID_PATTERN, METRIC_PATTERN

MAX_PAYLOAD_BYTES = 16 * 1024
MAX_BATCH_READINGS = 500
MAX_METRICS = 64
#: Largest accepted magnitude of a metric value. Far beyond any physical reading, and small
#: enough that sums and sums of squares of up to 1e100 values stay finite in float8, so no
#: aggregate over stored telemetry (avg, sum, stddev, rollups) can overflow.
MAX_ABS_VALUE = 1e100
QUARANTINE_PAYLOAD_BYTES = 4 * 1024
DETAIL_CHARS = 500
_ID = re.compile(ID_PATTERN)
_METRIC = re.compile(METRIC_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Kind = Literal["reading", "heartbeat"]
DeviceStatus = Literal["active", "decommissioned"]
TOPIC_KINDS: dict[str, Kind] = {"telemetry": "reading", "heartbeat": "heartbeat"}


class Reason(StrEnum):
    BAD_TOPIC = "BAD_TOPIC"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    BAD_JSON = "BAD_JSON"
    SCHEMA_INVALID = "SCHEMA_INVALID"
    UNKNOWN_DEVICE = "UNKNOWN_DEVICE"
    DEVICE_DECOMMISSIONED = "DEVICE_DECOMMISSIONED"
    RATE_LIMITED = "RATE_LIMITED"
    TIMESTAMP_OUT_OF_RANGE = "TIMESTAMP_OUT_OF_RANGE"
    #: PostgreSQL refused the message's rows for a permanent reason (data, constraint).
    STORAGE_REJECTED = "STORAGE_REJECTED"


Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Metrics = dict[str, float | bool]


class ReadingIn(msgspec.Struct, forbid_unknown_fields=True):
    """One reading of a batch: ``metrics`` required, nothing beyond the contract's fields."""

    metrics: Metrics
    ts: datetime | int | None = None
    seq: Seq | None = None


class PayloadIn(msgspec.Struct, forbid_unknown_fields=True):
    """The top-level object: one reading (``metrics``, ``ts``, ``seq``) or a batch
    (``readings`` alone). Decoded once, so the form follows from the parsed keys (an escaped
    ``"re\\u0061dings"`` is ``readings``; the word inside a value or a nested object is not a
    key). Unknown keys are refused. JSON leaves duplicate keys undefined: the last one wins."""

    metrics: Metrics | UnsetType = UNSET
    ts: datetime | int | None = None
    seq: Seq | None = None
    readings: list[ReadingIn] | UnsetType = UNSET


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    tenant_id: str
    device_id: str
    kind: Kind


@dataclass(slots=True)
class Record:
    """One accepted reading or heartbeat; ``time_us`` is epoch microseconds (the row key)."""

    kind: Kind
    tenant_id: str
    device_id: str
    time_us: int
    seq: int | None
    metrics: dict[str, float | bool]


@dataclass(frozen=True, slots=True)
class Accepted:
    records: list[Record]


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str
    tenant_id: str | None = None
    device_id: str | None = None


Verdict = Accepted | Rejected


class InvalidPayloadError(ValueError):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


_TOPICS: dict[str, DeviceTopic | None] = {}
_TOPICS_CACHED = 100_000


def parse_topic(topic: str) -> DeviceTopic | None:
    """``tenant/{t}/device/{d}/telemetry|heartbeat`` -> its parts, anything else -> None.

    Remembers the last ~100k topics (a fleet's devices repeat theirs on every message)."""
    try:
        return _TOPICS[topic]
    except KeyError:
        pass
    if len(_TOPICS) >= _TOPICS_CACHED:
        _TOPICS.clear()
    where = _TOPICS[topic] = _parse_topic(topic)
    return where


def topic_owner(topic: str) -> tuple[str | None, str | None]:
    """The tenant and device a topic names under ``tenant/{t}/device/{d}/...`` (each ``None``
    unless a valid id), so a message on a wrong topic under a device's prefix is the tenant's
    to see in its quarantine (the broker lets a device publish only under its own prefix)."""
    parts = topic.split("/", 4)
    if len(parts) < 2 or parts[0] != "tenant" or not _ID.fullmatch(parts[1]):
        return None, None
    if len(parts) < 4 or parts[2] != "device" or not _ID.fullmatch(parts[3]):
        return parts[1], None
    return parts[1], parts[3]


def _parse_topic(topic: str) -> DeviceTopic | None:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "tenant" or parts[2] != "device":
        return None
    kind = TOPIC_KINDS.get(parts[4])
    if kind is None or not _ID.fullmatch(parts[1]) or not _ID.fullmatch(parts[3]):
        return None
    return DeviceTopic(parts[1], parts[3], kind)


_payload = msgspec.json.Decoder(PayloadIn)


def decode_readings(payload: bytes) -> tuple[list[ReadingIn], bool]:
    """The readings of a payload and whether it was a batch; raises :class:`InvalidPayloadError`.

    The form is decided by the parsed top-level object: ``readings`` present -> a batch (and
    then no ``metrics``/``ts``/``seq`` beside it), else one reading. A single reading without
    ``metrics`` is returned with empty metrics (a heartbeat may be ``{}``); the caller refuses
    empty readings on telemetry topics."""
    try:
        parsed = _payload.decode(payload)
    except msgspec.ValidationError as exc:
        raise InvalidPayloadError(Reason.SCHEMA_INVALID, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidPayloadError(Reason.BAD_JSON, str(exc)) from None
    except UnicodeDecodeError:
        raise InvalidPayloadError(Reason.BAD_JSON, "payload is not valid UTF-8") from None
    except RecursionError:
        raise InvalidPayloadError(Reason.SCHEMA_INVALID, "nesting too deep") from None
    return _readings_of(parsed)


def _readings_of(parsed: PayloadIn) -> tuple[list[ReadingIn], bool]:
    if parsed.readings is UNSET:
        metrics = {} if parsed.metrics is UNSET else parsed.metrics
        return [ReadingIn(metrics, parsed.ts, parsed.seq)], False
    if parsed.metrics is not UNSET or parsed.ts is not None or parsed.seq is not None:
        raise InvalidPayloadError(
            Reason.SCHEMA_INVALID,
            "a batch has only `readings`: `metrics`, `ts` and `seq` belong inside each reading",
        )
    if not parsed.readings:
        raise InvalidPayloadError(Reason.SCHEMA_INVALID, "a batch needs at least one reading")
    return parsed.readings, True


def epoch_us(ts: datetime | int) -> int:
    if isinstance(ts, int):
        return ts * 1000
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // _MICROSECOND


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


class MetricNames:
    """Checks metric names against the contract, remembering the (few) valid names seen."""

    def __init__(self, remember: int = 10_000) -> None:
        self._valid: set[str] = set()
        self._remember = remember

    def check(self, metrics: dict[str, float | bool]) -> None:
        """Refuses (``SCHEMA_INVALID``) no metrics, too many, a bad name, or a value that is
        not finite or beyond +-:data:`MAX_ABS_VALUE`."""
        if not metrics:
            raise InvalidPayloadError(
                Reason.SCHEMA_INVALID, "a reading needs at least one metric in `metrics`"
            )
        if len(metrics) > MAX_METRICS:
            raise InvalidPayloadError(
                Reason.SCHEMA_INVALID, f"{len(metrics)} metrics in one reading (max {MAX_METRICS})"
            )
        for name, value in metrics.items():
            if name not in self._valid:
                self._learn(name)
            if value.__class__ is float and not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
                raise InvalidPayloadError(Reason.SCHEMA_INVALID, _out_of_range(name, value))

    def _learn(self, name: str) -> None:
        if not _METRIC.match(name):
            raise InvalidPayloadError(Reason.SCHEMA_INVALID, f"bad metric name {name[:80]!r}")
        if len(self._valid) < self._remember:
            self._valid.add(name)


def _out_of_range(name: str, value: float) -> str:
    if not math.isfinite(value):
        return f"metric {name!r} is not finite"
    return f"metric {name!r} is out of range ({value!r}; at most {MAX_ABS_VALUE:g} in magnitude)"


class RateLimiter:
    """A token bucket per device: ``rate`` messages/s, at most ``burst`` at once."""

    def __init__(self, rate: float, burst: int, max_devices: int = 1_000_000) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_devices = max_devices
        self._buckets: dict[tuple[str, str], list[float]] = {}

    def allow(self, key: tuple[str, str], now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_devices:
                self._buckets.clear()  # only forgets history: buckets start full again
            bucket = self._buckets[key] = [self._burst, now]
        tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True


@dataclass(frozen=True, slots=True)
class TimeWindow:
    max_future_us: int
    retention_us: int

    def check(self, time_us: int, now_us: int) -> None:
        if time_us > now_us + self.max_future_us:
            raise InvalidPayloadError(Reason.TIMESTAMP_OUT_OF_RANGE, "ts too far in the future")
        if time_us < now_us - self.retention_us:
            raise InvalidPayloadError(Reason.TIMESTAMP_OUT_OF_RANGE, "ts older than retention")


StatusLookup = Callable[[str, str], DeviceStatus | None]


class Validator:
    """One message -> a verdict: topic, size, registry, rate limit, payload, timestamps."""

    def __init__(self, status_of: StatusLookup, limiter: RateLimiter, window: TimeWindow) -> None:
        self._status_of = status_of
        self._limiter = limiter
        self._window = window
        self._names = MetricNames()

    def validate(
        self, topic: str, payload: bytes, received_us: int, *, rate_limit: bool = True
    ) -> Verdict:
        """The verdict on one message; ``rate_limit=False`` when validating it again (a batch
        split to isolate a row the database refused): its token was already taken."""
        where = parse_topic(topic)
        if where is None:
            return Rejected(
                Reason.BAD_TOPIC,
                f"topic {topic[:200]!r} is not tenant/{{t}}/device/{{d}}/telemetry|heartbeat",
                *topic_owner(topic),
            )
        rejected = self._admit(where, len(payload), received_us, rate_limit)
        if rejected is not None:
            return rejected
        try:
            return Accepted(self._records(where, payload, received_us))
        except InvalidPayloadError as exc:
            return Rejected(exc.reason, str(exc)[:DETAIL_CHARS], where.tenant_id, where.device_id)

    def _admit(
        self, where: DeviceTopic, size: int, received_us: int, rate_limit: bool
    ) -> Rejected | None:
        t, d = where.tenant_id, where.device_id
        if size > MAX_PAYLOAD_BYTES:
            return Rejected(
                Reason.PAYLOAD_TOO_LARGE, f"{size} bytes (max {MAX_PAYLOAD_BYTES})", t, d
            )
        status = self._status_of(t, d)
        if status is None:
            return Rejected(
                Reason.UNKNOWN_DEVICE, f"device {d!r} is not registered in tenant {t!r}", t, d
            )
        if status == "decommissioned":
            return Rejected(Reason.DEVICE_DECOMMISSIONED, f"device {d!r} is decommissioned", t, d)
        if rate_limit and not self._limiter.allow((t, d), received_us / 1e6):
            return Rejected(Reason.RATE_LIMITED, "per-device rate limit exceeded", t, d)
        return None

    def _records(self, where: DeviceTopic, payload: bytes, received_us: int) -> list[Record]:
        if where.kind == "heartbeat" and payload.strip() in (b"", b"{}"):
            return [Record("heartbeat", where.tenant_id, where.device_id, received_us, None, {})]
        readings, is_batch = decode_readings(payload)
        if len(readings) > MAX_BATCH_READINGS:
            raise InvalidPayloadError(
                Reason.SCHEMA_INVALID, f"{len(readings)} readings (max {MAX_BATCH_READINGS})"
            )
        return [self._record(where, r, is_batch, received_us) for r in readings]

    def _record(
        self, where: DeviceTopic, reading: ReadingIn, in_batch: bool, received_us: int
    ) -> Record:
        if reading.ts is None and in_batch:
            raise InvalidPayloadError(Reason.SCHEMA_INVALID, "ts is required in a batch")
        if reading.metrics or where.kind == "reading":  # a heartbeat may carry no metrics
            self._names.check(reading.metrics)
        time_us = received_us if reading.ts is None else epoch_us(reading.ts)
        self._window.check(time_us, received_us)
        return Record(
            where.kind, where.tenant_id, where.device_id, time_us, reading.seq, reading.metrics
        )


def truncate_payload(payload: bytes) -> bytes:
    return payload[:QUARANTINE_PAYLOAD_BYTES]


_ISO_SECONDS: dict[int, str] = {}


def iso_from_us(time_us: int) -> str:
    seconds, micros = divmod(time_us, 1_000_000)
    prefix = _ISO_SECONDS.get(seconds)
    if prefix is None:
        if len(_ISO_SECONDS) > 100_000:
            _ISO_SECONDS.clear()
        prefix = _ISO_SECONDS[seconds] = datetime.fromtimestamp(seconds, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S."
        )
    return f"{prefix}{micros:06d}Z"
