"""Command line: ``python -m invariants examine CASE.json`` and friends.

``examine`` follows gradient flow from a case file (or a built-in construction) until
its direction has converged and prints one JSON object on stdout: the limit
candidate theta_tilde, its norm, the normalised margin of the final direction, the
simulator's cost, the drift of the conserved quantities that apply, the KKT
conditions of the limit (residual, multipliers, active set) and `optimality`: what
the certificates prove (true with a certificate, false with a verified better point,
null where nothing was proved). ``check CHECKPOINTS.npz --case CASE.json`` judges a
trajectory saved by any trainer (balance drift, loss monotone, direction, KKT residual
of the last point, the regime's certificate; see `invariants.checkpoints`); it exits 1
when a check fails. ``sweep thm3.2`` estimates Theorem 3.2's probability. ``report``
runs every lemma and theorem of the paper into a Markdown and an HTML page
(`invariants.report`); it exits 1 when a row contradicts the paper. ``list`` prints
the built-in construction names.

Exit codes: 0 success; 2 a bad case file or bad arguments; 3 the simulator could not
follow the flow; 1 an internal error. Every failure is one line on stderr starting
with ``error:``; ``-v`` adds progress lines (and, for internal errors, the traceback).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from invariants import limit_report
from invariants.cli_parser import UsageError, build_parser

__all__ = ["main"]

log = logging.getLogger("invariants")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_FLOW = 3


# -- reading a case --------------------------------------------------------------------


@contextmanager
def _reading(what: str, path_text: str):
    """Turn the ways a file can fail to open into one usage error naming it."""
    try:
        yield
    except FileNotFoundError:
        raise UsageError(f"{what} {path_text!r} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path_text!r} is a directory") from None
    except OSError as exc:
        raise UsageError(
            f"cannot read {what} {path_text!r}: {exc.strerror or exc}"
        ) from None


def _read_case(path_text: str):
    from invariants.casefile import Case, CaseError

    path = Path(path_text)
    with _reading("case file", path_text):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"case file {path_text!r} is not UTF-8 text: {exc}"
            ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"case file {path_text!r} is not valid JSON: {exc.msg} at line "
            f"{exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise UsageError(f"case file {path_text!r} is nested too deeply") from None
    try:
        return Case.from_dict(data, name=path.stem)
    except (CaseError, ValueError, TypeError, ArithmeticError) as exc:
        # ArithmeticError: e.g. int(inf) for a width written as 1e999 in the file.
        raise UsageError(f"case file {path_text!r}: {_one_line(exc)}") from None
    except MemoryError:
        raise UsageError(
            f"case file {path_text!r} describes a network too large to build"
        ) from None
    except RecursionError:
        raise UsageError(f"case file {path_text!r} is nested too deeply") from None


def _construction_case(name: str):
    from invariants import cases

    try:
        return cases.get(name)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


# -- the report ------------------------------------------------------------------------


# -- commands --------------------------------------------------------------------------


def _examine(args) -> int:
    construction = None
    if args.construction is not None:
        construction = _construction_case(args.construction)
        if args.loss is not None:
            construction = construction.with_loss(args.loss)
        case = construction.case
    else:
        case = _read_case(args.case_file)
        if args.loss is not None:
            case = dataclasses.replace(case, loss=args.loss)
    # Imported only now: a bad case file is reported without loading scipy.
    from invariants.flow import FlowError, StationaryPointError, gradient_flow

    log.info(
        "examining %s: %s, n=%d, loss=%s",
        case.name or "case",
        case.network.describe(),
        case.X.shape[0],
        case.loss,
    )
    try:
        trajectory = gradient_flow(
            case.network,
            case.X,
            case.y,
            case.theta0,
            case.loss,
            target_norm=args.target_norm,
            rtol=args.rtol,
            max_evaluations=args.max_evaluations,
            max_fit_length=args.max_fit_length,
            direction_tol=args.direction_tol or None,
        )
    except (FlowError, StationaryPointError) as exc:
        _fail(f"gradient flow failed: {_one_line(exc)}")
        return EXIT_FLOW
    except (ArithmeticError, np.linalg.LinAlgError) as exc:
        # Numerical breakdown inside the integrator is a failure to follow the
        # flow, not a bad input: the case passed validation.
        _fail(f"gradient flow failed ({type(exc).__name__}): {_one_line(exc)}")
        return EXIT_FLOW
    log.info(
        "reached log||theta|| = %.6g in %.3g s, %d Jacobian evaluations",
        trajectory.log_norm,
        trajectory.seconds,
        trajectory.jacobian_evaluations,
    )
    report = limit_report.report(case, trajectory, construction)
    report.update(
        limit_report.jsonable(
            limit_report.judgement(
                case, trajectory, exact=not args.no_exact, search=not args.no_search
            )
        )
    )
    sys.stdout.write(json.dumps(report, allow_nan=False) + "\n")
    return EXIT_OK


def _sweep(args) -> int:
    from invariants import sweep

    progress = None if args.quiet else sweep.print_progress
    if args.summarize:
        given = [f"--{name}" for name in ("runs", "seed", "out", "shard", "batch")
                 if getattr(args, name) is not None]  # fmt: skip
        if given:
            raise UsageError(
                f"--summarize runs nothing, so {', '.join(given)} would be ignored; "
                "drop them, or run the sweep first"
            )
    try:
        conflicts: list[str] = []
        if args.summarize:
            records = sweep.load(args.summarize, conflicts)
        else:
            records = sweep.sweep(
                100 if args.runs is None else args.runs,
                args.seed or 0,
                args.out,
                progress=progress,
                shard=args.shard or (0, 1),
                batch=sweep.BATCH if args.batch is None else args.batch,
            )
    except OSError as exc:
        where = exc.filename or args.out
        raise UsageError(f"cannot use {where!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    summary = sweep.summary(records)
    if conflicts:
        # The same run recorded twice with different verdicts: the last file's wins.
        summary["conflicting_duplicates"] = conflicts
    sys.stdout.write(json.dumps(limit_report.jsonable(summary)) + "\n")
    return EXIT_OK


def _check(args) -> int:
    from invariants.checkpoints import CheckpointError, judge, load_checkpoints

    case = _read_case(args.case)
    path = args.checkpoints
    with _reading("checkpoint file", path):
        try:
            checkpoints = load_checkpoints(path, case.network.num_parameters)
        except CheckpointError as exc:
            raise UsageError(f"checkpoint file {path!r}: {_one_line(exc)}") from None
    judgement = judge(
        case,
        checkpoints,
        balance_tol=args.balance_tol,
        direction_tol=args.direction_tol,
        kkt_tol=args.kkt_tol,
        certificate_tol=args.certificate_tol,
    )
    if args.json:
        sys.stdout.write(json.dumps(judgement.to_json(), allow_nan=False) + "\n")
    else:
        sys.stdout.write("\n".join(judgement.summary_lines()) + "\n")
    # 1, as for an internal error: a CI gate treats both as a failed job, and
    # the verdict on stdout tells them apart.
    return EXIT_OK if judgement.passed else 1


def _report(args) -> int:
    from invariants import report

    try:
        return report.main(
            args.out,
            only=args.only,
            examples=args.examples,
            seed=args.seed,
            quiet=args.quiet,
        )
    except report.ReportInputError as exc:
        raise UsageError(str(exc)) from None


def _list(args) -> int:
    from invariants import cases

    for name, construction in cases.CONSTRUCTIONS.items():
        if args.verbose:
            print(f"{name}\t{construction.theorem}")
        else:
            print(name)
    return EXIT_OK


# -- plumbing --------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _fail(message: str) -> None:
    sys.stderr.write(f"error: {_one_line(message)}\n")


def _configure_logging(verbosity: int) -> None:
    package = logging.getLogger("invariants")
    package.handlers.clear()
    if verbosity <= 0:
        # Quiet by default: a NullHandler stops logging's last-resort handler from
        # printing warnings, and Python warnings go to a silenced logger too.
        package.addHandler(logging.NullHandler())
        package.propagate = False
        logging.captureWarnings(True)
        logging.getLogger("py.warnings").addHandler(logging.NullHandler())
        logging.getLogger("py.warnings").propagate = False
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    package.addHandler(handler)
    package.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    package.propagate = False
    warnings.simplefilter("default")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    verbosity = 0
    try:
        args = parser.parse_args(argv)
        verbosity = getattr(args, "verbose", 0)
        _configure_logging(verbosity)
        if args.command == "examine":
            return _examine(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "check":
            return _check(args)
        if args.command == "report":
            return _report(args)
        return _list(args)
    except UsageError as exc:
        _fail(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more can be reported.
        return EXIT_INTERNAL
    except Exception as exc:  # one line, never a traceback, unless asked with -v
        if verbosity > 0:
            log.exception("internal error")
        _fail(
            f"internal error ({type(exc).__name__}): {_one_line(exc)}; "
            "rerun with -v for the traceback"
        )
        return EXIT_INTERNAL
