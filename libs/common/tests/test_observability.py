"""configure_telemetry: the JSON-lines span file, the contrib instrumentations switched on only
when spans go somewhere, and log lines carrying the trace id. Each case runs in a fresh
interpreter (the tracer provider and the instrumentations are process-global)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = """
import asyncio, json, logging, sys
import asyncpg, aiohttp
from opentelemetry import trace
from fleetpulse.common.observability import configure_logging, configure_telemetry, shutdown_telemetry

traces = sys.argv[1] or None
configure_logging("svc", "INFO")
configure_telemetry("svc", None, traces)

async def main():
    with trace.get_tracer("t").start_as_current_span("outer"):
        logging.getLogger("x").info("inside")
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        await conn.fetchval("SELECT 1")
        await conn.close()
asyncio.run(main())
patched = getattr(asyncpg.Connection.fetchval, "__wrapped__", None) is not None
print(json.dumps({"asyncpg_patched": patched}))
shutdown_telemetry()
"""


def run(tmp_path: Path, traces: str) -> tuple[list[dict[str, object]], str]:
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script), traces], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return lines, done.stderr


def test_spans_go_to_the_file_with_library_spans_and_logs_carry_the_trace(tmp_path: Path) -> None:
    traces = tmp_path / "spans.jsonl"
    lines, _ = run(tmp_path, str(traces))
    spans = [json.loads(line) for line in traces.read_text().splitlines()]
    outer = next(s for s in spans if s["name"] == "outer")
    trace_id = outer["context"]["trace_id"]
    # the asyncpg instrumentation made child spans of the queries
    queries = [s for s in spans if s["name"] != "outer"]
    assert queries and all(s["context"]["trace_id"] == trace_id for s in queries)
    assert outer["resource"]["attributes"]["service.name"] == "svc"
    log = next(line for line in lines if line.get("msg") == "inside")
    assert log["trace_id"] == trace_id.removeprefix("0x")
    assert not any(key.startswith("otel") for key in log)
    assert {"asyncpg_patched": True} in lines


def test_without_an_exporter_nothing_is_instrumented(tmp_path: Path) -> None:
    lines, _ = run(tmp_path, "")
    assert {"asyncpg_patched": False} in lines
    log = next(line for line in lines if line.get("msg") == "inside")
    assert "trace_id" not in log  # the no-op API: no trace, and no cost on hot paths
    assert not list(tmp_path.glob("*.jsonl"))
