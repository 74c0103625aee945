"""pytest plugin of margin-invariants: the conformance mode.

    pytest --pyargs invariants.conformance --trainer=package.module:function

runs the suite's properties (balancedness, loss decrease, convergence in direction
to a KKT point, the certificate of the regime) against another project's trainer;
``MARGIN_INVARIANTS_TRAINER`` may name the trainer instead. See `invariants.trainer`
for the protocol and `invariants.conformance` for the properties.

pytest loads this module in every session of every project that has the package
installed, so it imports nothing beyond the standard library and pytest at import
time, and changes nothing unless a trainer is named: no options of other projects
are touched, no profile is loaded, the header is unchanged.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from invariants.threads import cap_blas_threads

__all__ = [
    "FAMILIES",
    "TRAINER_ENV_VAR",
    "ConformanceSession",
    "case_seed",
    "conformance_session",
]

TRAINER_ENV_VAR = "MARGIN_INVARIANTS_TRAINER"
_SEED_KEY = "margin_invariants_case_seed"
FAMILIES = ("fully_connected", "diagonal", "no_share", "convolutional", "shared")


@dataclass
class ConformanceSession:
    """What the conformance modules read at collection: the trainer and how to draw
    cases. `case_seed` is shared by every property (so one case is trained once and
    judged by all of them) and by every xdist worker."""

    trainer: object  # invariants.trainer.LoadedTrainer
    max_examples: int | None
    families: tuple[str, ...]
    repro_dir: Path
    hypothesis_seed: int | str | None = None
    case_seed: int | str | None = None
    # Case files named by failure reports (path -> JSON), written once the test's
    # failure is final (see pytest_runtest_makereport).
    pending_cases: dict[str, str] = field(default_factory=dict)


# Where Hypothesis' pytest plugin (6.x) keeps the patch of a failing example.
_HYPOTHESIS_PATCH_KEY = "_hypothesis_failing_examples"

_SESSION: ConformanceSession | None = None
_SESSION_KEY = pytest.StashKey[ConformanceSession]()


def conformance_session() -> ConformanceSession | None:
    """The running session's conformance settings, or None without a trainer."""
    return _SESSION


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("margin-invariants", "margin-invariants conformance mode")
    group.addoption(
        "--trainer",
        dest="margin_trainer",
        default=None,
        metavar="MODULE:FUNCTION",
        help="run `--pyargs invariants.conformance` against this trainer "
        f"(default: ${TRAINER_ENV_VAR}); see invariants.trainer for the protocol",
    )
    group.addoption(
        "--margin-max-examples",
        dest="margin_max_examples",
        type=int,
        default=None,
        metavar="N",
        help="cases per conformance property (default: the Hypothesis profile's)",
    )
    group.addoption(
        "--margin-families",
        dest="margin_families",
        default=None,
        metavar="F1,F2",
        help=f"network families to draw, comma-separated from {', '.join(FAMILIES)} "
        "(default: all)",
    )
    group.addoption(
        "--margin-repro-dir",
        dest="margin_repro_dir",
        default=None,
        metavar="DIR",
        help="where a failing case and its checkpoints are written (default: a "
        "margin-invariants directory in the system's temporary directory)",
    )


def _requested_trainer(config: pytest.Config) -> str | None:
    spec = config.getoption("margin_trainer", None)
    if spec is None:
        spec = os.environ.get(TRAINER_ENV_VAR, "").strip() or None
    return spec


# tryfirst: the profiles must be registered before Hypothesis' own plugin loads the
# one named by --hypothesis-profile.
@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    global _SESSION
    spec = _requested_trainer(config)
    if spec is None:
        return
    # Before the trainer's module imports numpy: these tiny problems only lose from
    # several BLAS threads per xdist worker.
    cap_blas_threads()

    from invariants.profiles import select_profile
    from invariants.trainer import TrainerSpecError, load_trainer

    try:
        select_profile(config.getoption("hypothesis_profile", None))
        trainer = load_trainer(spec)
        session = ConformanceSession(
            trainer=trainer,
            max_examples=_max_examples(config),
            families=_families(config),
            repro_dir=_repro_dir(config),
            hypothesis_seed=_hypothesis_seed(config),
        )
    except TrainerSpecError as exc:
        raise pytest.UsageError(f"margin-invariants --trainer: {exc}") from None
    except ValueError as exc:
        raise pytest.UsageError(f"margin-invariants: {exc}") from None
    if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        # Hypothesis' caches (and any file it writes) go beside the reproductions,
        # not into a .hypothesis/ of the user's project.
        from hypothesis.configuration import set_hypothesis_home_dir

        set_hypothesis_home_dir(session.repro_dir / "hypothesis")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _SEED_KEY in workerinput:
        session.case_seed = workerinput[_SEED_KEY]
    _SESSION = session
    config.stash[_SESSION_KEY] = session


