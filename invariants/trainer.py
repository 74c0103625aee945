"""The trainer protocol of the conformance mode: what a trainer gets and returns.

Another project runs this suite's properties against its own trainer with

    pytest --pyargs invariants.conformance --trainer=package.module:function

(or ``MARGIN_INVARIANTS_TRAINER=package.module:function``). The trainer is a callable

    trainer(problem: TrainingProblem) -> thetas

- `problem` holds the network of the class N as data (``index_maps``: one integer
  array P^(l) of shape (d_l, d_{l-1}) per layer, W^(l)[a, b] = u^(l)[P[a, b]], -1 a
  zero entry, an index used twice a shared weight; ``activation``: "relu" or
  "linear", applied after every hidden layer), the data ``X`` (n, d) and ``y`` in
  {-1, +1}^n, ``theta0`` = [u^(1), ..., u^(m)], the ``loss`` ("exponential" or
  "logistic", L = sum_i l(y_i Phi(theta; x_i))) and a `Budget`. ``problem.network``
  is the same network built by the library, for trainers that want its margins.
- It returns the parameter vectors it passed through, first theta0: an array-like
  (K, P) with K >= 2, or a mapping / object with ``thetas`` and optionally ``times``
  (K,), strictly increasing. Anything else fails that example with a message naming
  the problem (`TrainerError`); raising `Unsupported` declines a case instead.
- It declares what it claims, with `declare` (or a `Claims` attribute named
  ``margin_invariants_claims``): the exact gradient flow, or gradient descent with
  step size eta (then it returns every iterate, so that every step can be checked
  against -eta grad L of the declared loss and the balance bound below computed from
  its output; ``fixed_step=False`` for an adaptive or clipped step eta_k in
  (0, eta]), and optionally ``direction_tol``: it kept going until
  theta/||theta|| moved by less than that per unit of log||theta||. The properties
  that need a converged direction run only on a trainer that claims one.

This module imports only the standard library at import time: the pytest plugin
reads it in every session that asks for a trainer.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from invariants.casefile import Case
    from invariants.checkpoints import Checkpoints
    from invariants.networks import Network

__all__ = [
    "CLAIMS_ATTRIBUTE",
    "MAX_DIRECTION_TOL",
    "METHODS",
    "Budget",
    "Claims",
    "LoadedTrainer",
    "TrainerError",
    "TrainerSpecError",
    "TrainingProblem",
    "Unsupported",
    "declare",
    "load_trainer",
    "run_trainer",
]

METHODS = ("gradient_flow", "gradient_descent")
CLAIMS_ATTRIBUTE = "margin_invariants_claims"
# The limit properties judge KKT residuals and certificates at 1e3 times the claimed
# direction_tol (see invariants.conformance._properties); beyond 1e-5 that exceeds
# MAX_CERTIFICATE_TOL and a "KKT point" would mean nothing.
MAX_DIRECTION_TOL = 1e-5


class TrainerSpecError(ValueError):
    """A --trainer value that does not name a usable trainer (a usage error)."""


class TrainerError(Exception):
    """The trainer raised, or returned something that is not a trajectory of the
    case. A failure of that example, never of the session."""


class Unsupported(Exception):
    """Raised by a trainer to decline a case (for example a flow too slow to follow).
    The example is rejected and counted; a trainer that declines most cases fails
    Hypothesis' health check instead of passing vacuously."""


@dataclass(frozen=True)
class Budget:
    """How far a trainer is asked to go.

    A flow trainer follows the path at least to ``||theta|| = target_norm``; a
    discrete trainer takes at most ``max_steps`` steps (and may stop earlier once
    ||theta|| >= target_norm)."""

    target_norm: float = 1e8
    max_steps: int = 2000


