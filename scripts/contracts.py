"""Write the user-facing contracts under docs/ from the code (``make contracts``).

- ``docs/openapi.json``: the HTTP API's OpenAPI document, exported from the FastAPI app.
- ``docs/asyncapi.yaml``: the MQTT telemetry contract (ingest's AsyncAPI document) plus the
  webhook notifications the delivery worker POSTs (Standard Webhooks headers, ``traceparent``,
  the ``alert.opened`` / ``alert.resolved`` / ``alert.closed`` bodies the dispatcher builds).
- ``docs/settings.md``: every ``FLEETPULSE_*`` setting, from the settings classes.
- ``docs/events.md``: every domain event's fields, from the structs in
  ``fleetpulse.common.contracts`` (the stored ``data`` of each event type).

``--check`` exits 1 when a committed file differs from what the code gives (tests/test_docs.py
runs the same comparison).
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import json
import sys
import types
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

SEVERITY = {"type": "string", "enum": ["info", "warning", "minor", "major", "critical"]}
ALERT_SUMMARY: dict[str, Any] = {
    "alert_id": {"type": "string"},
    "fingerprint": {"type": "string"},
    "rule_id": {"type": "string"},
    "rule_name": {"type": "string"},
    "device_id": {"type": "string"},
    "severity": SEVERITY,
    "opened_at": {"type": "string", "format": "date-time"},
    "metric": {"type": "string"},
    "value": {"type": ["number", "boolean", "null"]},
    "threshold": {"type": ["number", "null"]},
    "reason": {"type": "string"},
}
AlertSummary = {
    "type": "object",
    "title": "AlertSummary",
    "required": ["alert_id", "rule_id", "device_id", "severity"],
    "properties": ALERT_SUMMARY,
}
WEBHOOK_SCHEMAS: dict[str, Any] = {
    "AlertSummary": AlertSummary,
    "AlertFiring": {
        "type": "object",
        "title": "AlertFiring",
        "description": "alert.opened: the first alert of the (route's) group leads; `alerts` "
        "lists every alert of the notification.",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"const": "alert.opened"},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": {
                "type": "object",
                "required": ["alert_id", "status", "tenant_id", "route_id", "group", "alerts"],
                "properties": {
                    **ALERT_SUMMARY,
                    "status": {"const": "firing"},
                    "tenant_id": {"type": "string"},
                    "route_id": {"type": "string"},
                    "group": {"type": "object", "additionalProperties": {"type": "string"}},
                    "alerts": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"$ref": "#/components/schemas/AlertSummary"},
                    },
                },
            },
        },
    },
    "AlertEnded": {
        "type": "object",
        "title": "AlertEnded",
        "description": "alert.resolved or alert.closed: the alert's summary and the ending "
        "event's data.",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"enum": ["alert.resolved", "alert.closed"]},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": {
                "type": "object",
                "required": ["alert_id", "status", "tenant_id"],
                "properties": {
                    **ALERT_SUMMARY,
                    "status": {"const": "resolved"},
                    "tenant_id": {"type": "string"},
                },
            },
        },
    },
    "WebhookHeaders": {
        "type": "object",
        "title": "WebhookHeaders",
        "description": "Standard Webhooks: the signature is "
        "v1,<base64 HMAC-SHA256(secret, webhook-id.webhook-timestamp.body)> with the "
        "integration's whsec_ secret; webhook-id is the same on every retry. traceparent "
        "(W3C) continues the alert's trace.",
        "required": ["webhook-id", "webhook-timestamp", "webhook-signature"],
        "properties": {
            "webhook-id": {"type": "string"},
            "webhook-timestamp": {"type": "string", "pattern": "^[0-9]+$"},
            "webhook-signature": {"type": "string", "pattern": "^v1,"},
            "traceparent": {
                "type": "string",
                "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            },
        },
    },
}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def openapi() -> dict[str, Any]:
    from fleetpulse.provision_api.api.deps import Services
    from fleetpulse.provision_api.app import create_app

    # The schema comes from the routes alone; no service is called.
    return create_app(cast(Services, None)).openapi()


def asyncapi() -> dict[str, Any]:
    from fleetpulse.ingest.asyncapi import build_document

    document = copy.deepcopy(build_document())
    document["info"] = {
        "title": "FleetPulse messages: device telemetry (MQTT) and webhook notifications",
        "version": document["info"]["version"],
        "description": "What devices publish and fleetpulse-ingest consumes, and the "
        "notifications fleetpulse-delivery-worker POSTs to webhook integrations.",
    }
    document["servers"]["webhook-receiver"] = {
        "host": "{integration_url}",
        "protocol": "https",
        "description": "The integration's URL (POST, application/json).",
        "variables": {"integration_url": {"description": "host of the integration's url"}},
    }
    document["channels"]["webhook"] = {
        "address": "{integration_path}",
        "servers": [{"$ref": "#/servers/webhook-receiver"}],
        "parameters": {"integration_path": {"description": "path of the integration's url"}},
        "messages": {
            "AlertFiring": {"$ref": "#/components/messages/AlertFiring"},
            "AlertEnded": {"$ref": "#/components/messages/AlertEnded"},
        },
    }
    document["operations"]["webhook"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/webhook"},
        "summary": "The delivery worker POSTs one notification; any 2xx answers it. 410 "
        "disables the integration; other answers are retried with backoff (Retry-After "
        "honoured).",
        "bindings": {"http": {"method": "POST"}},
        "messages": [
            {"$ref": "#/channels/webhook/messages/AlertFiring"},
            {"$ref": "#/channels/webhook/messages/AlertEnded"},
        ],
    }
    for name in ("AlertFiring", "AlertEnded"):
        document["components"]["messages"][name] = {
            "name": name,
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/WebhookHeaders"},
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
    document["components"]["schemas"].update(copy.deepcopy(WEBHOOK_SCHEMAS))
    return document


def settings_markdown() -> str:
    table = _load("config_table", ROOT / "scripts" / "config_table.py")
    return (
        "# Settings\n\n"
        "Environment variables of the services (generated from the settings classes by "
        "`make contracts`; the README carries the same table). Any value may be "
        "`secretsmanager://<secret-id>` or `secretsmanager://<secret-id>#<json-key>`. A missing "
        "or invalid setting stops the service at start with exit code 2 and one line naming "
        "the variable.\n\n" + str(table.markdown()) + "\n"
    )


_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _type_name(tp: Any) -> str:
    """A reader's name for a field type (JSON terms)."""
    import typing

    import msgspec

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _SCALARS:
        return _SCALARS[tp]
    if tp is Any:
        return "any"
    if origin is typing.Annotated:
        meta = next((a for a in args[1:] if isinstance(a, msgspec.Meta)), None)
        return meta.description if meta and meta.description else _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a not in (type(None), msgspec.UnsetType)]
        return " or ".join(_type_name(a) for a in kept)
    if origin is list:
        return f"array of {_type_name(args[0])}"
    if origin is dict:
        return "object" if args[1] is Any else f"object of {_type_name(args[1])}"
    return getattr(tp, "__name__", str(tp))


