"""The update property of a gradient-descent trainer: every returned step is
theta_{k+1} - theta_k = -eta_k grad L(theta_k) for the DECLARED loss, with eta_k the
declared step size (or, for an adaptive/clipped step, in (0, step_size]).

Balance and loss decrease cannot see a wrong loss derivative or a wrong step size:
both hold for any positive reweighting of the margins' gradients. This property
recomputes grad L with the library (margins and Jacobian from `invariants.networks`,
-l'(q) = exp(log_neg_derivative(q, loss)) from `invariants.losses`) and, per step,
fits eta_k = -(d . g) / ||g||^2 to the step d = theta_{k+1} - theta_k:

- the direction: the relative residual ||d + eta_k g|| / ||d|| must be rounding;
- the length: eta_k must equal step_size (fixed_step) or lie in (0, step_size].

With n = 1 sample every weighting of the one margin gradient points the same way,
so there only the step length (eta_k against step_size) catches a wrong derivative.

Tolerance of step k (`step_tolerance`), for both the residual and eta_k's relative
error, in units of eps of the returned dtype:

- (||theta_k|| + ||theta_{k+1}||) / ||d||: theta_{k+1} is stored rounded to eps/2
  of its size, so d = theta_{k+1} - theta_k carries an absolute error of about
  eps (||theta_k|| + ||theta_{k+1}||), which moves the fitted direction and eta_k
  by that over ||d||;
- kappa (N + max_i |q_i|): the gradient's own rounding, in the trainer and here. Each
  entry sums at most N = n + P rounded terms (n samples; per sample, products along
  the backpropagation through at most P weights), a forward error of N eps relative
  to the sum of the terms' sizes; an absolute rounding of q_i of eps |q_i| changes
  -l'(q_i) = exp(log_neg_derivative) by a relative eps |q_i|. Both are relative to
  sum_i -l'(q_i) ||grad q_i||, which is kappa = sum_i -l'(q_i) ||grad q_i|| / ||g||
  times ||g|| (kappa is 1 without cancellation between the samples).

A step that neither the trainer nor the prediction (step_size ||g||) moves by more
than the rounding eps (||theta_k|| + ||theta_{k+1}||) cannot be resolved in the
dtype, and is not judged.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from invariants.checkpoints import Check
from invariants.losses import log_neg_derivative
from invariants.trainer import Claims

__all__ = ["TOLERANCE_REASON", "step_fit", "step_tolerance", "update"]

TOLERANCE_REASON = (
    "per step, eps x ((||theta_k|| + ||theta_{k+1}||) / ||d|| + kappa (n + P + "
    "max|q|)): the rounding of the stored iterates over the step length, plus the "
    "gradient's own rounding scaled by the cancellation kappa between the samples' "
    "terms (invariants.conformance._update)"
)


def step_fit(net, X, y, loss: str, theta: np.ndarray, d: np.ndarray) -> dict:
    """The library's grad L at `theta` against the step `d`: the best-fit eta, the
    relative residual, log||g|| and the rounding scale of g (kappa (n + P + max|q|)).
    g = s g_hat with log s = logsumexp(log -l'(q)), so neither underflows."""
    q, J = net.margin_jacobian(theta, X, y)
    log_w = log_neg_derivative(q, loss)
    log_s = float(logsumexp(log_w))
    p = np.exp(log_w - log_s)
    g_hat = -(p @ J)
    g_norm = float(np.linalg.norm(g_hat))
    fit = {"log_g": -math.inf, "eta": math.nan, "residual": math.nan, "kappa": 0.0}
    if g_norm == 0:
        return fit
    kappa = float(p @ np.linalg.norm(J, axis=1)) / g_norm
    along = float(d @ g_hat)
    d_norm = float(np.linalg.norm(d))
    fit["log_g"] = log_s + math.log(g_norm)
    fit["kappa"] = kappa * (len(q) + net.num_parameters + float(np.max(np.abs(q))))
    # eta = -(d . g) / ||g||^2, formed in logs: s may be far from 1.
    if along < 0:
        fit["eta"] = math.exp(math.log(-along) - 2 * math.log(g_norm) - log_s)
    else:
        fit["eta"] = 0.0 if along == 0 else -math.inf
    if d_norm > 0:
        fit["residual"] = float(
            np.linalg.norm(d - (along / g_norm**2) * g_hat) / d_norm
        )
    return fit


def step_tolerance(eps: float, theta_norms: tuple[float, float], d_norm, fit):
    """The tolerance of one step (module docstring), inf for d = 0."""
    if d_norm == 0:
        return math.inf
    return eps * (sum(theta_norms) / d_norm + fit["kappa"])


def update(case, checkpoints, claims: Claims) -> Check:
    net, X, y, loss = case.network, case.X, case.y, case.loss
    thetas = checkpoints.thetas
    eps = float(np.finfo(checkpoints.dtype).eps)
    eta0 = claims.step_size
    failures, judged, worst = [], 0, None
    for k in range(len(thetas) - 1):
        d = thetas[k + 1] - thetas[k]
        d_norm = float(np.linalg.norm(d))
        norms = (float(np.linalg.norm(thetas[k])), float(np.linalg.norm(thetas[k + 1])))
        fit = step_fit(net, X, y, loss, thetas[k], d)
        floor = eps * sum(norms)
        if d_norm <= floor and (
            fit["log_g"] == -math.inf
            or (floor > 0 and math.log(eta0) + fit["log_g"] <= math.log(floor))
        ):
            continue  # neither the step nor the predicted step exceeds rounding
        judged += 1
        tol = step_tolerance(eps, norms, d_norm, fit)
        verdict = _judge_step(k, fit, tol, d_norm, claims, loss)
        if verdict is not None:
            failures.append(k)
            if worst is None or verdict[0] > worst[0]:
                worst = verdict
    details = {"steps": len(thetas) - 1, "judged": judged, "failed": len(failures)}
    if worst is None:
        return Check("update", 0.0, None, True, "", details)
    _, value, tol, what = worst
    reason = (
        f"{what}; {len(failures)} of {judged} judged steps fail (first: step "
        f"{failures[0]})"
    )
    return Check("update", value, tol, False, reason, {**details, "first": failures[0]})


def _judge_step(k: int, fit: dict, tol: float, d_norm: float, claims: Claims, loss):
    """None if step k is a gradient step as declared, else (how far past its
    tolerance, the measured value, the tolerance, what is wrong)."""
    eta0 = claims.step_size
    if fit["log_g"] == -math.inf:
        return (math.inf, d_norm, 0.0, f"step {k} moves at a stationary point of L")
    if d_norm == 0:
        return (math.inf, 0.0, tol, f"step {k} does not move though grad L != 0")
    if fit["residual"] > tol:
        what = (
            f"step {k} is not along -grad L of the declared {loss} loss: relative "
            f"residual "
            f"{fit['residual']:.3e} of the best fit eta_k = {fit['eta']:.6g}"
        )
        return (fit["residual"] / tol, fit["residual"], tol, what)
    eta = fit["eta"]
    if not eta > 0:
        return (
            math.inf,
            eta,
            tol,
            f"step {k} goes up the gradient (eta_k = {eta:.3g})",
        )
    error = eta / eta0 - 1
    if claims.fixed_step and abs(error) > tol:
        what = (
            f"step {k} has eta_k = {eta:.6g}, not the declared step_size {eta0:g} "
            f"(relative error {error:+.3e})"
        )
        return (abs(error) / tol, abs(error), tol, what)
    if not claims.fixed_step and error > tol:
        what = (
            f"step {k} has eta_k = {eta:.6g} > the declared largest step_size "
            f"{eta0:g} (relative excess {error:.3e})"
        )
        return (error / tol, error, tol, what)
    return None
