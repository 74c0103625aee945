"""Judging a trajectory saved by any trainer: `python -m invariants check`.

A trainer saves its checkpoints as an ``.npz`` archive with key ``thetas`` (K, P),
one row per checkpoint in the parameter order of the case's network, and optionally
``times`` (K,), strictly increasing. Other keys are ignored and listed. The
trajectory is judged against the case's network, data and loss by the library's
own checkers, never re-implemented here:

- ``balance``: the largest relative drift of the conserved quantities of Lemmas
  C.1-C.3 (`invariants.balance`), against `default_rtol` of the saved dtype unless
  given. A discrete trainer with step size eta drifts by O(eta): pass its tolerance.
- ``loss_monotone``: the largest increase of log L between consecutive checkpoints,
  relative to max(1, |log L|) (see LOSS_RTOL).
- ``direction``: ||theta_K/||theta_K|| - theta_{K-1}/||theta_{K-1}|||| over the last
  two checkpoints.
- ``kkt``: the KKT residual of the last checkpoint's direction (`invariants.kkt`);
  a last checkpoint that does not separate the data fails it.
- ``certificate``: the regime of the last direction (`invariants.regimes.classify`)
  and, when it promises a global or local optimum, whether `optimality` proves it.

Every function here takes plain arrays and returns plain records; only the command
line prints.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field

import numpy as np

from invariants.networks import Network

__all__ = [
    "DIRECTION_TOL",
    "KKT_TOL",
    "LOSS_RTOL",
    "Check",
    "CheckpointError",
    "Checkpoints",
    "Judgement",
    "judge",
    "load_checkpoints",
    "validate_checkpoints",
]

# Default thresholds of the command line. A trainer stops at a finite ||theta||,
# where the direction and the KKT residual are still far from their limits (the
# simulator itself is ~1e-1 away at ||theta|| = 1e8 on slow cases), so these are
# much looser than the suite's 1e-6: they catch a wrong gradient, not slow decay.
DIRECTION_TOL = 1e-3
KKT_TOL = 1e-3
# log L is compared relative to max(1, |log L|): near L ~ 1 this is L's own relative
# increase; far out the margins' rounding is ~eps |log L|, which a fixed absolute
# slack on log L would flag as an increase.
LOSS_RTOL = 1e-12

_FLOAT64 = np.dtype(np.float64)


class CheckpointError(ValueError):
    """A checkpoint archive that cannot be judged: missing key, bad shape, NaN."""


@dataclass(frozen=True, eq=False)
class Checkpoints:
    """Validated checkpoints: thetas (K, P) float64, times (K,) or None, and the
    dtype they were saved in (it sets the default balance tolerance)."""

    thetas: np.ndarray
    times: np.ndarray | None = None
    dtype: np.dtype = _FLOAT64
    ignored_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """One judged property: `passed` is True, False, or None when skipped."""

    name: str
    value: float | None
    threshold: float | None
    passed: bool | None
    reason: str = ""
    details: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "passed": self.passed,
            "value": _finite_or_none(self.value),
            "threshold": _finite_or_none(self.threshold),
            "reason": self.reason,
            "details": self.details,
        }


@dataclass(frozen=True)
class Judgement:
    """Every check of one trajectory; `passed` when none that ran failed."""

    checks: tuple[Check, ...]
    checkpoints: int
    num_parameters: int
    ignored_keys: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.passed is False]

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "checkpoints": self.checkpoints,
            "num_parameters": self.num_parameters,
            "ignored_keys": list(self.ignored_keys),
            "checks": [c.to_json() for c in self.checks],
        }

    def summary_lines(self) -> list[str]:
        lines = []
        for c in self.checks:
            if c.passed is None:
                lines.append(f"SKIP  {c.name:<14} {c.reason}")
                continue
            line = f"{c.status}  {c.name:<14} {_fmt(c.value)} vs {_fmt(c.threshold)}"
            lines.append(f"{line}  {c.reason}" if c.reason else line)
        verdict = "PASS" if self.passed else f"FAIL ({', '.join(self.failed)})"
        lines.append(
            f"overall: {verdict}; {self.checkpoints} checkpoints, "
            f"P = {self.num_parameters}"
        )
        return lines


# -- reading ---------------------------------------------------------------------------


def load_checkpoints(path, num_parameters: int) -> Checkpoints:
    """Read and validate an .npz archive (see the module docstring).

    Raises FileNotFoundError / IsADirectoryError / OSError for a file that cannot
    be read and CheckpointError for one that is not a valid checkpoint archive."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"not a readable .npz archive: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointError(
            "a single .npy array, not an .npz archive: save with "
            "np.savez(path, thetas=...)"
        )
    with archive:
        keys = list(archive.files)
        if "thetas" not in keys:
            raise CheckpointError(
                f"missing key 'thetas' (keys present: {sorted(keys)}); save with "
                "np.savez(path, thetas=THETAS) where THETAS has shape (K, P)"
            )
        try:
            thetas = archive["thetas"]
            times = archive["times"] if "times" in keys else None
        except (ValueError, zipfile.BadZipFile, EOFError, OSError) as exc:
            # allow_pickle=False refuses object arrays with a ValueError.
            raise CheckpointError(
                f"cannot read an array of the archive: {exc}"
            ) from None
    ignored = tuple(sorted(k for k in keys if k not in ("thetas", "times")))
    return validate_checkpoints(
        thetas, times, num_parameters=num_parameters, ignored_keys=ignored
    )