@dataclass(frozen=True)
class Claims:
    """What a trainer claims to compute; it decides which properties apply and
    their tolerances.

    - ``method``: "gradient_flow" (the exact path of d theta/dt = -grad L, up to
      integration error) or "gradient_descent" (theta_{k+1} = theta_k - eta grad L,
      every iterate returned).
    - ``step_size``: eta, required for gradient descent, refused for a flow.
    - ``direction_tol``: the trainer stopped only once theta/||theta|| moved by less
      than this per unit of log||theta|| over its last interval (at most
      MAX_DIRECTION_TOL). Without it, the limit properties are skipped.
    - ``balance_tol``: a flow's relative drift allowance for Lemmas C.1-C.3 when its
      integrator is looser than the library's (default: `balance.default_rtol` of
      the returned dtype). Gradient descent's allowance is derived from its steps.
    - ``fixed_step``: gradient descent only. True (default): every step is
      theta_{k+1} = theta_k - eta grad L(theta_k) with eta = step_size. False: an
      adaptive or clipped step, eta_k in (0, step_size] (``step_size`` is then the
      largest step length factor the trainer ever uses).
    """

    method: str
    step_size: float | None = None
    direction_tol: float | None = None
    balance_tol: float | None = None
    fixed_step: bool = True

    @classmethod
    def from_mapping(cls, claims: dict, where: str) -> Claims:
        """Claims from keyword arguments; TrainerSpecError naming an unknown key."""
        valid = [f.name for f in fields(cls)]
        unknown = [key for key in claims if key not in valid]
        if unknown:
            raise TrainerSpecError(
                f"{where}: unknown claim {unknown[0]!r}; the claims are "
                f"{', '.join(valid)}"
            )
        if "method" not in claims:
            raise TrainerSpecError(f"{where}: the claim 'method' is required")
        return cls(**claims)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise TrainerSpecError(
                f"method={self.method!r} must be one of {', '.join(METHODS)}"
            )
        if self.method == "gradient_descent":
            if not _positive(self.step_size):
                raise TrainerSpecError(
                    f"gradient descent needs step_size=eta > 0, got {self.step_size!r}"
                )
            if self.balance_tol is not None:
                raise TrainerSpecError(
                    "balance_tol is derived from gradient descent's own steps; "
                    "do not declare it"
                )
            if not isinstance(self.fixed_step, bool):
                raise TrainerSpecError(
                    f"fixed_step={self.fixed_step!r} must be True or False"
                )
        elif self.step_size is not None:
            raise TrainerSpecError(
                f"step_size={self.step_size!r} is for gradient_descent; a "
                "gradient_flow trainer has none"
            )
        elif self.fixed_step is not True:
            raise TrainerSpecError(
                f"fixed_step={self.fixed_step!r} is for gradient_descent; a "
                "gradient_flow trainer takes no steps"
            )
        if self.direction_tol is not None and not (
            _positive(self.direction_tol) and self.direction_tol <= MAX_DIRECTION_TOL
        ):
            raise TrainerSpecError(
                f"direction_tol={self.direction_tol!r} must be in "
                f"(0, {MAX_DIRECTION_TOL:g}] or None"
            )
        if self.balance_tol is not None and not (
            _positive(self.balance_tol) and self.balance_tol < 1
        ):
            raise TrainerSpecError(
                f"balance_tol={self.balance_tol!r} must be in (0, 1) or None"
            )

    def describe(self) -> str:
        if self.method == "gradient_descent":
            text = f"gradient descent, step {self.step_size:g}"
            if not self.fixed_step:
                text = f"gradient descent, adaptive step <= {self.step_size:g}"
        else:
            text = "gradient flow"
            if self.balance_tol is not None:
                text += f", balance_tol={self.balance_tol:g}"
        if self.direction_tol is None:
            return text + ", no converged direction claimed"
        return text + f", direction_tol={self.direction_tol:g}"


def declare(**claims: Any):
    """Decorator attaching `Claims(**claims)` to a trainer function."""
    declared = Claims.from_mapping(claims, "declare()")

    def attach(trainer):
        setattr(trainer, CLAIMS_ATTRIBUTE, declared)
        return trainer

    return attach


@dataclass(frozen=True, eq=False)
class TrainingProblem:
    """One training run to perform (see the module docstring). Arrays are fresh
    copies: a trainer may modify them without touching the case."""

    index_maps: tuple[np.ndarray, ...]
    activation: str
    X: np.ndarray
    y: np.ndarray
    theta0: np.ndarray
    loss: str
    budget: Budget = field(default_factory=Budget)
    network: Network | None = None


@dataclass(frozen=True)
class LoadedTrainer:
    """A trainer resolved from its ``package.module:function`` spec."""

    spec: str
    function: Any
    claims: Claims


