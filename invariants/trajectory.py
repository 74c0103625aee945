"""A simulated gradient-flow path: its checkpoints and its limit candidate.

`invariants.flow.gradient_flow` returns one; checkers only read its arrays, so a
Trajectory can also be built from any trainer's parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from invariants.losses import log_loss
from invariants.networks import Network

__all__ = ["Trajectory"]


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Checkpoints of one GF path and its limit candidate.

    `thetas[k]` is theta at checkpoint k, `log_norms[k]` = log||theta||, `phase[k]` is
    "fit" or "far". The last checkpoint is the final point. `theta_tilde` rescales the
    final direction so that its smallest margin is exactly 1.
    """

    network: Network
    X: np.ndarray
    y: np.ndarray
    loss: str
    thetas: np.ndarray
    log_norms: np.ndarray
    phase: tuple[str, ...]
    direction: np.ndarray
    log_norm: float
    theta_tilde: np.ndarray
    jacobian_evaluations: int
    steps: dict = field(default_factory=dict)
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    @property
    def theta_final(self) -> np.ndarray:
        return self.thetas[-1]

    @property
    def norm_squared(self) -> float:
        """||theta_tilde||^2, the value of Problem 2 at the limit candidate."""
        return float(self.theta_tilde @ self.theta_tilde)

    def normalized_margins(self) -> np.ndarray:
        """min_i q_i / ||theta||^m at every checkpoint (non-decreasing along GF far
        out, by Lyu and Li)."""
        return np.array(
            [
                np.min(self.network.margins(phi, self.X, self.y))
                for phi in self.directions()
            ]
        )

    def directions(self) -> np.ndarray:
        norms = np.linalg.norm(self.thetas, axis=1, keepdims=True)
        return self.thetas / norms

    def log_losses(self) -> np.ndarray:
        """log L at every checkpoint, from the direction and log-norm (no overflow)."""
        m = self.network.depth
        out = []
        for phi, s in zip(self.directions(), self.log_norms):
            q = self.network.margins(phi, self.X, self.y) * math.exp(m * s)
            out.append(log_loss(q, self.loss))
        return np.asarray(out)
