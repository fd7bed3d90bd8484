"""Figures derived across cases: host cost per parameter and per group, and the
cost of new gradients every step.

- **host us per parameter**: a single-group case of many tensors (at least
  ``MANY_TENSORS``), ``host_us / tensors``. On CPU host time is the whole step, so
  this includes moving the bytes; ``floor`` is what that alone takes per tensor
  at the run's copy bandwidth (minimal bytes / copy GB/s / tensors).
- **host us per group**: an N-groups case against the same tensors in one group,
  ``(host_us(N groups) - host_us(1 group)) / N``, with ``ratio`` = median(N groups) /
  median(1 group) (the issue's goal: within 1.5).
- **new grads**: a ``new_grads`` case against the same case with gradients in
  place: ``ratio`` = median(new grads) / median(in place).
"""

from collections.abc import Callable
from typing import Any

from .cases import Case
from .run import Row

MANY_TENSORS = 100


def _twin(case: Case, cases: list[Case], **changes: Any) -> Case | None:
    """The case of ``cases`` that differs from ``case`` only as ``changes`` say."""
    for other in cases:
        same = (
            other.optimizer is case.optimizer
            and other.variant == case.variant
            and other.dtype == case.dtype
            and other.tensors == case.tensors
            and other.elements == case.elements
        )
        if same and all(check(other) for check in changes.values()):
            return other
    return None


def summarize(cases: list[Case], rows: list[Row], copy_gb_per_s: float) -> dict[str, list[dict[str, Any]]]:
    """``per_parameter``, ``per_group`` and ``new_grads`` records, one per (case, implementation) measured."""
    measured = {(row.case, row.implementation): row for row in rows if row.median_ms is not None}
    names = list(dict.fromkeys(row.implementation for row in rows))
    result: dict[str, list[dict[str, Any]]] = {"per_parameter": [], "per_group": [], "new_grads": []}
    for case in cases:
        if len(case.groups) == 1 and case.tensors >= MANY_TENSORS and not case.new_grads:
            floor_us = case.minimal_bytes / (copy_gb_per_s * 1e9) * 1e6 / case.tensors
            for name in names:
                row = measured.get((case.name, name))
                if row:
                    result["per_parameter"].append({
                        "case": case.name, "implementation": name, "tensors": case.tensors,
                        "host_us": row.host_us, "us_per_tensor": row.host_us / case.tensors,
                        "floor_us_per_tensor": floor_us,
                    })
        if len(case.groups) > 1 and not case.new_grads:
            twin = _twin(case, cases, groups=lambda c: len(c.groups) == 1, new_grads=lambda c: not c.new_grads)
            for name in names if twin else []:
                row, one = measured.get((case.name, name)), measured.get((twin.name, name))
                if row and one:
                    result["per_group"].append({
                        "case": case.name, "twin": twin.name, "implementation": name, "groups": len(case.groups),
                        "host_us": row.host_us, "twin_host_us": one.host_us,
                        "us_per_group": (row.host_us - one.host_us) / len(case.groups),
                        "ratio": row.median_ms / one.median_ms,
                    })
        if case.new_grads:
            twin = _twin(case, cases, layout=lambda c: c.layout == case.layout, new_grads=lambda c: not c.new_grads)
            for name in names if twin else []:
                row, in_place = measured.get((case.name, name)), measured.get((twin.name, name))
                if row and in_place:
                    result["new_grads"].append({
                        "case": case.name, "twin": twin.name, "implementation": name,
                        "median_ms": row.median_ms, "in_place_ms": in_place.median_ms,
                        "ratio": row.median_ms / in_place.median_ms,
                        "steady_mb": row.steady_mb, "peak_mb": row.peak_mb,
                    })
    return result


def _block(
    title: str, records: list[dict[str, Any]], label: Callable[[dict], str], cell: Callable[[dict], str]
) -> list[str]:
    """One line per label, one column per implementation."""
    if not records:
        return []
    names = list(dict.fromkeys(r["implementation"] for r in records))
    labels = list(dict.fromkeys(map(label, records)))
    cells = {(label(r), r["implementation"]): cell(r) for r in records}
    width = max(map(len, labels))
    columns = [max(len(name), *(len(cells.get((l, name), "-")) for l in labels)) for name in names]
    lines = ["", title, "  ".join([" " * width] + [f"{n:>{w}}" for n, w in zip(names, columns)])]
    for l in labels:
        lines.append("  ".join([f"{l:<{width}}"] + [f"{cells.get((l, n), '-'):>{w}}" for n, w in zip(names, columns)]))
    return lines


def text(summary: dict[str, list[dict[str, Any]]]) -> str:
    """The summary block printed after the tables."""
    lines = _block(
        "host us per parameter (host us / tensors; floor: the minimal bytes per tensor at copy bandwidth)",
        summary["per_parameter"],
        lambda r: f"{r['case']} (floor {r['floor_us_per_tensor']:.2f})",
        lambda r: f"{r['us_per_tensor']:.2f}",
    )
    lines += _block(
        "host us per group ((N groups - 1 group) / N) and median N groups / 1 group",
        summary["per_group"],
        lambda r: f"{r['case']} vs 1 group",
        lambda r: f"{r['us_per_group']:.1f} ({r['ratio']:.2f}x)",
    )
    lines += _block(
        "new gradients every step: median ms (new grads / in place)",
        summary["new_grads"],
        lambda r: r["case"],
        lambda r: f"{r['median_ms']:.3f} ({r['ratio']:.2f}x)",
    )
    return "\n".join(lines)
