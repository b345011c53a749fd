"""How `make attack` reports: one line per figure as it is measured, a table at the end, and
two runs side by side (`--compare`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def compact(value: Any) -> str:
    """A figure on one line: dicts as `key=value` pairs, floats as they were rounded."""
    if isinstance(value, dict):
        return " ".join(f"{k}={compact(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ",".join(compact(v) for v in value) or "-"
    if value is None:
        return "-"
    return str(value)


class Figures(dict[str, Any]):
    """One scenario's figures; each is printed when recorded, so a long run shows progress
    and an interrupted or failed one still keeps what it measured."""

    def __init__(self, scenario: str) -> None:
        super().__init__()
        self.scenario = scenario

    def put(self, key: str, value: Any) -> Any:
        self[key] = value
        print(f"  {self.scenario}.{key}: {compact(value)}", flush=True)
        return value

    def under(self, prefix: str) -> Part:
        return Part(self, prefix)


class Part:
    """The figures of one part of a scenario, recorded as `prefix.key`."""

    def __init__(self, figures: Figures, prefix: str) -> None:
        self._figures, self._prefix = figures, prefix

    def put(self, key: str, value: Any) -> Any:
        return self._figures.put(f"{self._prefix}.{key}", value)


def table(results: dict[str, dict[str, Any]], columns: list[str] | None = None) -> str:
    """`results`: column name -> {scenario: {figure: value}}; one row per figure."""
    names = columns or list(results)
    rows: list[tuple[str, ...]] = [("figure", *names)]
    seen: dict[str, None] = {}
    for run in results.values():
        for scenario, figures in run.items():
            for key in figures:
                seen.setdefault(f"{scenario}.{key}", None)
    for name in seen:
        scenario, key = name.split(".", 1)
        rows.append((name, *(compact(results[c].get(scenario, {}).get(key, "n/a")) for c in names)))
    widths = [min(60, max(len(row[i]) for row in rows)) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def compare(files: list[Path]) -> str:
    """Two (or more) runs' JSON files side by side."""
    runs = {}
    for path in files:
        report = json.loads(path.read_text())
        runs[f"{report['label']}"] = report["figures"]
        print(f"{report['label']}: {report['source']} ({report['commit']}), {report['when']}")
    return table(runs)