def pytest_unconfigure(config: pytest.Config) -> None:
    global _SESSION
    if config.stash.get(_SESSION_KEY, None) is _SESSION:
        _SESSION = None


def _hypothesis_seed(config: pytest.Config) -> int | str | None:
    # Parsed as Hypothesis' own plugin parses it.
    value = config.getoption("hypothesis_seed", None)
    try:
        return None if value is None else int(value)
    except ValueError:
        return value


def _max_examples(config: pytest.Config) -> int | None:
    value = config.getoption("margin_max_examples", None)
    if value is not None and value < 1:
        raise ValueError(f"--margin-max-examples={value} must be >= 1")
    return value


def _families(config: pytest.Config) -> tuple[str, ...]:
    value = config.getoption("margin_families", None)
    if value is None:
        return FAMILIES
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in FAMILIES]
    if unknown or not names:
        raise ValueError(
            f"--margin-families={value!r}: choose from {', '.join(FAMILIES)}"
        )
    return names


def _repro_dir(config: pytest.Config) -> Path:
    """The reproduction directory, created and checked now: a bad one is a usage
    error, not a crash that hides the failure it should have reproduced."""
    value = config.getoption("margin_repro_dir", None)
    path = Path(tempfile.gettempdir()) / "margin-invariants" if value is None else None
    path = path or Path(value)
    name = f"--margin-repro-dir={str(path)!r}"
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} is a file; name a directory (it is created)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{name} cannot be created: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{name} is not writable")
    return path


def case_seed():
    """The seed every conformance property draws its cases from: Hypothesis'
    --hypothesis-seed if given, 0 under a derandomised profile, the controller's
    under xdist, otherwise drawn once per session. Read only after every plugin's
    pytest_configure, once Hypothesis has loaded its profile."""
    session = _SESSION
    if session.case_seed is None:
        from hypothesis import settings

        if session.hypothesis_seed is not None:
            session.case_seed = session.hypothesis_seed
        elif settings.default.derandomize:
            session.case_seed = 0
        else:
            session.case_seed = random.SystemRandom().getrandbits(64)
    return session.case_seed


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist (controller): every worker draws the same cases."""
    if _SESSION is not None:
        node.workerinput[_SEED_KEY] = case_seed()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Outermost, so after Hypothesis' own hook: write the case files that the final
    failure report names, and drop Hypothesis' patch for the installed test module,
    which a user of the conformance mode cannot apply."""
    report = yield
    session = _SESSION
    module = getattr(getattr(item, "module", None), "__name__", "")
    if session is None or not module.startswith("invariants.conformance."):
        return report
    report.__dict__.pop(_HYPOTHESIS_PATCH_KEY, None)
    if report.failed and session.pending_cases:
        text = str(report.longrepr)
        for path, case_json in session.pending_cases.items():
            if path in text:
                _write_case(report, Path(path), case_json)
    if call.when == "call":
        session.pending_cases.clear()
    return report


def _write_case(report, path: Path, case_json: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(case_json, encoding="utf-8")
    except OSError as exc:
        # Never replace the property's failure: give the case inline instead.
        report.sections.append(
            (
                "margin-invariants reproduction",
                f"could not write {path} ({exc}); the case, to save as that file:\n"
                + case_json,
            )
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    if _SESSION is None:
        return []
    from hypothesis import settings

    session, current = _SESSION, settings.default
    examples = session.max_examples or current.max_examples
    derandomize = "on" if current.derandomize else "off"
    families = (
        "all families" if session.families == FAMILIES else ", ".join(session.families)
    )
    trainer_line = (
        f"margin-invariants conformance: trainer {session.trainer.spec!r} "
        f"({session.trainer.claims.describe()})"
    )
    cases_line = (
        f"margin-invariants conformance: {examples} cases per property ({families}), "
        f"case seed {case_seed()}; hypothesis profile "
        f"{settings.get_current_profile_name()!r}, derandomize {derandomize}; "
        f"failing cases written to {session.repro_dir}"
    )
    return [trainer_line, cases_line]
