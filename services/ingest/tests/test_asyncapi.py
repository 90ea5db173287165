"""The AsyncAPI document of the MQTT contract: committed file up to date, payload schemas agree
with the contract's sample payloads and with the ingest validator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from fleetpulse.ingest.asyncapi import build_document, to_yaml
from fleetpulse.ingest.domain import Accepted, RateLimiter, TimeWindow, Validator

DOCUMENT = Path(__file__).parents[1] / "asyncapi.yaml"
NOW_MS = int(time.time() * 1000)

VALID_TELEMETRY: list[Any] = [
    {"ts": "2026-11-22T04:00:00.000Z", "seq": 42, "metrics": {"temp_c": 21.5, "door_open": False}},
    {"ts": NOW_MS, "metrics": {"temp_c": 21.5}},
    {"metrics": {"rpm": 3}},
    {"readings": [{"ts": NOW_MS - i, "metrics": {"a": i % 10}} for i in range(400)]},
    {"ts": NOW_MS, "metrics": {f"m{i}": i for i in range(64)}},
]
INVALID_TELEMETRY: list[Any] = [
    {"metrics": {"temp_c": "warm"}},
    {"metrics": {"Temp": 1}},  # metric names are lower case
    {"metrics": {f"m{i}": i for i in range(65)}},
    {"readings": [{"metrics": {"a": 1}}]},  # ts required in a batch
    {"readings": [{"ts": NOW_MS - i, "metrics": {}} for i in range(501)]},
    {"ts": NOW_MS, "seq": -1, "metrics": {}},
    [1, 2],
    {"temp_c": 21.5},  # another platform's format: no metrics, unknown member
    {"metrics": {}},  # no metrics
    {"metrics": {"a": 1}, "temp_c": 2},  # unknown member beside a reading
    {"readings": []},
    {"readings": [{"ts": NOW_MS, "metrics": {"a": 1}}], "seq": 1},
    {"metrics": {"a": 1e308}},  # beyond the value bound
]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text())


def payload_validator(document: dict[str, Any], channel: str) -> jsonschema.Validator:
    ref = document["channels"][channel]["messages"]["SubscribeMessage"]["$ref"]
    message = document["components"]["messages"][ref.rsplit("/", 1)[1]]
    schema = {**document, "$ref": message["payload"]["$ref"]}
    return jsonschema.Draft202012Validator(schema)


def test_committed_document_is_generated_from_the_code(document: dict[str, Any]) -> None:
    assert document == build_document(), (
        "regenerate: uv run python -m fleetpulse.ingest.asyncapi > services/ingest/asyncapi.yaml"
    )
    assert yaml.safe_load(to_yaml()) == document
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["development"]["protocolVersion"] == "3.1.1"
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {
        "tenant/{tenant_id}/device/{device_id}/telemetry",
        "tenant/{tenant_id}/device/{device_id}/heartbeat",
    }


@pytest.mark.parametrize("payload", VALID_TELEMETRY, ids=range(len(VALID_TELEMETRY)))
def test_contract_payloads_validate_and_ingest_accepts_them(
    document: dict[str, Any], payload: Any
) -> None:
    payload_validator(document, "telemetry").validate(payload)
    verdict = _validator().validate(
        "tenant/t1/device/d1/telemetry", orjson.dumps(payload), NOW_MS * 1000
    )
    assert isinstance(verdict, Accepted), verdict


@pytest.mark.parametrize("payload", INVALID_TELEMETRY, ids=range(len(INVALID_TELEMETRY)))
def test_payloads_outside_the_contract_fail_the_schema_and_ingest(
    document: dict[str, Any], payload: Any
) -> None:
    assert not payload_validator(document, "telemetry").is_valid(payload)
    verdict = _validator().validate(
        "tenant/t1/device/d1/telemetry", orjson.dumps(payload), NOW_MS * 1000
    )
    assert not isinstance(verdict, Accepted)


def test_heartbeat_may_be_empty(document: dict[str, Any]) -> None:
    payload_validator(document, "heartbeat").validate({})


def _validator() -> Validator:
    return Validator(
        lambda tenant, device: "active",
        RateLimiter(1e9, 10**9),
        TimeWindow(300 * 1_000_000, 30 * 86_400_000_000),
    )
