"""No function on a hot path is longer than 40 lines (issue 16's bar for shipped code).

The hot paths are the modules every reading, alert or delivery passes through: ingest's
decode/batch/store/ack path, the evaluator's decode/evaluate/write path, the dispatcher's and the
delivery worker's handlers and stores, and the shared code under them. A function's length is
its whole extent (signature, docstring and body), as a reader sees it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 40
HOT_PATHS = (
    "libs/common/src/fleetpulse/common/contracts/records.py",
    "libs/common/src/fleetpulse/common/rules/domain.py",
    "libs/common/src/fleetpulse/common/rules/conditions.py",
    "libs/common/src/fleetpulse/common/mqtt_subscriber.py",
    "libs/common/src/fleetpulse/common/messaging/sqs.py",
    "libs/common/src/fleetpulse/common/messaging/_batching.py",
    "libs/common/src/fleetpulse/common/messaging/outbox.py",
    "libs/common/src/fleetpulse/common/eventstore/postgres.py",
    "libs/common/src/fleetpulse/common/eventstore/unit_of_work.py",
    "libs/common/src/fleetpulse/common/projections/alerts.py",
    "libs/common/src/fleetpulse/common/projections/deliveries.py",
    "services/ingest/src/fleetpulse/ingest/batch.py",
    "services/ingest/src/fleetpulse/ingest/domain.py",
    "services/ingest/src/fleetpulse/ingest/pipeline.py",
    "services/ingest/src/fleetpulse/ingest/store.py",
    "services/ingest/src/fleetpulse/ingest/mqtt_source.py",
    "services/ingest/src/fleetpulse/ingest/sqs_source.py",
    "services/ingest/src/fleetpulse/ingest/forwarder.py",
    "services/evaluator/src/fleetpulse/evaluator/entrypoints.py",
    "services/evaluator/src/fleetpulse/evaluator/messages.py",
    "services/evaluator/src/fleetpulse/evaluator/coalescer.py",
    "services/evaluator/src/fleetpulse/evaluator/service.py",
    "services/evaluator/src/fleetpulse/evaluator/store.py",
    "services/evaluator/src/fleetpulse/evaluator/alerting.py",
    "services/dispatcher/src/fleetpulse/dispatcher/entrypoints.py",
    "services/dispatcher/src/fleetpulse/dispatcher/service.py",
    "services/dispatcher/src/fleetpulse/dispatcher/domain.py",
    "services/dispatcher/src/fleetpulse/dispatcher/store.py",
    "services/delivery_worker/src/fleetpulse/delivery_worker/entrypoints.py",
    "services/delivery_worker/src/fleetpulse/delivery_worker/service.py",
    "services/delivery_worker/src/fleetpulse/delivery_worker/store.py",
    "services/delivery_worker/src/fleetpulse/delivery_worker/channels/webhook.py",
)


def long_functions(source: str, limit: int = LIMIT) -> list[tuple[str, int]]:
    """(name, lines) of each function in ``source`` longer than ``limit`` lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > limit:
                found.append((node.name, length))
    return found


@pytest.mark.parametrize("path", HOT_PATHS)
def test_hot_path_functions_are_short(path: str) -> None:
    assert long_functions((ROOT / path).read_text()) == []


def test_the_check_flags_a_long_function() -> None:
    """Positive control: a 41-line function is flagged, a 40-line one is not."""
    body = "".join(f"    x{i} = {i}\n" for i in range(39))
    assert long_functions(f"def ok():\n{body}") == []
    assert long_functions(f"def long():\n{body}    y = 0\n") == [("long", 41)]


def test_every_hot_path_exists() -> None:
    """A renamed module must be renamed here too, or the check would silently shrink."""
    assert [p for p in HOT_PATHS if not (ROOT / p).is_file()] == []