def load_trainer(spec: str) -> LoadedTrainer:
    """Import ``package.module:function`` (the function may be a dotted attribute
    path) and read its claims; TrainerSpecError with a one-line message otherwise."""
    module_name, sep, attr_path = (spec or "").strip().partition(":")
    if not sep or not module_name or not attr_path:
        raise TrainerSpecError(
            f"{spec!r} is not of the form package.module:function (a colon between "
            "the importable module and the callable)"
        )
    try:
        target = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TrainerSpecError(
            f"cannot import module {module_name!r} of {spec!r} ({exc}); is its "
            "directory on sys.path (PYTHONPATH)?"
        ) from None
    except Exception as exc:  # any import-time failure of the user's module
        raise TrainerSpecError(
            f"importing {module_name!r} of {spec!r} raised {type(exc).__name__}: "
            f"{_one_line(exc)}"
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise TrainerSpecError(
                f"{spec!r}: {getattr(target, '__name__', target)!r} has no attribute "
                f"{part!r}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise TrainerSpecError(
            f"{spec!r} is an object of type {type(target).__name__}, not a callable "
            "trainer"
        )
    claims = getattr(target, CLAIMS_ATTRIBUTE, None)
    if claims is None:
        raise TrainerSpecError(
            f"{spec!r} declares no claims: decorate it with "
            "@invariants.trainer.declare(method='gradient_flow' or "
            "'gradient_descent', ...)"
        )
    if isinstance(claims, dict):
        claims = Claims.from_mapping(claims, f"{spec!r}.{CLAIMS_ATTRIBUTE}")
    if not isinstance(claims, Claims):
        raise TrainerSpecError(
            f"{spec!r}.{CLAIMS_ATTRIBUTE} must be an invariants.trainer.Claims, got "
            f"{type(claims).__name__}"
        )
    return LoadedTrainer(spec, target, claims)


def problem_for(case: Case, budget: Budget) -> TrainingProblem:
    """The TrainingProblem of a case, on fresh copies of its arrays."""
    net = case.network
    return TrainingProblem(
        index_maps=tuple(P.copy() for P in net.index_maps),
        activation=net.activation,
        X=case.X.copy(),
        y=case.y.copy(),
        theta0=case.theta0.copy(),
        loss=case.loss,
        budget=budget,
        network=net,
    )


def run_trainer(trainer: LoadedTrainer, case: Case, budget: Budget) -> Checkpoints:
    """Call the trainer on `case` and validate what it returns (`TrainerError`
    naming the problem otherwise); `Unsupported` passes through."""
    try:
        output = trainer.function(problem_for(case, budget))
    except Unsupported:
        raise
    except Exception as exc:  # the trainer's bug, reported as a failure
        raise TrainerError(
            f"trainer {trainer.spec!r} raised {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    return validate_output(output, case, trainer, budget)


def validate_output(output, case: Case, trainer: LoadedTrainer, budget: Budget):
    import numpy as np

    from invariants.checkpoints import CheckpointError, validate_checkpoints

    who = f"trainer {trainer.spec!r}"
    thetas, times = _unpack(output, who)
    if isinstance(thetas, (str, bytes)) or thetas is None:
        raise TrainerError(
            f"{who} returned {type(thetas).__name__} {thetas!r:.40} for 'thetas'; "
            "expected a (K, P) array of parameter vectors"
        )
    if isinstance(thetas, Iterator):
        raise TrainerError(
            f"{who} returned a generator/iterator ({type(thetas).__name__}) for "
            "'thetas': return a list or array, which can be read more than once"
        )
    try:
        arr = np.asarray(thetas)
    except Exception as exc:  # any array-like's __array__ (a tensor with grad, ...)
        raise TrainerError(
            f"{who} returned 'thetas' of type {type(thetas).__name__} that does not "
            f"convert to a (K, P) array: {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    if arr.size == 0:
        raise TrainerError(
            f"{who} returned an empty trajectory (shape {arr.shape}); it must hold "
            "theta0 and at least one later parameter vector"
        )
    P = case.network.num_parameters
    try:
        checkpoints = validate_checkpoints(arr, times, num_parameters=P)
    except CheckpointError as exc:
        raise TrainerError(f"{who} returned an invalid trajectory: {exc}") from None

    # A trajectory of the case starts at its theta0 (up to the dtype's rounding).
    first, theta0 = checkpoints.thetas[0], case.theta0
    slack = 8 * np.finfo(checkpoints.dtype).eps * max(1.0, np.linalg.norm(theta0))
    if not np.linalg.norm(first - theta0) <= slack:
        # Integers are accepted (as floats), but a trainer that rounds loses theta0.
        kind = "" if arr.dtype.kind == "f" else f" (its dtype is {arr.dtype})"
        raise TrainerError(
            f"{who} returned a trajectory that does not start at theta0{kind}: "
            f"||thetas[0] - theta0|| = {np.linalg.norm(first - theta0):.3e}"
        )
    steps = len(checkpoints.thetas) - 1
    if trainer.claims.method == "gradient_descent" and steps > budget.max_steps:
        raise TrainerError(
            f"{who} returned {steps} steps, more than max_steps={budget.max_steps}"
        )
    return checkpoints


def _unpack(output, who: str):
    if output is None:
        raise TrainerError(f"{who} returned None; expected a (K, P) array")
    if isinstance(output, dict):
        if "thetas" not in output:
            raise TrainerError(
                f"{who} returned a mapping without 'thetas' (keys: "
                f"{', '.join(map(repr, output))})"
            )
        return output["thetas"], output.get("times")
    if hasattr(output, "thetas"):
        return output.thetas, getattr(output, "times", None)
    if isinstance(output, Iterator):
        raise TrainerError(
            f"{who} returned a generator/iterator ({type(output).__name__}): return "
            "a list or array of the parameter vectors"
        )
    return output, None


def _positive(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
