"""The MQTT telemetry contract (docs/architecture.md "MQTT") as an AsyncAPI 3.0 document.

Built with FastStream's MQTT broker, which describes subscribers without connecting; the payload
models below restate the contract's limits (ids, metric names, 64 metrics, 500 readings) with
the numbers of :mod:`fleetpulse.ingest.domain`. ``services/ingest/asyncapi.yaml`` is this output
(regenerate: ``uv run python -m fleetpulse.ingest.asyncapi > services/ingest/asyncapi.yaml``);
a test fails when they drift. Nothing happens at import time beyond class definitions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fleetpulse.common.contracts.constants import ID_PATTERN, METRIC_PATTERN
from fleetpulse.ingest.domain import (
    MAX_ABS_VALUE,
    MAX_BATCH_READINGS,
    MAX_METRICS,
    MAX_PAYLOAD_BYTES,
)

METRIC_NAME = METRIC_PATTERN
TOPIC = "tenant/{tenant_id}/device/{device_id}/{kind}"
MetricName = Annotated[str, StringConstraints(pattern=METRIC_NAME)]
MetricValue = Annotated[float, Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)] | bool
_METRICS = {
    "max_length": MAX_METRICS,
    "description": f"Numbers of magnitude at most {MAX_ABS_VALUE:g}, or booleans",
    "json_schema_extra": {"additionalProperties": False},  # names must match the pattern
}
Metrics = Annotated[dict[MetricName, MetricValue], Field(min_length=1, **_METRICS)]
HeartbeatMetrics = Annotated[dict[MetricName, MetricValue], Field(**_METRICS)]
Timestamp = datetime | Annotated[int, Field(ge=0)]
Seq = Annotated[int, Field(ge=0, le=2**63 - 1)]


class Reading(BaseModel):
    """One reading: at least one metric, no other members. Without ``ts`` the receive time is
    used (not recognisable on redelivery)."""

    model_config = ConfigDict(extra="forbid", title="Reading")
    ts: Timestamp | None = Field(default=None, description="ISO-8601 or epoch milliseconds")
    seq: Seq | None = None
    metrics: Metrics


class TimedReading(Reading):
    model_config = ConfigDict(extra="forbid", title="TimedReading")
    ts: Timestamp = Field(description="Required in a batch")


class ReadingBatch(BaseModel):
    """A batch: ``readings`` and nothing else (a body is a batch exactly when it has this key)."""

    model_config = ConfigDict(extra="forbid", title="ReadingBatch")
    readings: list[TimedReading] = Field(min_length=1, max_length=MAX_BATCH_READINGS)


class Heartbeat(BaseModel):
    """Heartbeats may be ``{}``; a reading-shaped body (metrics optional) is accepted too."""

    model_config = ConfigDict(extra="forbid", title="Heartbeat")
    ts: Timestamp | None = None
    seq: Seq | None = None
    metrics: HeartbeatMetrics = Field(default_factory=dict)


def build_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a plain dict (no network)."""
    from faststream.mqtt import MQTTBroker, QoS
    from faststream.specification import AsyncAPI

    broker = MQTTBroker(
        "broker",
        port=8883,
        version="3.1.1",
        description="Mosquitto (dynamic security) locally, AWS IoT Core in AWS. Each device may "
        "publish only under tenant/{tenant_id}/device/{device_id}/; no anonymous clients. "
        "Ingest consumes with the shared subscription $share/ingest/tenant/+/device/+/# and "
        f"acknowledges after commit. UTF-8 JSON payloads of at most {MAX_PAYLOAD_BYTES} bytes.",
    )
    ids = ID_PATTERN

    @broker.subscriber(
        TOPIC.replace("{kind}", "telemetry"),
        qos=QoS.AT_LEAST_ONCE,
        title="telemetry",
        description=f"One reading, or a batch of at most {MAX_BATCH_READINGS} with ts in each. "
        f"tenant_id and device_id match {ids}.",
    )
    async def telemetry(body: Reading | ReadingBatch) -> None:  # pragma: no cover - schema only
        return None

    @broker.subscriber(
        TOPIC.replace("{kind}", "heartbeat"),
        qos=QoS.AT_LEAST_ONCE,
        title="heartbeat",
        description="Liveness; the body may be {}.",
    )
    async def heartbeat(body: Heartbeat) -> None:  # pragma: no cover - schema only
        return None

    spec = AsyncAPI(
        broker,
        title="FleetPulse device telemetry (MQTT)",
        version="1.0.0",
        description="What devices publish and fleetpulse-ingest consumes.",
        schema_version="3.0.0",
    )
    return dict(spec.to_specification().to_jsonable())


def to_yaml() -> str:
    import yaml

    return yaml.safe_dump(build_document(), sort_keys=False)


def main() -> None:
    print(to_yaml(), end="")


if __name__ == "__main__":
    main()
