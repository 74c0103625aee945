"""The exponential and logistic losses in log space.

The loss L = sum_i l(q_i) underflows long before the direction of theta has
converged, and so do the derivatives -l'(q_i). What the flow needs is their ratio
p_i = -l'(q_i) / sum_j -l'(q_j), a point of the simplex that never underflows when
it is formed from log(-l'(q_i)) by a softmax.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp, softmax

from invariants.validation import check_loss

__all__ = ["log_loss", "log_loss_threshold", "log_neg_derivative", "loss_weights"]


def log_neg_derivative(q: np.ndarray, loss: str) -> np.ndarray:
    """log(-l'(q)) elementwise: -q (exponential) or -softplus(q) (logistic)."""
    if loss == "exponential":
        return -q
    check_loss(loss)
    return -np.logaddexp(0.0, q)


def _log_terms(q: np.ndarray, loss: str) -> np.ndarray:
    if loss == "exponential":
        return -q
    check_loss(loss)
    # log(log(1 + e^-q)): for q > 0 write it as -q + log(log1p(t) / t), t = e^-q,
    # which stays finite when t underflows (the ratio tends to 1).
    out = np.empty_like(q, dtype=float)
    neg = q <= 0
    out[neg] = np.log(np.logaddexp(0.0, -q[neg]))
    t = np.exp(-q[~neg])
    ratio = np.ones_like(t)
    nz = t > 0
    ratio[nz] = np.log1p(t[nz]) / t[nz]
    out[~neg] = -q[~neg] + np.log(ratio)
    return out


def log_loss(q: np.ndarray, loss: str) -> float:
    """log L = log sum_i l(q_i), finite for any finite margins."""
    return float(logsumexp(_log_terms(np.asarray(q, dtype=float), loss)))


def loss_weights(q: np.ndarray, loss: str) -> np.ndarray:
    """p_i = -l'(q_i) / sum_j -l'(q_j); -grad L points along sum_i p_i grad q_i."""
    return softmax(log_neg_derivative(np.asarray(q, dtype=float), loss))


def log_loss_threshold(loss: str) -> float:
    """log of the loss below which Theorem 2.1 applies and every margin is positive.

    l(q_i) <= L < l(0) forces q_i > 0: l(0) = 1 for the exponential loss and log 2
    for the logistic loss (the sharp condition of the cited works).
    """
    check_loss(loss)
    return 0.0 if loss == "exponential" else math.log(math.log(2.0))
