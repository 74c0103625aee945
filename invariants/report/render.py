"""The report as Markdown and as HTML, from the same `Report` record.

Both pages hold the summary table (one row per lemma or theorem), the settings and
versions that reproduce it, the figures (linked by relative path) or the line that
says how to get them, and one section per reproduced construction with its steps.
Nothing time-dependent is written, so a rerun with the same seed gives the same
pages.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from invariants.report import outcome as o

__all__ = ["Report", "html_page", "markdown_page", "summary_lines"]

TITLE = "margin-invariants: the paper's results, run"
PAPER = (
    "G. Vardi, O. Shamir, N. Srebro, On Margin Maximization in Linear and ReLU "
    "Networks (NeurIPS 2022)"
)
_SYMBOL = {o.HOLDS: "✔", o.REPRODUCED: "✔", o.FAILED: "✘", o.INCONCLUSIVE: "?"}


@dataclass
class Report:
    """Everything the pages show. `figures` maps a construction name (and
    "summary") to a PNG path relative to the pages; `figures_note` says why there
    are none."""

    outcomes: list
    examples: int
    seed: int
    versions: dict
    figures: dict = field(default_factory=dict)
    figures_note: str = ""
    command: str = "python -m invariants report"

    @property
    def contradictions(self) -> list:
        return [x for x in self.outcomes if x.contradicts_paper]

    def verdict(self) -> str:
        bad = self.contradictions
        if bad:
            keys = ", ".join(x.title for x in bad)
            return f"{len(bad)} row(s) contradict the paper: {keys}."
        shaky = [x.title for x in self.outcomes if x.status == o.INCONCLUSIVE]
        text = f"Every row run ({len(self.outcomes)}) is as the paper says."
        if shaky:
            text += f" No case could be judged for: {', '.join(shaky)}."
        return text


def _worst(x) -> str:
    if x.worst is None:
        return "-"
    return f"{x.quantity} {x.worst.value:.1e} (bound {x.worst.tolerance:.0e})"


def _examples(x) -> str:
    text = str(x.examples)
    if x.sign == "-":
        return f"{text} construction{'' if x.examples == 1 else 's'}"
    rejected = sum(x.rejected.values())
    return f"{text} (+{rejected} rejected)" if rejected else text


def summary_lines(report: Report) -> list[str]:
    """A plain-text table for the terminal."""
    lines = [f"{'row':<26}{'status':<28}{'examples':<18}worst"]
    for x in report.outcomes:
        lines.append(
            f"{x.title:<26}{x.status:<28}{_examples(x):<18}{_worst(x)}".rstrip()
        )
    lines.append(report.verdict())
    return lines


# -- Markdown --------------------------------------------------------------------------


def _md(text: str) -> str:
    # A table cell ends at "|", and the paper's norms are full of them.
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_page(report: Report) -> str:
    out = [f"# {TITLE}", "", f"Source: {PAPER}. {_how()}", ""]
    out += [f"**{report.verdict()}**", ""]
    out += [
        "| | Result | Claim | Status | Examples | Worst | Witness |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in report.outcomes:
        cells = [
            _SYMBOL[x.status], x.title, f"({x.sign}) {x.claim}", x.status,
            _examples(x), _worst(x), x.witness or "-",
        ]  # fmt: skip
        out.append("| " + " | ".join(_md(c) for c in cells) + " |")
    out += ["", _settings_line(report), ""]
    if "summary" in report.figures:
        out += [f"![positive rows]({report.figures['summary']})", ""]
    if report.figures_note:
        out += [f"> {report.figures_note}", ""]
    rejected = [x for x in report.outcomes if x.rejected]
    if rejected:
        out += ["## Cases that could not be judged", ""]
        for x in rejected:
            reasons = "; ".join(f"{n} x {r}" for r, n in sorted(x.rejected.items()))
            out.append(f"- {x.title}: {reasons}")
        out.append("")
    for x in report.outcomes:
        for r in x.reproductions:
            out += _md_construction(report, x, r)
    return "\n".join(out) + "\n"


def _md_construction(report, x, r) -> list[str]:
    c = r.construction
    status = "reproduced" if r.ok else "FAILED"
    out = [f"## {c.name}: {x.title}, {status}", "", c.note, ""]
    if c.name in report.figures:
        path = report.figures[c.name]
        out += [f"[![{c.name}]({path})]({path})", ""]
    out += ["| Step | As the paper says | Measured |", "|---|---|---|"]
    for s in r.steps:
        out.append(f"| {_md(s.name)} | {'yes' if s.ok else 'NO'} | {_md(s.detail)} |")
    return [*out, ""]


# -- HTML ------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: .35em .6em; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; }
td.num { white-space: nowrap; }
.badge { border-radius: 1em; padding: .1em .7em; white-space: nowrap; color: #fff; }
.holds, .reproduced { background: #2e7d32; }
.failed { background: #c62828; }
.inconclusive { background: #9e9e9e; }
.verdict { font-size: 1.15em; font-weight: 600; }
.witness { font-size: .85em; color: #444; max-width: 40em; }
img { max-width: 100%; border: 1px solid #eee; }
.note { background: #fff8e1; padding: .6em 1em; border-left: 4px solid #f9a825; }
"""


