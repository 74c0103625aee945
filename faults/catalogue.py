"""Hand-written faults for measuring what the suite catches.

Each fault is one textual edit of one source file, chosen to be a mistake a person
writing this library could make: a wrong sign, a dropped ReLU derivative, a shared
weight counted once, an off-by-one layer, an Euler step instead of the flow, a wrong
loss derivative, a tolerance made absolute. `run.py` applies one at a time to a copy
of the tree and runs the suite against it.

`equivalent` names faults that change no observable behaviour, with the reason; they
are run like the others but left out of the kill rate's denominator.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str
    path: str
    old: str
    new: str
    equivalent: str = ""


# An explicit Euler stepper with a fixed step, standing in for scipy's adaptive
# ones: the path it traces is the Euler polygon, not the flow.
_EULER = """
    class _Euler:
        def __init__(self, fun, t0, y0, t_bound, **_):
            self.fun, self.t, self.t_bound = fun, t0, t_bound
            self.y = np.array(y0, float)
            self.h = 1e-2
            self.status = "running"

        def step(self):
            h = min(self.h, self.t_bound - self.t)
            y0, t0 = self.y, self.t
            self.y = y0 + h * self.fun(t0, y0)
            self.t = t0 + h
            self._prev = (t0, y0)
            if self.t >= self.t_bound:
                self.status = "finished"

        def dense_output(self):
            (ta, ya), tb, yb = self._prev, self.t, self.y
            return lambda tt: ya + (tt - ta) / (tb - ta) * (yb - ya)

    stepper = _Euler(rhs, t0, y0, t_bound, **options)
