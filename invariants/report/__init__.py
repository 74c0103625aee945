"""``python -m invariants report``: every lemma and theorem of the paper, run, on
one Markdown page and one HTML page.

- `invariants.report.rows`: the rows (one per lemma or theorem) and how each runs;
- `invariants.report.properties`: guarantees as properties over generated cases;
- `invariants.report.constructions`: counterexamples reproduced end to end;
- `invariants.report.figures`: the PNGs (matplotlib, optional);
- `invariants.report.render`: the Markdown and HTML pages.

`write_report(out_dir, ...)` runs the rows, writes ``report.md``, ``report.html``
and ``figures/*.png`` under `out_dir` and returns the `Report`; `main` is the
command line's entry: exit code 0 when every row is as the paper says, 1 when a
row contradicts it. Bad input raises `ReportInputError` (the CLI's exit code 2).
"""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata
from pathlib import Path

__all__ = ["ReportInputError", "check_out_dir", "main", "write_report"]

DEFAULT_OUT = "margin-report"
DEFAULT_EXAMPLES = 20
_PACKAGES = ("margin-invariants", "numpy", "scipy", "cvxpy", "clarabel", "hypothesis")


class ReportInputError(ValueError):
    """A bad option or output directory: one line for the user."""


def check_out_dir(out) -> Path:
    """`out` as a directory that exists (created if needed) and can be written."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ReportInputError(f"--out {str(out)!r} exists and is not a directory")
    try:
        (path / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportInputError(
            f"cannot create --out {str(out)!r}: {exc.strerror or exc}"
        ) from None
    return path


def versions(with_figures: bool) -> dict:
    found = {"python": platform.python_version()}
    for name in (*_PACKAGES, "matplotlib"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    if not with_figures:
        found["matplotlib"] = "not used (not importable)"
    return found


def write_report(
    out_dir,
    *,
    rows=None,
    examples: int = DEFAULT_EXAMPLES,
    seed: int = 0,
    progress=None,
    command: str = "python -m invariants report",
):
    """Run `rows` (default every row), write the pages and figures, return the
    `render.Report`. `progress(k, total, outcome)` is called after each row."""
    from invariants.report import figures, render
    from invariants.report.rows import ROWS, run_row

    if not (isinstance(examples, int) and examples >= 1):
        raise ReportInputError(f"examples={examples!r} must be an integer >= 1")
    out = check_out_dir(out_dir)
    rows = ROWS if rows is None else tuple(rows)
    outcomes = []
    for k, row in enumerate(rows, start=1):
        outcomes.append(run_row(row, examples=examples, seed=seed))
        if progress is not None:
            progress(k, len(rows), outcomes[-1])

    with_figures = figures.available()
    report = render.Report(
        outcomes, examples, seed, versions(with_figures), command=command
    )
    # Figures of an earlier run into the same directory would sit next to this
    # run's pages as if they belonged to it; every PNG there is ours.
    for stale in (out / "figures").glob("*.png"):
        stale.unlink()
    if with_figures:
        _draw(report, out / "figures")
    else:
        report.figures_note = (
            "Figures need matplotlib, which could not be imported: "
            f"`{figures.INSTALL_HINT}`, then run the report again."
        )
    (out / "report.md").write_text(render.markdown_page(report), encoding="utf-8")
    (out / "report.html").write_text(render.html_page(report), encoding="utf-8")
    return report


def _draw(report, directory: Path) -> None:
    from invariants.report import figures

    if any(x.sign == "+" and x.measurements for x in report.outcomes):
        figures.summary_figure(report.outcomes, directory / "positive.png")
        report.figures["summary"] = "figures/positive.png"
    for x in report.outcomes:
        for r in x.reproductions:
            name = r.construction.name
            figures.construction_figure(r, directory / f"{name}.png")
            report.figures[name] = f"figures/{name}.png"


def print_progress(k: int, total: int, outcome) -> None:
    width = len(str(total))
    sys.stderr.write(
        f"[{k:>{width}}/{total}] {outcome.title} ... {outcome.headline()} "
        f"{outcome.seconds:.1f}s\n"
    )
    sys.stderr.flush()


def main(
    out,
    *,
    only=None,
    examples: int = DEFAULT_EXAMPLES,
    seed: int = 0,
    quiet: bool = False,
) -> int:
    """The command line's `report`: run, write, print the summary table and the
    paths on stdout; 0 if every row is as the paper says, 1 otherwise."""
    from invariants.report import render
    from invariants.report.rows import select

    try:
        rows = select(only)
    except ValueError as exc:
        raise ReportInputError(f"--only: {exc}") from None
    check_out_dir(out)  # before any work: a bad --out fails in milliseconds
    command = f"python -m invariants report --examples {examples} --seed {seed}"
    if only:
        command += f" --only {','.join(r.key for r in rows)}"
    started = time.perf_counter()
    report = write_report(
        out,
        rows=rows,
        examples=examples,
        seed=seed,
        progress=None if quiet else print_progress,
        command=command,
    )
    lines = render.summary_lines(report)
    lines.append(f"wrote {Path(out) / 'report.md'} and {Path(out) / 'report.html'}")
    if report.figures_note:
        lines.append(report.figures_note)
    lines.append(f"{time.perf_counter() - started:.1f} s")
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if report.contradictions else 0