def _badge(status: str) -> str:
    css = status.split()[0]
    return f'<span class="badge {css}">{html.escape(status)}</span>'


def html_page(report: Report) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(TITLE)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(TITLE)}</h1>",
        f"<p>Source: {e(PAPER)}. {e(_how())}</p>",
        f'<p class="verdict">{e(report.verdict())}</p>',
        (
            "<table><tr><th>Result</th><th>Claim</th><th>Status</th>"
            "<th>Examples</th><th>Worst</th><th>Witness</th></tr>"
        ),
    ]
    for x in report.outcomes:
        anchor = x.reproductions[0].construction.name if x.reproductions else ""
        title = f'<a href="#{e(anchor)}">{e(x.title)}</a>' if anchor else e(x.title)
        out.append(
            f"<tr><td>{title}</td><td>({e(x.sign)}) {e(x.claim)}</td>"
            f"<td>{_badge(x.status)}</td><td class=num>{e(_examples(x))}</td>"
            f"<td class=num>{e(_worst(x))}</td>"
            f'<td class="witness">{e(x.witness or "-")}</td></tr>'
        )
    out += ["</table>", f"<p>{e(_settings_line(report))}</p>"]
    if report.figures_note:
        out.append(f'<p class="note">{e(report.figures_note)}</p>')
    if "summary" in report.figures:
        out.append(f'<img src="{e(report.figures["summary"])}" alt="positive rows">')
    for x in report.outcomes:
        for r in x.reproductions:
            out += _html_construction(report, x, r)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_construction(report, x, r) -> list[str]:
    e = html.escape
    c = r.construction
    status = o.REPRODUCED if r.ok else o.FAILED
    out = [
        f'<h2 id="{e(c.name)}">{e(c.name)}: {e(x.title)} {_badge(status)}</h2>',
        f"<p>{e(c.note)}</p>",
    ]
    if c.name in report.figures:
        path = e(report.figures[c.name])
        out.append(f'<a href="{path}"><img src="{path}" alt="{e(c.name)}"></a>')
    out.append(
        "<table><tr><th>Step</th><th>As the paper says</th><th>Measured</th></tr>"
    )
    for s in r.steps:
        mark = "yes" if s.ok else "<b>NO</b>"
        out.append(
            f"<tr><td>{e(s.name)}</td><td>{mark}</td><td>{e(s.detail)}</td></tr>"
        )
    out.append("</table>")
    return out


# -- shared text -----------------------------------------------------------------------


def _how() -> str:
    return (
        "Guarantees (+) run as properties over cases drawn from the public "
        "strategies and judged by the library's checkers; counterexamples (-) "
        "reproduce the paper's constructions (flow, KKT, certificates, a witness "
        "verified in exact arithmetic). Worst: the case closest to its bound."
    )


def _settings_line(report: Report) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    return (
        f"Settings: up to {report.examples} examples per positive row (Hypothesis, "
        f"seed {report.seed}, no database, no shrinking); witness searches seeded "
        f"with {report.seed}. Versions: {versions}. Reproduce with "
        f"`{report.command}`."
    )
