"""The results chart: effective GB/s per case and implementation, with % of copy bandwidth."""

from pathlib import Path

from .run import Row


def write_chart(path: Path, rows: list[Row], copy_gb_per_s: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(row.case for row in rows))
    names = list(dict.fromkeys(row.implementation for row in rows))
    height = 0.8 / len(names)
    figure, axes = plt.subplots(figsize=(11, 0.5 + 0.22 * len(cases) * len(names)))
    for index, name in enumerate(names):
        values = {row.case: row.gb_per_s or 0.0 for row in rows if row.implementation == name}
        positions = [c + index * height for c in range(len(cases))]
        axes.barh(positions, [values.get(case, 0.0) for case in cases], height, label=name)
    axes.set_yticks([c + 0.4 - height / 2 for c in range(len(cases))], cases, fontsize=7)
    axes.invert_yaxis()
    axes.axvline(copy_gb_per_s, color="black", linestyle="--", linewidth=1)
    axes.set_xlabel(f"effective GB/s (minimal bytes / median step); dashed: copy_ at {copy_gb_per_s:.1f} GB/s")
    percent = axes.secondary_xaxis(
        "top", functions=(lambda x: 100 * x / copy_gb_per_s, lambda p: p * copy_gb_per_s / 100)
    )
    percent.set_xlabel("% of measured copy bandwidth")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