def _field_docs(path: Path) -> dict[tuple[str, str], str]:
    """``(class, field) -> docstring`` from the string literal written under a field."""
    docs: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ClassDef):
            continue
        for field, doc in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(field, ast.AnnAssign)
                and isinstance(field.target, ast.Name)
                and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)
            ):
                text = " ".join(doc.value.value.split())
                docs[(node.name, field.target.id)] = text.replace("``", "`")
    return docs


def events_markdown() -> str:
    import inspect

    import msgspec

    from fleetpulse.common.contracts import events

    docs = _field_docs(Path(events.__file__))
    lines = [
        "# Domain events",
        "",
        "The `data` of every event type in the event store (generated from the structs in "
        "`fleetpulse.common.contracts.events` by `make contracts`). Producers build these "
        "structs and consumers decode them (`decode_event(type, data)`); the stored JSON is the "
        "struct's fields without `type`. A field that is not required is left out of the JSON "
        "when unset; *null* says whether it may be written as `null`. Unknown keys are ignored "
        "when decoding. Timestamps are ISO-8601 strings.",
        "",
    ]
    for name, cls in events.EVENT_TYPES.items():
        lines += [f"## {name}", ""]
        doc = inspect.getdoc(cls)
        if doc and cls.__doc__ is not None and cls.__doc__ != events.Event.__doc__:
            lines += [" ".join(doc.split()).replace("``", "`"), ""]
        lines += ["| field | type | required | null | notes |", "|---|---|---|---|---|"]
        for field in msgspec.structs.fields(cls):
            nullable = type(None) in typing_args(field.type)
            note = next(
                (docs[(c.__name__, field.name)] for c in cls.__mro__
                 if (c.__name__, field.name) in docs),
                "",
            )  # fmt: skip
            required, null = "yes" if field.required else "no", "yes" if nullable else "no"
            note = note.replace("|", "\\|")
            lines.append(
                f"| `{field.name}` | {_type_name(field.type)} | {required} | {null} | {note} |"
            )
        lines.append("")
    return "\n".join(lines)


def typing_args(tp: Any) -> tuple[Any, ...]:
    import typing

    return typing.get_args(tp)


def rendered() -> dict[Path, str]:
    return {
        DOCS / "openapi.json": json.dumps(openapi(), indent=2, sort_keys=True) + "\n",
        DOCS / "asyncapi.yaml": yaml.safe_dump(asyncapi(), sort_keys=True, width=100),
        DOCS / "settings.md": settings_markdown(),
        DOCS / "events.md": events_markdown(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/ is stale")
    args = parser.parse_args()
    stale = []
    for path, text in rendered().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
    if stale:
        print(f"stale (run make contracts): {', '.join(stale)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