def validate_checkpoints(
    thetas, times=None, *, num_parameters: int, ignored_keys: tuple[str, ...] = ()
) -> Checkpoints:
    """thetas as a finite (K, P) float array with K >= 2 and P = num_parameters,
    times as a finite strictly increasing (K,) array; CheckpointError otherwise."""
    arr = np.asarray(thetas)
    if arr.dtype.kind not in "iuf":
        raise CheckpointError(f"'thetas' must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise CheckpointError(
            f"'thetas' must be 2-D (K, P), one row per checkpoint, got shape "
            f"{arr.shape}"
        )
    if arr.shape[0] < 2:
        raise CheckpointError(
            f"'thetas' has {arr.shape[0]} checkpoint(s); a trajectory needs at least 2"
        )
    if arr.shape[1] != num_parameters:
        raise CheckpointError(
            f"'thetas' has P = {arr.shape[1]} columns but the case's network has "
            f"{num_parameters} parameters"
        )
    dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(float)
    values = arr.astype(float)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        k, i = bad[0].tolist()
        raise CheckpointError(
            f"'thetas' must be finite; thetas[{k}, {i}] = {arr[k, i]}"
        )
    return Checkpoints(
        values, _validate_times(times, arr.shape[0]), dtype, tuple(ignored_keys)
    )


def _validate_times(times, K: int) -> np.ndarray | None:
    if times is None:
        return None
    t = np.asarray(times)
    if t.dtype.kind not in "iuf":
        raise CheckpointError(f"'times' must hold real numbers, got dtype {t.dtype}")
    if t.shape != (K,):
        raise CheckpointError(f"'times' must have shape ({K},), got {t.shape}")
    t = t.astype(float)
    if not np.all(np.isfinite(t)):
        raise CheckpointError("'times' must be finite")
    steps = np.diff(t)
    if np.any(steps <= 0):
        k = int(np.flatnonzero(steps <= 0)[0])
        raise CheckpointError(
            f"'times' must be strictly increasing; times[{k}] = {float(t[k])!r} >= "
            f"times[{k + 1}] = {float(t[k + 1])!r}"
        )
    return t


# -- the checks ------------------------------------------------------------------------


def check_balance(
    network: Network, thetas: np.ndarray, *, tol=None, dtype=_FLOAT64
) -> Check:
    from invariants.balance import balance_drifts, default_rtol, largest_drift

    threshold = default_rtol(dtype) if tol is None else float(tol)
    drifts = balance_drifts(network, thetas)
    if not drifts:
        return Check("balance", None, threshold, None, "depth 1: no conserved quantity")
    worst = largest_drift(drifts)
    passed = bool(worst.relative_drift <= threshold)
    reason = "" if passed else f"{worst.name} [{worst.formula}]"
    details = {"name": worst.name, "quantities": len(drifts), **worst.summary()}
    return Check("balance", worst.relative_drift, threshold, passed, reason, details)


def check_loss_monotone(
    network: Network, X, y, thetas: np.ndarray, loss: str, *, rtol=LOSS_RTOL
) -> Check:
    from invariants.losses import log_loss

    log_losses = np.array([log_loss(_margins(network, X, y, t), loss) for t in thetas])
    if not np.all(np.isfinite(log_losses)):
        return Check("loss_monotone", None, rtol, None, "the margins overflow a double")
    rises = np.diff(log_losses) / np.maximum(1.0, np.abs(log_losses[:-1]))
    k = int(np.argmax(rises))
    passed = bool(rises[k] <= rtol)
    reason = "" if passed else f"log L rises from checkpoint {k} to {k + 1}"
    details = {
        "worst_step": [k, k + 1],
        "log_loss_first": float(log_losses[0]),
        "log_loss_last": float(log_losses[-1]),
    }
    return Check("loss_monotone", float(rises[k]), rtol, passed, reason, details)