"""

FAULTS: tuple[Fault, ...] = (
    # -- the network model's Jacobian -------------------------------------------------
    Fault(
        "jacobian-sign",
        "wrong sign",
        "invariants/networks.py",
        "G = y[:, None].astype(float)",
        "G = -y[:, None].astype(float)",
    ),
    Fault(
        "margin-sign",
        "wrong sign",
        "invariants/networks.py",
        "q = y * Zs[-1][:, 0]",
        "q = -y * Zs[-1][:, 0]",
    ),
    Fault(
        "relu-derivative-dropped",
        "dropped ReLU derivative",
        "invariants/networks.py",
        "G = (G @ Ws[l - 1]) * slope",
        "G = G @ Ws[l - 1]",
    ),
    Fault(
        "relu-derivative-at-zero-one",
        "dropped ReLU derivative",
        "invariants/networks.py",
        "return (Z > 0.0).astype(float)",
        "return (Z >= 0.0).astype(float)",
    ),
    Fault(
        "shared-weight-counted-once",
        "shared weight counted once",
        "invariants/networks.py",
        "S[np.arange(len(entries)), targets] = 1.0",
        "first = np.unique(targets, return_index=True)[1]\n"
        "                S[first, targets[first]] = 1.0",
    ),
    Fault(
        "backprop-off-by-one-layer",
        "off-by-one layer",
        "invariants/networks.py",
        "H_prev = X if l == 1 else self._sigma(Zs[l - 2])\n"
        "            per_entry = (G[:, :, None]",
        "H_prev = X if l == 1 else Zs[l - 2]\n            per_entry = (G[:, :, None]",
    ),
    Fault(
        "backprop-skips-first-layer",
        "off-by-one layer",
        "invariants/networks.py",
        "for l in range(top, 0, -1):",
        "for l in range(top, 1, -1):",
    ),
    Fault(
        "hidden-neurons-off-by-one",
        "off-by-one layer",
        "invariants/networks.py",
        "(l, a) for l in range(1, self.depth) for a in range(self.widths[l])",
        "(l, a) for l in range(1, self.depth - 1) for a in range(self.widths[l])",
    ),
    # -- loss weights ---------------------------------------------------------------
    Fault(
        "loss-weights-sign",
        "wrong loss derivative",
        "invariants/losses.py",
        "return softmax(log_neg_derivative(np.asarray(q, dtype=float), loss))",
        "return softmax(-log_neg_derivative(np.asarray(q, dtype=float), loss))",
    ),
    Fault(
        "logistic-derivative-as-exponential",
        "wrong loss derivative",
        "invariants/losses.py",
        "    check_loss(loss)\n    return -np.logaddexp(0.0, q)",
        "    check_loss(loss)\n    return -q",
    ),
    Fault(
        "logistic-derivative-softplus-of-minus-q",
        "wrong loss derivative",
        "invariants/losses.py",
        "    check_loss(loss)\n    return -np.logaddexp(0.0, q)",
        "    check_loss(loss)\n    return -np.logaddexp(0.0, -q)",
    ),
    Fault(
        "uniform-loss-weights",
        "wrong loss derivative",
        "invariants/losses.py",
        "return softmax(log_neg_derivative(np.asarray(q, dtype=float), loss))",
        "return np.full(np.shape(q), 1.0 / np.size(q))",
    ),
    Fault(
        "loss-threshold-logistic",
        "wrong loss derivative",
        "invariants/losses.py",
        'return 0.0 if loss == "exponential" else math.log(math.log(2.0))',
        'return 0.0 if loss == "exponential" else math.log(2.0)',
    ),
    # -- the simulator --------------------------------------------------------------
    Fault(
        "euler-instead-of-flow",
        "Euler step instead of the flow",
        "invariants/driver.py",
        "    stepper = STEPPERS[method](rhs, t0, y0, t_bound, **options)\n",
        _EULER,
    ),
    Fault(
        "loose-integration",
        "Euler step instead of the flow",
        "invariants/flow.py",
        "rtol: float = 1e-10,",
        "rtol: float = 1e-3,",
    ),
    Fault(
        "log-norm-velocity-sign",
        "wrong sign",
        "invariants/field.py",
        "return (phi @ phi) / (phi @ G) * G - phi\n\n    def log_norm_jacobian",
        "return (phi @ phi) / (phi @ G) * G + phi\n\n    def log_norm_jacobian",
    ),
    Fault(
        "unit-velocity-sign",
        "wrong sign",
        "invariants/field.py",
        "F = J.T @ loss_weights(q, self.loss)",
        "F = -J.T @ loss_weights(q, self.loss)",
    ),
    Fault(
        "sharpness-depth-off-by-one",
        "off-by-one layer",
        "invariants/field.py",
        "return float(np.exp(self.m * s))",
        "return float(np.exp((self.m - 1) * s))",
    ),
    Fault(
        "sliding-velocity-dropped-projection",
        "wrong sign",
        "invariants/field.py",
        "G = least_distance(J[active], np.full(active.size, self.m * q_min)).d",
        "G = J[active].sum(axis=0)",
    ),
    Fault(
        "sliding-switch-early",
        "Euler step instead of the flow",
        "invariants/flow.py",
        "sliding_margin: float = 1e6,",
        "sliding_margin: float = 1.0,",
    ),
    # -- checkers -------------------------------------------------------------------
    Fault(
        "balance-tolerance-absolute",
        "a tolerance made absolute",
        "invariants/balance.py",
        "denominator = np.maximum(self.scales[0], self.scales)",
        "denominator = np.ones_like(self.scales)",
    ),
    Fault(
        "balance-layers-off-by-one",
        "off-by-one layer",
        "invariants/balance.py",
        "a, b = sq[l - 1], sq[l]",
        "a, b = sq[l - 1], sq[l - 1]",
    ),
    Fault(
        "kkt-residual-absolute",
        "a tolerance made absolute",
        "invariants/kkt.py",
        "residual = float(np.linalg.norm(theta_t - C @ mu)) / size",
        "residual = float(np.linalg.norm(theta_t - C @ mu))",
    ),
    Fault(
        "kkt-active-set-everything",
        "a tolerance made absolute",
        "invariants/kkt.py",
        "active = tuple(int(i) for i in np.flatnonzero(q <= 1.0 + active_tol))",
        "active = tuple(range(len(q)))",
    ),
    Fault(
        "zero-input-tolerance-absolute",
        "a tolerance made absolute",
        "invariants/activation.py",
        "scale = np.linalg.norm(H, axis=1)[:, None] * np.linalg.norm(W)",
        "scale = np.ones((H.shape[0], 1))",
    ),
    Fault(
        "certificate-excess-sign",
        "wrong sign",
        "invariants/certify/record.py",
        "return (self.limit_value - self.dual) / max(abs(self.limit_value), 1e-300)",
        "return (self.dual - self.limit_value) / max(abs(self.limit_value), 1e-300)",
    ),
    Fault(
        "certificate-holds-on-primal",
        "wrong sign",
        "invariants/certify/record.py",
        "return self.excess <= self.tol",
        "return self.gap <= self.tol",
    ),
)
