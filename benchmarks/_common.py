"""Shared by the benchmark scripts: a throwaway migrated database, baselines, printing."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

RESULTS_DIR = Path(__file__).parent / "results"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--baseline", type=Path, help="JSON of an earlier run to compare against")
    p.add_argument("--save", type=Path, help="write this run's figures as JSON")
    return p


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its descendants; empty when it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def rss_mib(processes: list[psutil.Process]) -> float:
    """Their summed resident memory in MiB (a process that exits meanwhile counts 0)."""
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total / 2**20


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=1000, method="inclusive")[int(q * 1000) - 1]


def report(
    title: str, figures: Mapping[str, float], baseline: Path | None, save: Path | None
) -> None:
    """Print figures (and the change against a baseline) and optionally save them."""
    before: dict[str, Any] = json.loads(baseline.read_text()) if baseline else {}
    print(f"\n{title}")
    for name, value in figures.items():
        line = f"  {name:<40} {value:>14,.1f}"
        if before.get(name):
            change = (value - before[name]) / before[name] * 100
            line += f"   (baseline {before[name]:,.1f}, {change:+.1f}%)"
        print(line)
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(dict(figures), indent=2))