def check_direction(thetas: np.ndarray, *, tol=DIRECTION_TOL) -> Check:
    norms = np.linalg.norm(thetas[-2:], axis=1)
    if not np.all(norms > 0):
        return Check(
            "direction", None, tol, None, "theta = 0 at one of the last 2 checkpoints"
        )
    a, b = thetas[-2] / norms[0], thetas[-1] / norms[1]
    change = float(np.linalg.norm(b - a))
    gain = float(math.log(norms[1]) - math.log(norms[0]))
    passed = bool(change <= tol)
    details = {
        "checkpoints": [len(thetas) - 2, len(thetas) - 1],
        "log_norm_gain": gain,
        # The simulator's direction_tol is per unit of log||theta||; the same rate
        # here makes a trainer's sparse and dense checkpoints comparable.
        "per_unit_log_norm": change / gain if gain > 0 else None,
    }
    reason = "" if passed else "the direction still moves between the last two"
    return Check("direction", change, tol, passed, reason, details)


def check_kkt(network: Network, X, y, theta: np.ndarray, *, tol=KKT_TOL) -> Check:
    from invariants.kkt import kkt_point

    q = _margins(network, X, y, theta)
    if not np.min(q) > 0:
        i = int(np.argmin(q))
        return Check(
            "kkt",
            None,
            tol,
            False,
            f"the last checkpoint does not separate the data (margin {q[i]:.3g} at "
            f"sample {i}); a KKT point of the max-margin problem needs every "
            "margin > 0",
        )
    try:
        point = kkt_point(network, X, y, theta)
    except ValueError as exc:
        return Check("kkt", None, tol, None, _one_line(exc))
    passed = bool(point.residual <= tol)
    details = {
        "active_set": list(point.active_set),
        "multipliers": point.multipliers.tolist(),
    }
    reason = "" if passed else "the last direction is not (yet) a KKT point"
    return Check("kkt", point.residual, tol, passed, reason, details)


def check_certificate(network: Network, X, y, theta: np.ndarray, *, tol=None) -> Check:
    from invariants.certify import CERTIFICATE_TOL, optimality
    from invariants.kkt import rescale
    from invariants.regimes import classify

    tol = CERTIFICATE_TOL if tol is None else float(tol)
    if not np.min(_margins(network, X, y, theta)) > 0:
        return Check(
            "certificate", None, tol, None, "the last checkpoint has a margin <= 0"
        )
    theta_t = rescale(network, X, y, theta)
    regime = classify(network, theta_t, X)
    details = {
        "guarantee": regime.guarantee,
        "theorem": regime.theorem,
        "regime": regime.reason,
    }
    if regime.guarantee not in ("global", "local"):
        return Check(
            "certificate",
            None,
            tol,
            None,
            f"regime promises {regime.guarantee} (Theorem {regime.theorem}) only, "
            "no whole-network optimum to confirm",
            details,
        )
    verdict = optimality(network, X, y, theta_t, tol=tol, exact=False, search=False)
    proved = verdict.global_ if regime.guarantee == "global" else verdict.local
    excesses = [
        e["excess"]
        for e in verdict.evidence
        if e.get("kind") == "certificate" and e.get("excess") is not None
    ]
    value = min(excesses) if excesses else None
    details |= {"proved": proved, "evidence": [e["kind"] for e in verdict.evidence]}
    passed = proved is True
    reason = (
        f"{regime.guarantee} optimum (Theorem {regime.theorem}) certified"
        if passed
        else f"regime promises a {regime.guarantee} optimum (Theorem "
        f"{regime.theorem}) and no certificate proves it (optimality: {proved})"
    )
    return Check("certificate", value, tol, passed, reason, details)


def judge(
    case,
    checkpoints: Checkpoints,
    *,
    balance_tol=None,
    direction_tol=DIRECTION_TOL,
    kkt_tol=KKT_TOL,
    certificate_tol=None,
) -> Judgement:
    """Run every check on `checkpoints` against `case` (an `invariants.casefile.Case`;
    its theta0 is not used: the trajectory starts wherever the trainer started)."""
    net, X, y, thetas = case.network, case.X, case.y, checkpoints.thetas
    checks = (
        check_balance(net, thetas, tol=balance_tol, dtype=checkpoints.dtype),
        check_loss_monotone(net, X, y, thetas, case.loss),
        check_direction(thetas, tol=direction_tol),
        check_kkt(net, X, y, thetas[-1], tol=kkt_tol),
        check_certificate(net, X, y, thetas[-1], tol=certificate_tol),
    )
    return Judgement(checks, len(thetas), thetas.shape[1], checkpoints.ignored_keys)


# -- helpers ---------------------------------------------------------------------------


def _margins(network: Network, X, y, theta: np.ndarray) -> np.ndarray:
    # From the direction and the norm, as Trajectory.log_losses does: a far
    # checkpoint's raw margins can overflow in the hidden layers' products.
    norm = float(np.linalg.norm(theta))
    if norm == 0.0:
        return np.zeros(len(y))
    with np.errstate(over="ignore", invalid="ignore"):
        return network.margins(theta / norm, X, y) * np.power(norm, network.depth)


def _finite_or_none(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3e}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
