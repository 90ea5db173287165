"""Run every benchmark and write benchmarks/results.json and benchmarks/results.md.

    uv run python benchmarks/run_all.py [--only ingest,api] [--baseline benchmarks/results.json]

Each script saves its figures with ``--save``; this collects them into one JSON document (so a
later run can be compared with ``--baseline``) and a short Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "eventstore",
    "ingest",
    "evaluator",
    "no_data",
    "delivery",
    "api",
    "e2e",
    "export",
    "backtest",
    "console",
    "telemetry_layout",
)
EXTRA_ARGS = {"telemetry_layout": ["--timescale"]}
LAYOUT_MEASURES = (
    ("DB CPU us/reading", "DB CPU µs/reading"),
    ("DB CPU us/redelivered reading", "DB CPU µs/redelivered reading"),
    ("bytes/reading at rest", "bytes/reading at rest"),
    ("readings/s", "readings/s"),
)


def run_one(name: str, out: Path) -> dict[str, float]:
    print(f"== {name}", flush=True)
    command = [
        sys.executable,
        str(HERE / f"{name}.py"),
        "--save",
        str(out),
        *EXTRA_ARGS.get(name, []),
    ]
    completed = subprocess.run(command, cwd=HERE.parent, check=False)
    if completed.returncode != 0 or not out.exists():
        print(f"!! {name} failed (exit {completed.returncode})", flush=True)
        return {}
    figures: dict[str, float] = json.loads(out.read_text())
    return figures


def markdown(results: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]]) -> str:
    lines = ["| benchmark | figure | value | baseline |", "| --- | --- | ---: | ---: |"]
    for name, figures in results.items():
        for figure, value in figures.items():
            before = baseline.get(name, {}).get(figure)
            shown = f"{before:,.1f}" if isinstance(before, int | float) else ""
            lines.append(f"| {name} | {figure} | {value:,.1f} | {shown} |")
    layouts = results.get("telemetry_layout")
    return "\n".join(lines) + "\n" + (layout_section(layouts) if layouts else "")


# the rows of benchmarks/telemetry_layout.py the ratios are taken against
BEFORE_STORE = "before 0700: store write (telemetry + device state)"
BEFORE_STATEMENT = "before 0700: telemetry statement only"


def layout_section(figures: dict[str, float]) -> str:
    """The telemetry layouts side by side: one row per layout, one column per measure."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in figures.items():
        layout, _, measure = key.rpartition(": ")
        rows.setdefault(layout, {})[measure] = value
    base = rows.get(BEFORE_STORE, {}).get("DB CPU us/reading")
    statement = rows.get(BEFORE_STATEMENT, {}).get("DB CPU us/reading")
    head = [label for _, label in LAYOUT_MEASURES] + ["DB CPU vs before", "vs statement"]
    lines = [
        "",
        "## Telemetry layouts side by side (`make bench-layout`, issue 17)",
        "",
        "Database CPU is the backend process's user+system CPU; bytes at rest are table + "
        "indexes per stored reading (plain PostgreSQL), and on TimescaleDB (PGlite harness) "
        "before and after compressing every chunk. DB CPU ratios are relative to the layout "
        f"before migration 0700: `{BEFORE_STORE}` and `{BEFORE_STATEMENT}`. "
        "See `benchmarks/telemetry_layout.py`.",
        "",
        "| layout | " + " | ".join(head) + " |",
        "| --- |" + " ---: |" * len(head),
    ]
    for layout, measures in rows.items():
        if layout.startswith("TimescaleDB"):
            continue
        cells = [f"{measures[m]:,.1f}" if m in measures else "" for m, _ in LAYOUT_MEASURES]
        cpu = measures.get("DB CPU us/reading")
        cells.append(f"{cpu / base:.2f}" if cpu and base else "")
        cells.append(f"{cpu / statement:.2f}" if cpu and statement else "")
        lines.append(f"| {layout} | " + " | ".join(cells) + " |")
    timescale = {k: v for k, v in rows.items() if k.startswith("TimescaleDB")}
    if timescale:
        lines += [
            "",
            "| TimescaleDB layout | bytes/reading uncompressed | bytes/reading compressed |",
            "| --- | ---: | ---: |",
        ]
        for layout, measures in timescale.items():
            before = measures.get("bytes/reading uncompressed", float("nan"))
            after = measures.get("bytes/reading compressed", float("nan"))
            lines.append(
                f"| {layout.removeprefix('TimescaleDB ')} | {before:,.1f} | {after:,.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated subset of " + ",".join(BENCHMARKS))
    p.add_argument("--baseline", type=Path, help="an earlier results.json to compare against")
    args = p.parse_args()
    chosen = args.only.split(",") if args.only else list(BENCHMARKS)
    (HERE / "results").mkdir(exist_ok=True)
    results = {name: run_one(name, HERE / "results" / f"{name}.json") for name in chosen}
    baseline = json.loads(args.baseline.read_text()) if args.baseline else {}
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results.md").write_text(markdown(results, baseline))
    print((HERE / "results.md").read_text())
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
