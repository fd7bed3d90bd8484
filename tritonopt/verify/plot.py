"""The parity report as a PNG: errors against the oracle per step, candidate beside torch."""

from pathlib import Path

from .trajectory import StepReport


def save_plot(reports: list[StepReport], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    steps = [r.step for r in reports]
    figure, (absolute, ulps) = pyplot.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for axis, field, label in ((absolute, "max_abs", "max |error| vs float64"), (ulps, "max_ulp", "max error (ULPs)")):
        axis.plot(steps, [getattr(r.candidate, field) for r in reports], "o-", label="candidate")
        axis.plot(steps, [getattr(r.torch, field) for r in reports], "s--", label="torch")
        axis.set_xlabel("step")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    ulps.plot(steps, [r.candidate_vs_torch_ulp for r in reports], ":", color="gray", label="candidate vs torch")
    ulps.legend()
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
