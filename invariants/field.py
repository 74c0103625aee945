"""The loss-normalised gradient field of GF and its exact Jacobian.

For margins q_i(theta) the GF velocity is -grad L = sum_i -l'(q_i) grad q_i. Dividing by
the positive scalar sum_i -l'(q_i) changes the speed, not the path, and leaves
F(theta) = J(theta)^T p with p = softmax(log(-l'(q))): bounded, and computable far past
the point where L itself underflows.

Homogeneity splits theta = e^s phi. Margins scale as q(theta) = e^{m s} q(phi) and
gradients as e^{(m-1) s}, so along the path, with s = log||theta|| as the clock,

    d phi / d s = ||phi||^2 G / (phi . G) - phi,   G = J(phi)^T p(e^{m s} q(phi)),

which keeps ||phi|| constant and needs no number larger than the margins' exponent
e^{m s} q(phi). That exponent is what makes the far regime stiff: margin gaps relax at a
rate proportional to it. `Field.log_norm_jacobian` gives an implicit integrator the
Jacobian it needs, with the stiff part exact.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from invariants.ldp import least_distance
from invariants.losses import log_loss, loss_weights
from invariants.networks import Network

__all__ = [
    "Field",
    "FlowError",
    "KinkSlidingError",
    "StationaryPointError",
    "find_kink",
]

# A margin further than this above the smallest, in units of q(theta), carries a loss
# weight below e^-36 ~ 2e-16 relative: invisible in double precision.
BOUNDARY_LAYER = 36.0
# Active margins drift apart by the integrator's error (rtol 1e-10 per step, growing
# over a run); a member leaves the active set only beyond this relative gap.
LEAVE_TOL = 1e-6
STATIONARY_TOL = 1e-8


class StationaryPointError(RuntimeError):
    """GF does not move: the loss-weighted gradient is exactly zero."""


class FlowError(RuntimeError):
    """The simulator could not follow GF to the requested point; the message says why
    and what was reached."""


class KinkSlidingError(FlowError):
    """The simulator failed while the path sat on a ReLU kink (a pre-activation at
    zero); the message names the kink."""


def find_kink(network: Network, theta: np.ndarray, X: np.ndarray, rel_tol=1e-6):
    """(layer, neuron, sample, relative size) of the pre-activation closest to zero,
    relative to ||incoming weights|| ||layer input||, if below rel_tol; else None."""
    if network.activation != "relu" or network.depth < 2:
        return None
    Ws = network.weight_matrices(theta)
    fwd = network.forward(theta, X)
    H = X
    best = None
    for l, (W, Z) in enumerate(zip(Ws[:-1], fwd.preactivations[:-1]), start=1):
        scale = np.outer(np.linalg.norm(H, axis=1), np.linalg.norm(W, axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(scale > 0, np.abs(Z) / scale, np.inf)
        i, a = np.unravel_index(np.argmin(rel), rel.shape)
        if rel[i, a] < rel_tol and (best is None or rel[i, a] < best[3]):
            best = (l, int(a), int(i), float(rel[i, a]))
        H = np.maximum(Z, 0.0)
    return best


class Field:
    """Margins, their Jacobian and the GF field of one case, with evaluation counts."""

    def __init__(self, network: Network, X: np.ndarray, y: np.ndarray, loss: str):
        self.network = network
        self.X = X
        self.y = y
        self.loss = loss
        self.m = network.depth
        self.jacobian_evaluations = 0
        self.last_point = None

    def margins_and_jacobian(self, theta: np.ndarray, slopes=None):
        self.jacobian_evaluations += 1
        self.last_point = theta
        return self.network.unchecked_margin_jacobian(theta, self.X, self.y, slopes)

    # -- arc-length clock, for the fitting phase ---------------------------------------

    def unit_velocity(self, theta: np.ndarray, slopes=None) -> np.ndarray:
        """F / ||F||: GF's path traced at unit speed."""
        q, J = self.margins_and_jacobian(theta, slopes)
        F = J.T @ loss_weights(q, self.loss)
        norm = float(np.linalg.norm(F))
        # Below this relative size the unit direction is rounding noise: GF has come
        # to rest (in the limit) at a point where the loss is still too large.
        if not norm > STATIONARY_TOL * float(np.linalg.norm(J)):
            raise StationaryPointError(
                f"the gradient of the loss is {norm:.3g} (relative "
                f"{norm / max(float(np.linalg.norm(J)), 1e-300):.2g}) at ||theta|| = "
                f"{np.linalg.norm(theta):.6g}, log L = {log_loss(q, self.loss):.6g}: "
                "GF cannot move from here or converges to a point that does not fit "
                "the data (zero initialisation, dead ReLUs, or data this network "
                "cannot separate), or moves more slowly than this simulator resolves "
                "(data separable only with a tiny margin)"
            )
        return F / norm

    # -- log-norm clock, for the far regime ------------------------------------------

    def sharpness(self, s: float) -> float:
        """The factor e^{m s} that turns q(phi) into q(theta)."""
        return float(np.exp(self.m * s))

    def _weights(self, q_phi, K):
        z = K * q_phi
        return loss_weights(z, self.loss), z

    def log_norm_velocity(self, s: float, phi: np.ndarray, slopes=None) -> np.ndarray:
        q, J = self.margins_and_jacobian(phi, slopes)
        p, _ = self._weights(q, self.sharpness(s))
        G = J.T @ p
        return (phi @ phi) / (phi @ G) * G - phi

    def log_norm_jacobian(self, s: float, phi: np.ndarray, slopes=None) -> np.ndarray:
        """d(velocity)/d(phi). The stiff term K J^T (diag p - p p^T) diag(a') J is
        exact; the curvature term sum_i p_i Hess q_i, of order one, is a forward
        difference of J^T p with p frozen."""
        K = self.sharpness(s)
        q, J = self.margins_and_jacobian(phi, slopes)
        p, z = self._weights(q, K)
        G = J.T @ p
        P = phi.size

        slope = -expit(z) if self.loss == "logistic" else -np.ones_like(z)
        dp = (np.diag(p) - np.outer(p, p)) @ ((K * slope)[:, None] * J)
        dG = J.T @ dp

        h = 1e-7 * max(1.0, float(np.linalg.norm(phi)))
        for k in range(P):
            shifted = phi.copy()
            shifted[k] += h
            _, Jk = self.margins_and_jacobian(shifted, slopes)
            dG[:, k] += (Jk.T @ p - G) / h

        a = phi @ G
        c = (phi @ phi) / a
        dc = 2.0 * phi / a - (phi @ phi) / a**2 * (G + dG.T @ phi)
        return c * dG + np.outer(G, dc) - np.eye(P)

    # -- the sliding limit, for the farthest regime ---------------------------------

    def active_set(self, s, q_phi, rel_tol, previous=None) -> np.ndarray:
        """Margins whose loss weight is not negligible.

        A margin joins when it is within twice the boundary layer of the smallest
        (in units of q(theta): BOUNDARY_LAYER e^{-m s} in units of q(phi)), or within
        rel_tol relative once that is finer than rounding. A member of `previous`
        stays while within LEAVE_TOL relative: integration error alone must not
        split margins that slide together, and the factor two keeps a margin that
        an event just brought to the layer's edge from being turned away.
        """
        q_min = float(np.min(q_phi))
        gap = q_phi - q_min
        inside = gap <= 2.0 * self.layer_width(s, q_min, rel_tol)
        if previous is not None and previous.size:
            keep = np.zeros_like(inside)
            keep[previous] = gap[previous] <= LEAVE_TOL * abs(q_min)
            inside |= keep
        return np.flatnonzero(inside)

    def layer_width(self, s: float, q_min: float, rel_tol: float) -> float:
        return max(BOUNDARY_LAYER * math.exp(-self.m * s), rel_tol * abs(q_min))

    def sliding_velocity(self, phi: np.ndarray, active: np.ndarray, slopes=None):
        """The field in the limit of infinite sharpness, on the active set `active`.

        The weights saturate into a hard minimum and the flow slides along the surface
        where the smallest margins stay equal. Equal growth of the active margins,
        g_i . G equal for i with weight > 0 and >= for the rest, characterises G as
        the minimal-norm point of conv{g_i : i active}, which is the least-distance
        point of {d : g_i . d >= c} up to scale; only the direction of G matters here.
        """
        q, J = self.margins_and_jacobian(phi, slopes)
        # phi itself meets g_i . d >= m q_min (Euler's identity g_i . phi = m q_i), so
        # this right-hand side keeps the problem feasible and ||d|| <= ||phi||.
        q_min = float(np.min(q[active]))
        if not q_min > 0:
            # Only a trial stage of a too-long step lands here (GF keeps every margin
            # positive): NaN makes the stepper reject the step and shorten it.
            return np.full_like(phi, np.nan)
        G = least_distance(J[active], np.full(active.size, self.m * q_min)).d
        return (phi @ phi) / (phi @ G) * G - phi
