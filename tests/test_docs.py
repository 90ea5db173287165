"""The contracts shipped under docs/ agree with the code: the OpenAPI document is the app's,
the AsyncAPI document's webhook schemas accept the bodies the dispatcher really builds (and
refuse what breaks them), the settings table is the settings classes', and no README or docs link
points outside the repository."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from fleetpulse.common.webhooks import generate_secret, signature_headers
from fleetpulse.dispatcher.domain import Route, ending_payload, firing_payload

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _contracts() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contracts", ROOT / "scripts" / "contracts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def contracts() -> ModuleType:
    return _contracts()


def test_committed_contracts_are_generated_from_the_code(contracts: ModuleType) -> None:
    for path, text in contracts.rendered().items():
        assert path.read_text() == text, f"{path.name} is stale: make contracts"


def test_openapi_document_lists_the_api(contracts: ModuleType) -> None:
    document = json.loads((DOCS / "openapi.json").read_text())
    paths = set(document["paths"])
    for path in (
        "/api/v1/tenants",
        "/api/v1/devices",
        "/api/v1/devices/{device_id}/telemetry",
        "/api/v1/rules",
        "/api/v1/integrations",
        "/api/v1/routes",
        "/api/v1/alerts",
        "/api/v1/deliveries",
        "/api/v1/quarantine",
        "/healthz",
    ):
        assert path in paths, path


def _validator(document: dict[str, Any], schema: str) -> jsonschema.Validator:
    return jsonschema.Draft202012Validator({**document, "$ref": f"#/components/schemas/{schema}"})


ALERT = {
    "alert_id": "alr_1",
    "fingerprint": "fp",
    "rule_id": "rul_1",
    "rule_name": "too hot",
    "device_id": "dev-1",
    "severity": "critical",
    "opened_at": "2026-11-30T10:00:00+00:00",
    "metric": "temp_c",
    "value": 80.0,
    "threshold": 50.0,
}


def test_webhook_schemas_accept_what_the_dispatcher_sends() -> None:
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    at = datetime(2026, 11, 30, tzinfo=UTC)
    route = Route(route_id="rte_1", integration_id="int_1")
    firing = firing_payload("acme", [ALERT, {**ALERT, "alert_id": "alr_2"}], route, {}, at)
    resolved = ending_payload("acme", "AlertResolved", {"value": 20.0}, ALERT, at)
    closed = ending_payload("acme", "AlertClosed", {}, ALERT, at)
    _validator(document, "AlertFiring").validate(json.loads(json.dumps(firing)))
    for body in (resolved, closed):
        _validator(document, "AlertEnded").validate(json.loads(json.dumps(body)))
    # and they refuse what would break a receiver
    broken = json.loads(json.dumps(firing))
    del broken["data"]["alerts"]
    with pytest.raises(jsonschema.ValidationError):
        _validator(document, "AlertFiring").validate(broken)
    with pytest.raises(jsonschema.ValidationError):
        _validator(document, "AlertEnded").validate({**resolved, "type": "alert.opened"})


def test_webhook_header_schema_accepts_signed_headers() -> None:
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    now = int(datetime.now(UTC).timestamp())
    headers = signature_headers(generate_secret(), "msg_1", now, b'{"type": "alert.opened"}')
    headers["traceparent"] = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    _validator(document, "WebhookHeaders").validate(dict(headers))
    with pytest.raises(jsonschema.ValidationError):
        _validator(document, "WebhookHeaders").validate({**headers, "traceparent": "nope"})


def test_documents_link_nothing_outside_the_repository() -> None:
    for path in [ROOT / "README.md", *DOCS.glob("*.md"), ROOT / "compose" / "README.md"]:
        for target in re.findall(r"\]\(([^)#]+)", path.read_text()):
            if "://" in target:
                continue
            resolved = (path.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{path.name} links outside the repo: {target}"
            assert resolved.exists(), f"{path.name} links to missing {target}"
