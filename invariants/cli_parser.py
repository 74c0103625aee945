"""The command line's grammar: the subcommands of ``python -m invariants``, their
options, and the argument types that refuse bad values with one line.

What each subcommand does lives in `invariants.cli`; this module only says what it
accepts, so that both read alone.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["UsageError", "build_parser"]


class UsageError(Exception):
    """Bad input from the user: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    # argparse's own errors print the usage block first; a caller parsing stderr
    # wants the same single `error:` line as for a bad case file.
    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _positive_finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be positive and finite")
    return value


def _direction_tol(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _rtol(text: str) -> float:
    value = _positive_finite(text)
    if not 1e-13 <= value < 1e-2:
        raise argparse.ArgumentTypeError(f"{text!r} must be in [1e-13, 1e-2)")
    return value


def _whole(text: str, minimum: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
    return value


def _certificate_tol(text: str) -> float:
    value = _positive_finite(text)
    # The certificates refuse more: beyond 1e-2 "optimal" would mean little.
    if value > 1e-2:
        raise argparse.ArgumentTypeError(f"{text!r} must be at most 1e-2")
    return value


def _count(text: str) -> int:
    return _whole(text, 1)


def _seed(text: str) -> int:
    return _whole(text, 0)


def _shard(text: str) -> tuple[int, int]:
    i, sep, n = text.partition("/")
    try:
        shard = (int(i), int(n))
    except ValueError:
        shard = None
    if not sep or shard is None or not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, got {text!r}")
    return shard


def _row_keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise argparse.ArgumentTypeError("expected comma-separated row keys")
    return keys


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m invariants",
        description=(
            "Follow gradient flow on a homogeneous linear or ReLU network and report "
            "its limit direction (Vardi, Shamir & Srebro, NeurIPS 2022)."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    ex = sub.add_parser(
        "examine",
        help="run gradient flow on a case and print a JSON report",
        description=(
            "Run gradient flow from a case file's theta0 to ||theta|| = T "
            "and print one JSON object: theta_tilde (the final direction rescaled "
            "so its smallest margin is 1), norm_squared, min_margin_direction, "
            "log_norm, jacobian_evaluations, seconds, steps, balance (largest "
            "relative drift of each conserved quantity) and the case's description. "
            "A case file is a JSON object with keys network, X (n rows), y (n labels "
            "in {-1, 1}), theta0 and optionally loss (exponential or logistic). "
            "network is one of {family: fully_connected, widths: [d, ..., 1]}, "
            "{family: diagonal, dim, depth}, {family: convolutional, input_dim, "
            "kernel_size, stride, depth (default 2)}, {family: no_share, masks: "
            "[[[bool]]] one per layer}, {family: index_maps, layers: [[[int]]] "
            "one per layer, -1 for no connection}, each with activation relu "
            "(default) or linear. theta0 lists layer 1's parameters first; a "
            "fully-connected layer's parameters are its weight matrix row by row. "
            "Exit codes: 0 done, 2 bad input, 3 the flow failed."
        ),
    )
    source = ex.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "case_file", nargs="?", metavar="CASE.json", help="the case file to examine"
    )
    source.add_argument(
        "--construction",
        metavar="NAME",
        help="examine a built-in construction (see `list`)",
    )
    ex.add_argument(
        "--target-norm",
        type=_positive_finite,
        default=1e8,
        metavar="T",
        help="follow the flow until ||theta|| = T (default 1e8)",
    )
    ex.add_argument(
        "--direction-tol",
        type=_direction_tol,
        default=1e-9,
        metavar="TOL",
        help="past the target, keep following the flow until its direction moves "
        "by less than TOL per unit of log||theta|| (default 1e-9; 0 stops at the "
        "target, where a slowly converging flow can still be far from its limit)",
    )
    ex.add_argument(
        "--no-exact",
        action="store_true",
        help="skip the exact global optimum of depth-2 ReLU nets (a pattern "
        "enumeration of up to a few thousand conic problems)",
    )
    ex.add_argument(
        "--no-search",
        action="store_true",
        help="skip the local witness search for limits no certificate proves "
        "locally optimal",
    )
    ex.add_argument(
        "--rtol",
        type=_rtol,
        default=1e-10,
        help="integrator relative tolerance, in [1e-13, 1e-2) (default 1e-10)",
    )
    ex.add_argument(
        "--max-evaluations",
        type=_count,
        default=50_000,
        metavar="N",
        help="budget of margin-Jacobian evaluations (default 50000)",
    )
    ex.add_argument(
        "--max-fit-length",
        type=_positive_finite,
        default=None,
        metavar="L",
        help="arc length allowed to reach the loss threshold "
        "(default 100 (1 + ||theta0||))",
    )
    ex.add_argument(
        "--loss", choices=("exponential", "logistic"), help="override the case's loss"
    )
    ex.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="progress on stderr (-vv for debug detail)",
    )

    sw = sub.add_parser(
        "sweep",
        help="estimate Theorem 3.2's probability over Gaussian initialisations",
        description=(
            "Run GF on Theorem 3.2's dataset from i.i.d. standard Gaussian inits, "
            "seeded by (SEED, k) for k = 0..RUNS-1, and decide for each limit whether "
            "it is a local optimum (certificate), not one (verified witness) or "
            "undecided. With --out, runs are appended as JSON lines and runs already "
            "in the file are skipped, so a sweep resumes and splits by seed. Prints "
            "a JSON summary with a 95% Wilson interval."
        ),
    )
    sw.add_argument("theorem", choices=("thm3.2",), help="the sweep to run")
    sw.add_argument("--runs", type=_count, help="number of inits (default 100)")
    sw.add_argument("--seed", type=_seed, help="base seed (default 0)")
    sw.add_argument("--out", metavar="FILE.jsonl", help="append runs here; resume")
    sw.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="run only the k with k %% N == I (split one seed across N machines)",
    )
    sw.add_argument(
        "--batch",
        type=_count,
        metavar="B",
        help="simulate B runs at a time with the batch simulator (default 50; "
        "1 runs each alone with the single run)",
    )
    sw.add_argument(
        "--summarize",
        nargs="+",
        metavar="FILE.jsonl",
        help="run nothing: merge these files (one run per seed and k) and summarise",
    )
    sw.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar on stderr"
    )
    sw.add_argument(
        "-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS
    )

    ck = sub.add_parser(
        "check",
        help="judge a trajectory saved by any trainer (exit 1 if a check fails)",
        description=(
            "Judge checkpoints saved by any trainer against a case file's network, "
            "data and loss (its theta0 is not used). CHECKPOINTS.npz holds thetas "
            "(K, P), K >= 2, one row per checkpoint, and optionally times (K,), "
            "strictly increasing. Checks: balance (drift of the conserved "
            "quantities), loss_monotone, direction (change over the last two "
            "checkpoints), kkt (residual of the last direction) and certificate "
            "(the regime's global or local optimum, proved). Prints one line per "
            "check, or one JSON object with --json. Exit codes: 0 every check that "
            "ran passed, 1 a check failed, 2 bad input."
        ),
    )
    ck.add_argument("checkpoints", metavar="CHECKPOINTS.npz", help="the trajectory")
    ck.add_argument(
        "--case", required=True, metavar="CASE.json", help="the case file (see examine)"
    )
    ck.add_argument(
        "--balance-tol",
        type=_positive_finite,
        default=None,
        metavar="TOL",
        help="largest relative drift of a conserved quantity (default 1e-6 for "
        "float64, 1.4e-3 for float32; a trainer with step size eta drifts by O(eta))",
    )
    ck.add_argument(
        "--direction-tol",
        type=_positive_finite,
        default=1e-3,
        metavar="TOL",
        help="largest change of theta/||theta|| over the last two checkpoints "
        "(default 1e-3)",
    )
    ck.add_argument(
        "--kkt-tol",
        type=_positive_finite,
        default=1e-3,
        metavar="TOL",
        help="largest KKT residual of the last direction (default 1e-3)",
    )
    ck.add_argument(
        "--certificate-tol",
        type=_certificate_tol,
        default=None,
        metavar="TOL",
        help="relative excess a certificate may show, in (0, 1e-2] (default 1e-6)",
    )
    ck.add_argument("--json", action="store_true", help="print one JSON object")
    ck.add_argument(
        "-v", "--verbose", action="count", default=0, help="progress on stderr"
    )

    rp = sub.add_parser(
        "report",
        help="run every lemma and theorem of the paper; write Markdown and HTML",
        description=(
            "Run each lemma and theorem of the paper: guarantees as properties over "
            "generated cases, counterexamples by reproducing the paper's "
            "constructions. Writes DIR/report.md, DIR/report.html and "
            "DIR/figures/*.png (figures need matplotlib: pip install "
            '"margin-invariants[report]"). Progress on stderr, a summary on '
            "stdout. Exit codes: 0 every row is as the paper says, 1 a row "
            "contradicts it, 2 bad input."
        ),
    )
    rp.add_argument(
        "--out", default="margin-report", metavar="DIR", help="default margin-report"
    )
    rp.add_argument(
        "--only",
        type=_row_keys,
        metavar="KEYS",
        help="comma-separated rows: keys (C.1,2.1,4.2.1), prefixes of keys (4.2) or "
        "construction names (thm3.2) (default: every row)",
    )
    rp.add_argument(
        "--examples",
        type=_count,
        default=20,
        metavar="N",
        help="generated cases per guarantee (default 20)",
    )
    rp.add_argument(
        "--seed", type=_seed, default=0, help="Hypothesis and search seed (default 0)"
    )
    rp.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    rp.add_argument(
        "-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS
    )

    ls = sub.add_parser("list", help="print the built-in construction names")
    ls.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="also print each construction's theorem",
    )
    return parser
