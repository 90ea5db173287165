"""infra/terraform/lake.tf and exporter.tf: the Glue tables match the exporter's Parquet schema,
and the lake, Athena and the exporter task keep their guarantees."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hcl2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleetpulse.exporter.files import parquet_bytes
from fleetpulse.exporter.schema import (
    KNOWN_METRICS,
    SCHEMAS,
    events_table,
    hive_type,
    telemetry_table,
)

TF_DIR = Path(__file__).resolve().parents[2] / "infra" / "terraform"


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(name: str) -> dict[str, Any]:
    with (TF_DIR / name).open() as fh:
        return _clean(hcl2.load(fh))


def resources(doc: dict[str, Any], rtype: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for block in doc.get("resource", []):
        found.update(block.get(rtype, {}))
    return found


def lake_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in load("lake.tf").get("locals", []):
        merged.update(block)
    return merged


def glue_columns(dataset: str) -> list[tuple[str, str]]:
    return [(c["name"], c["type"]) for c in lake_locals()["lake_datasets"][dataset]]


def arrow_columns(schema: pa.Schema) -> list[tuple[str, str]]:
    return [(f.name, hive_type(f.type)) for f in schema]


@pytest.mark.parametrize("dataset", sorted(SCHEMAS))
def test_glue_table_columns_match_the_parquet_schema(dataset: str) -> None:
    assert glue_columns(dataset) == arrow_columns(SCHEMAS[dataset])


def test_the_comparison_catches_a_drifted_column() -> None:
    drifted = SCHEMAS["telemetry"].set(1, pa.field("time", pa.string()))
    assert glue_columns("telemetry") != arrow_columns(drifted)
    added = SCHEMAS["events"].append(pa.field("extra", pa.int64()))
    assert glue_columns("events") != arrow_columns(added)


def test_glue_tables_use_partition_projection_on_the_exporters_layout() -> None:
    [table] = resources(load("lake.tf"), "aws_glue_catalog_table").values()
    params = table["parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.tenant_id.type"] == "injected"
    assert params["projection.date.format"] == "yyyy-MM-dd"
    template = params["storage.location.template"]
    assert template.endswith("/${each.key}/tenant_id=$${tenant_id}/date=$${date}/")
    keys = [k["name"] for k in lake_locals()["lake_partition_keys"]]
    assert keys == ["tenant_id", "date"]
    assert not {name for s in SCHEMAS.values() for name in s.names} & set(keys)
    storage = table["storage_descriptor"][0]
    assert "parquet" in storage["ser_de_info"][0]["serialization_library"].lower()


def test_athena_workgroup_enforces_a_bytes_scanned_limit_and_encrypted_results() -> None:
    [workgroup] = resources(load("lake.tf"), "aws_athena_workgroup").values()
    assert workgroup["count"] == "${var.emulator ? 0 : 1}"  # planned in AWS (plan-only on moto)
    config = workgroup["configuration"][0]
    assert config["enforce_workgroup_configuration"] is True
    assert config["bytes_scanned_cutoff_per_query"] == "${var.athena_bytes_scanned_cutoff}"
    encryption = config["result_configuration"][0]["encryption_configuration"][0]
    assert encryption["encryption_option"] == "SSE_KMS"


def test_lake_bucket_is_private_kms_encrypted_and_ages_to_cheaper_storage() -> None:
    doc = load("lake.tf")
    assert resources(doc, "aws_s3_bucket_public_access_block")["analytics"]["block_public_acls"]
    sse = resources(doc, "aws_s3_bucket_server_side_encryption_configuration")["analytics"]
    default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == "aws:kms"
    rule = resources(doc, "aws_s3_bucket_lifecycle_configuration")["lake"]["rule"][0]
    assert [t["storage_class"] for t in rule["transition"]] == ["STANDARD_IA", "GLACIER_IR"]


def test_exporter_task_role_may_only_put_lake_objects() -> None:
    doc = load("exporter.tf")
    policy = str(resources(doc, "aws_iam_role_policy")["exporter"]["policy"])
    assert "s3:PutObject" in policy
    for broad in ("s3:*", "s3:GetObject", "s3:DeleteObject", '"*"'):
        assert broad not in policy
    task = resources(doc, "aws_ecs_task_definition")["exporter"]
    assert task["task_role_arn"] == "${aws_iam_role.exporter.arn}"
    containers = str(task["container_definitions"])
    assert "--once" in containers and "aws_ecr_repository.exporter" in containers
    assert "aws_cloudwatch_log_group.exporter" in containers
    schedule = resources(doc, "aws_scheduler_schedule")["exporter"]
    ecs = schedule["target"][0]["ecs_parameters"][0]
    assert "aws_ecs_task_definition.exporter" in ecs["task_definition_arn"]


def test_glue_columns_match_the_schema_of_a_file_the_exporter_writes() -> None:
    """Read the Parquet footer of real exporter output, not just the schema constant."""
    at = datetime(2026, 11, 20, tzinfo=UTC)
    reading: dict[str, Any] = {"device_id": "d", "time": at, "seq": 1, "received_at": at}
    reading |= dict.fromkeys(KNOWN_METRICS)
    reading |= {"other_metrics_keys": ["x"], "other_metrics_values": [1.0]}
    reading |= {"other_flags_keys": None, "other_flags_values": None}
    event = {
        "position": 1,
        "event_id": "e",
        "stream_id": "s",
        "version": 1,
        "type": "T",
        "data": {},
        "metadata": {},
        "recorded_at": at,
    }
    for dataset, table in (
        ("telemetry", telemetry_table([reading])),
        ("events", events_table([event])),
    ):
        written = pq.read_schema(io.BytesIO(parquet_bytes(table)))
        assert glue_columns(dataset) == arrow_columns(written), dataset
