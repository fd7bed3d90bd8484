"""The results table (printed) and its JSON record."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .run import Row

COLUMNS = [
    # header, width, row attribute, format
    ("implementation", 22, "implementation", "{}"),
    ("median ms", 10, "median_ms", "{:.3f}"),
    ("GB/s", 7, "gb_per_s", "{:.1f}"),
    ("% copy", 7, "percent_of_copy", "{:.0f}"),
    ("x fastest torch", 15, "speedup_vs_fastest_torch", "{:.2f}"),
    ("host us", 9, "host_us", "{:.0f}"),
    ("launches", 8, "launches", "{}"),
    ("steady MB", 9, "steady_mb", "{:.1f}"),
    ("peak MB", 8, "peak_mb", "{:.1f}"),
    ("compile s", 9, "compile_s", "{:.1f}"),
]


def _cell(row: Row, attribute: str, spec: str) -> str:
    value = getattr(row, attribute)
    return "-" if value is None else spec.format(value)


def table(rows: list[Row]) -> str:
    """Rows grouped by case, one line per implementation; skipped ones say why."""
    header = "  ".join(f"{name:>{width}}" if i else f"{name:<{width}}" for i, (name, width, _, _) in enumerate(COLUMNS))
    lines = []
    case = None
    for row in rows:
        if row.case != case:
            case = row.case
            lines += ["", f"{row.case}: {row.tensors} tensors, {row.elements:,} elements, {row.groups} groups, "
                      f"{row.minimal_bytes / 1e6:.1f} MB minimal traffic", header]
        if row.skipped:
            lines.append(f"{row.implementation:<22}  ({row.skipped})")
            continue
        cells = [_cell(row, attr, spec) for _, _, attr, spec in COLUMNS]
        lines.append("  ".join(
            f"{cell:>{width}}" if i else f"{cell:<{width}}" for i, (cell, (_, width, _, _)) in enumerate(zip(cells, COLUMNS))
        ))
    return "\n".join(lines)


def write_json(path: Path, metadata: dict[str, Any], rows: list[Row]) -> None:
    with open(path, "w") as out:
        json.dump({**metadata, "rows": [asdict(row) for row in rows]}, out, indent=1)
        out.write("\n")
