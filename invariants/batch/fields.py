"""The GF field of `invariants.field`, evaluated for a batch of trajectories.

Rows are trajectories; each call counts one evaluation per row (the single run's
`Field.jacobian_evaluations` counts the same calls), so evaluations per trajectory
compare directly. The formulas are the single run's: see `invariants.field`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logsumexp, softmax

from invariants.field import BOUNDARY_LAYER, LEAVE_TOL, STATIONARY_TOL
from invariants.kinks import KAPPA
from invariants.ldp import least_distance
from invariants.losses import _log_terms, log_neg_derivative

__all__ = ["BatchField"]

# Forward differences for the curvature term of the stiff Jacobian, at the single
# run's step. A longer step (1e-5 was tried) straddles a ReLU kink the path runs
# alongside, and the garbage Jacobian cut the Rosenbrock steps to 1e-6; central
# differences cost P more evaluations per step for no fewer steps.
CURVATURE_STEP = 1e-7
# A closed-form sliding velocity is used when it meets the active constraints to
# this relative accuracy; otherwise the row goes through the NNLS solver.
AFFINE_TOL = 1e-9
# Alternations of multipliers and slopes for a held row in the sliding phase, and
# the slope change at which they stop.
SLIDING_PASSES = 40
# Passes of the fixed point between the slopes and the margins they shift.
PINNED_PASSES = 3
SLOPE_TOL = 1e-14


class BatchField:
    """Margins, field and stiff Jacobian of one network on one dataset (X (n, d))
    or on one dataset per row (X (B, n, d)), for rows selected by `rows`."""

    def __init__(self, network, X, y, loss: str, batch: int):
        self.network, self.loss, self.m = network, loss, network.depth
        self.X = np.asarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.per_row = self.X.ndim == 3
        self.evaluations = np.zeros(batch, dtype=np.int64)
        self.columns = np.zeros(batch, dtype=np.int64)  # of difference Jacobians
        self.pins = None  # `invariants.batch.pins.Pins`, set by the runner

    def _held(self, rows):
        if self.pins is None:
            return np.zeros(len(rows), bool)
        return self.pins.held(rows)

    def _pinned(self, rows, thetas, q, J, z, weights_of, rhs_of):
        """Solve the held rows' slopes (see `invariants.batch.pins`). Returns the
        margins q and weights p with the slopes, G = J^T p, dG/dalpha (b, K, P) and
        D (b, K, P); J gets the slopes in place. The weights see the slopes through
        q by O(z) only: a fixed point from the slopes last solved, at most
        PINNED_PASSES passes; a row stops when its slopes move its margins by less
        than their rounding (its later passes are not written, so a row's answer
        does not depend on the others')."""
        pins = self.pins
        valid, j, D, E, samples, dq = pins.parts(rows, thetas, z)
        pins.at_zero(J, z, valid, j, E, samples)
        zk = np.take_along_axis(z, j, 1) * valid
        lk = pins.layer[j]
        b = np.repeat(np.arange(len(rows)), valid.shape[1])
        previous = np.where(valid, pins.alpha[rows], 0.0)
        alpha = previous.copy()
        done = np.zeros(len(rows), bool)
        rounding = np.finfo(float).eps * np.max(np.abs(q), axis=1)
        out = None
        with np.errstate(all="ignore"):
            for _ in range(PINNED_PASSES):
                qa = q.copy()
                shift = dq * alpha - np.where(zk > 0, dq, 0.0)
                np.add.at(qa, (b, samples.ravel()), shift.ravel())
                p = weights_of(qa)
                G0 = np.einsum("bn,bnp->bp", p, J)
                new = pins.solve(
                    p, samples, valid, D, E, G0, lambda G: rhs_of(G, zk, lk), previous
                )
                moved = np.max(np.abs(dq * (new[0] - alpha)), axis=1)
                out = _keep_finished(out, [qa, p, *new], done)
                alpha = np.where(done[:, None], alpha, new[0])
                done |= ~(moved > rounding)
                if done.all():
                    break
        qa, p, alpha, G, Fa, singular, free = out
        pins.add_slopes(J, valid, E, samples, alpha)
        pins.alpha[rows] = np.where(valid, alpha, 0.0)
        pins.free[rows] = np.where(valid, free, 0.0)
        pins.singular[rows[singular]] = True
        G[singular] = np.nan
        return qa, p, G, Fa, D

    def data(self, rows):
        if self.per_row:
            return self.X[rows], self.y[rows]
        return self.X, self.y

    def margins(self, rows, thetas, pattern=None):
        """q (B, n), J (B, n, P), hidden pre-activations (B, K); not counted.
        `pattern`: see `Network.unchecked_margin_jacobians`."""
        X, y = self.data(rows)
        return self.network.unchecked_margin_jacobians(thetas, X, y, pattern)

    def _counted(self, rows, thetas, pattern=None):
        np.add.at(self.evaluations, rows, 1)
        return self.margins(rows, thetas, pattern)

    def log_loss(self, q):
        if self.loss == "exponential":
            return logsumexp(-q, axis=1)
        return logsumexp(_log_terms(q.ravel(), self.loss).reshape(q.shape), axis=1)

    def weights(self, z):
        return softmax(log_neg_derivative(z, self.loss), axis=1)

    # -- fit: arc length ---------------------------------------------------------

    def unit_velocity(self, rows, thetas):
        """F / ||F|| per row, and whether the row is stationary (the single run's
        StationaryPointError test); a stationary row gets a finite velocity."""
        q, J, (z, _) = self._counted(rows, thetas)
        w = self.weights(q)
        F = np.einsum("bn,bnp->bp", w, J)
        held = self._held(rows)
        if held.any():
            # Pinned: D . F / ||F|| = -KAPPA z per unit of arc length.
            Jh = J[held]
            F[held] = self._pinned(
                rows[held], thetas[held], q[held], Jh, z[held], self.weights,
                lambda G, zk, _: -KAPPA * zk * np.linalg.norm(G, axis=1)[:, None],
            )[2]  # fmt: skip
            J[held] = Jh
        norm = np.linalg.norm(F, axis=1)
        scale = np.linalg.norm(J, axis=(1, 2))
        stationary = ~(norm > STATIONARY_TOL * scale)
        return F / np.where(norm > 0, norm, 1.0)[:, None], stationary

    # -- far: s = log||theta|| ---------------------------------------------------

    def _log_norm_parts(self, s, phi, q, J, rows=None, z=None):
        """K, p, G; with rows and z, the held rows' slopes are solved, J and q get
        them (in place) and the pinned parts (held mask, dG/dalpha, D) come back
        too."""
        K = np.exp(self.m * s)
        p = self.weights(K[:, None] * q)
        G = np.einsum("bn,bnp->bp", p, J)
        if rows is None:
            return K, p, G
        held = self._held(rows)
        pinned = (held, None, None)
        if held.any():
            # Pinned: D . (c G - phi) + KAPPA z = 0, and D . phi = l z for a kink
            # of layer l (z is homogeneous of degree l in theta).
            ph, Jh = phi[held], J[held]
            pp = np.einsum("bp,bp->b", ph, ph)

            def rhs(G, zk, lk):
                c = pp / np.einsum("bp,bp->b", ph, G)
                return (lk - KAPPA) * zk / c[:, None]

            Kh = K[held][:, None]
            q[held], p[held], G[held], Fa, D = self._pinned(
                rows[held], ph, q[held], Jh, z[held],
                lambda qa: self.weights(Kh * qa), rhs,
            )  # fmt: skip
            J[held] = Jh
            pinned = (held, Fa, D)
        return K, p, G, pinned

    def log_norm_velocity(self, rows, s, phi):
        q, J, (z, _) = self._counted(rows, phi)
        _, _, G, _ = self._log_norm_parts(s, phi, q, J, rows, z)
        c = np.einsum("bp,bp->b", phi, phi) / np.einsum("bp,bp->b", phi, G)
        return c[:, None] * G - phi

    def log_norm_jacobian(self, rows, s, phi):
        """d v / d phi (B, P, P) and d v / d s (B, P). The stiff parts are exact, the
        curvature sum_i p_i Hess q_i a forward difference of J^T p, p frozen."""
        B, P = phi.shape
        q, J, (zh, _) = self._counted(rows, phi)
        K, p, G, (held, Fa, D) = self._log_norm_parts(s, phi, q, J, rows, zh)
        z = K[:, None] * q
        slope = -expit(z) if self.loss == "logistic" else -np.ones_like(z)
        # d p / d z = diag(p) - p p^T, applied to dz/dphi and dz/ds.
        W = (K[:, None] * slope)[:, :, None] * J
        dp = p[:, :, None] * (W - np.einsum("bn,bnp->bp", p, W)[:, None, :])
        zs = self.m * z * slope
        dps = p * (zs - np.einsum("bn,bn->b", p, zs)[:, None])
        dG = np.einsum("bnp,bnq->bpq", J, dp)
        Gs = np.einsum("bnp,bn->bp", J, dps)

        h = CURVATURE_STEP * np.maximum(1.0, np.linalg.norm(phi, axis=1))
        shifted = phi[:, None] + h[:, None, None] * np.eye(P)[None]
        rep = np.repeat(rows, P)
        np.add.at(self.columns, rep, 1)
        # The columns keep phi's activation pattern: a path along a kink (a
        # pre-activation far smaller than the difference step, as just after a
        # release) would otherwise get a column from the other side, and that
        # Jacobian cut the Rosenbrock steps to 1e-7 for thousands of steps.
        pattern = np.repeat((zh > 0.0).astype(float), P, axis=0)
        columns = shifted.reshape(-1, P)
        np.add.at(self.evaluations, rep, 1)
        Gk = np.empty((B * P, P))
        # Held rows (and one dataset per row) take each column's whole Jacobian,
        # the slopes frozen at phi as the single run's difference does; the others
        # only its sum with the weights p, in one backward pass.
        full = np.repeat(held | self.per_row, P)
        if (~full).any():
            Gk[~full] = self.network.unchecked_weighted_gradients(
                columns[~full], self.X, self.y, np.repeat(p, P, axis=0)[~full],
                pattern[~full],
            )  # fmt: skip
        if full.any():
            X, y = self.data(rep[full])
            _, Jk, (zk, _) = self.network.unchecked_margin_jacobians(
                columns[full], X, y, pattern[full]
            )
            slow = np.repeat(held, P)[full]
            if slow.any():
                pins, Jhk = self.pins, Jk[slow]
                sel = rep[full][slow]
                valid, j, _, E, samples, _ = pins.parts(
                    sel, columns[full][slow], zk[slow], pattern[full][slow]
                )
                pins.at_zero(Jhk, pattern[full][slow], valid, j, E, samples)
                pins.add_slopes(Jhk, valid, E, samples, pins.alpha[sel])
                Jk[slow] = Jhk
            Gk[full] = np.einsum("bn,bnp->bp", np.repeat(p, P, axis=0)[full], Jk)
        Gk = Gk.reshape(B, P, P)
        dG += np.swapaxes(Gk - G[:, None, :], 1, 2) / h[:, None, None]

        pp = np.einsum("bp,bp->b", phi, phi)
        a = np.einsum("bp,bp->b", phi, G)
        c = pp / a
        dc = 2.0 * phi / a[:, None] - (pp / a**2)[:, None] * (
            G + np.einsum("bpq,bp->bq", dG, phi)
        )
        jac = c[:, None, None] * dG + G[:, :, None] * dc[:, None, :] - np.eye(P)
        dcs = -(pp / a**2) * np.einsum("bp,bp->b", phi, Gs)
        js = c[:, None] * Gs + dcs[:, None] * G
        if held.any():
            jac[held], js[held] = self._constrained(
                phi[held], G[held], c[held], a[held], Fa, D, jac[held], js[held]
            )
        return jac, js

    @staticmethod
    def _constrained(phi, G, c, a, Fa, D, jac, js):
        """The held rows' Jacobian with the slopes solved for, by the implicit
        function theorem on D . v + KAPPA z = 0, as the single run's
        `driver._constrained_jacobian`: J - V_a (D V_a)^-1 D (J + KAPPA I),
        V_a = dv/dalpha; likewise dv/ds.

        Known shortcoming: past the first layer D depends on theta, and the term
        v . dD/dtheta is left out. The Jacobian only steers the Rosenbrock steps
        (the error estimate still sees the true field), so this can cost steps,
        not accuracy; it has not been measured apart."""
        dc = -(c / a)[:, None] * np.einsum("bp,bkp->bk", phi, Fa)
        Va = c[:, None, None] * np.swapaxes(Fa, 1, 2) + G[:, :, None] * dc[:, None, :]
        M = np.einsum("bkp,bpj->bkj", D, Va)
        valid = np.any(D != 0, axis=2)
        M = np.where(valid[:, :, None] & valid[:, None, :], M, np.eye(M.shape[1]))
        P = phi.shape[1]
        with np.errstate(all="ignore"):
            Minv = np.linalg.pinv(M)
            R = np.einsum("bkp,bpq->bkq", D, jac + KAPPA * np.eye(P))
            jac = jac - np.einsum("bpk,bkj,bjq->bpq", Va, Minv, R)
            js = js - np.einsum(
                "bpk,bkj,bj->bp", Va, Minv, np.einsum("bkp,bp->bk", D, js)
            )
        return jac, js

    # -- sliding: the limit of infinite sharpness ---------------------------------

    def layer_width(self, s, q_min, rel_tol):
        return np.maximum(BOUNDARY_LAYER * np.exp(-self.m * s), rel_tol * np.abs(q_min))

    def active_sets(self, s, q, rel_tol, previous=None):
        """`Field.active_set` per row, as a boolean mask (B, n)."""
        q_min = q.min(axis=1)
        gap = q - q_min[:, None]
        inside = gap <= 2.0 * self.layer_width(s, q_min, rel_tol)[:, None]
        if previous is not None:
            inside |= previous & (gap <= LEAVE_TOL * np.abs(q_min)[:, None])
        return inside

    def _affine_hull(self, q, J, active):
        """The closed form: multipliers mu of equal growth h = m q_min of every
        active margin, G = J^T mu, and whether it is the minimal-norm point (every
        mu > 0, constraints met) per row; `bad` marks rows with a margin <= 0."""
        B, n, _ = J.shape
        q_min = np.where(active, q, np.inf).min(axis=1)
        bad = ~(q_min > 0)
        h = self.m * np.where(bad, 1.0, q_min)
        gram = np.einsum("bip,bjp->bij", J, J)
        both = active[:, :, None] & active[:, None, :]
        gram = np.where(both, gram, np.eye(n)[None])
        rhs = np.where(active, h[:, None], 0.0)
        with np.errstate(all="ignore"):
            try:
                mu = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                mu = np.full((B, n), np.nan)
            G = np.einsum("bn,bnp->bp", mu, J)
            slack = np.einsum("bnp,bp->bn", J, G) - h[:, None]
        ok = np.all(
            ~active | ((mu > 0) & (np.abs(slack) <= AFFINE_TOL * h[:, None])), 1
        )
        return G, mu, ok, bad, h

    def _pinned_sliding(self, rows, phi, q, J, z, active):
        """Held rows' sliding velocity direction G: the closed form on J(alpha)
        with the slopes solved for D . G = (1 - KAPPA) z / c, alternating the
        multipliers (for fixed slopes) and the slopes (affine, for fixed
        multipliers) to SLOPE_TOL: the Gram matrix depends on the slopes.
        Rows whose multipliers are not all positive fail (no NNLS with pins)."""
        pins = self.pins
        valid, j, D, E, samples, dq = pins.parts(rows, phi, z)
        pins.at_zero(J, z, valid, j, E, samples)
        zk = np.take_along_axis(z, j, 1) * valid
        b = np.repeat(np.arange(len(rows)), valid.shape[1])
        pp = np.einsum("bp,bp->b", phi, phi)
        lk = pins.layer[j]

        def rhs(G, zk=zk):
            c = pp / np.einsum("bp,bp->b", phi, G)
            return (lk - KAPPA) * zk / c[:, None]

        # From the slopes last solved: they move little between evaluations, and
        # the alternation contracts by about 0.06 a pass (measured).
        # A row that has converged (or failed) keeps that pass's answer, so that it
        # does not depend on how long the other rows take.
        alpha = np.where(valid, pins.alpha[rows], 0.0)
        stop = np.zeros(len(rows), bool)
        out = None
        with np.errstate(all="ignore"):
            for _ in range(SLIDING_PASSES):
                qa = q.copy()
                shift = dq * alpha - np.where(zk > 0, dq, 0.0)
                np.add.at(qa, (b, samples.ravel()), shift.ravel())
                Ja = pins.add_slopes(J.copy(), valid, E, samples, alpha)
                _, mu, ok, bad, _ = self._affine_hull(qa, Ja, active)
                G0 = np.einsum("bn,bnp->bp", mu, J)
                new, G, _, singular, free = pins.solve(
                    mu, samples, valid, D, E, G0, rhs, alpha
                )
                done = np.all(np.abs(new - alpha) <= SLOPE_TOL, axis=1)
                now = [new, G, singular, ok, bad, done, free]
                out = _keep_finished(out, now, stop)
                alpha = np.where(stop[:, None], alpha, new)
                stop |= done | singular | ~ok
                if stop.all():
                    break
        alpha, G, singular, ok, bad, done, free = out
        pins.alpha[rows] = np.where(valid, alpha, 0.0)
        pins.free[rows] = np.where(valid, free, 0.0)
        pins.singular[rows[singular]] = True
        failed = (~ok | singular | ~done) & ~bad
        G[failed | bad] = np.nan
        return G, failed, bad

    def sliding_velocity(self, rows, phi, active):
        """`Field.sliding_velocity` with the active sets frozen: the minimal-norm
        point of the active gradients in closed form (equal growth of every active
        margin) where all its multipliers are positive, else by NNLS for that row.
        Rows holding kinks: see `_pinned_sliding`. Returns the velocity and a mask
        of rows the NNLS could not serve."""
        q, J, (z, _) = self._counted(rows, phi)
        B = J.shape[0]
        G, _, ok, bad, h = self._affine_hull(q, J, active)
        failed = np.zeros(B, bool)
        held = self._held(rows)
        if held.any():
            G[held], failed[held], bad[held] = self._pinned_sliding(
                rows[held], phi[held], q[held], J[held], z[held], active[held]
            )
            ok[held] = True
        for b in np.flatnonzero(~ok & ~bad):
            try:
                idx = np.flatnonzero(active[b])
                G[b] = least_distance(J[b, idx], np.full(idx.size, h[b])).d
            except Exception:  # noqa: BLE001 - the row is handed off, not lost
                failed[b] = True
        with np.errstate(all="ignore"):
            c = np.einsum("bp,bp->b", phi, phi) / np.einsum("bp,bp->b", phi, G)
            v = c[:, None] * G - phi
        # As in the single run: a trial stage with a margin <= 0 is a step too long.
        v[bad | failed] = np.nan
        return v, failed & ~bad


def _keep_finished(kept, fresh, finished):
    """One pass of a per-row iteration: `fresh` arrays, except in the rows already
    `finished`, which keep the pass they finished on (so a row's answer does not
    depend on how many passes the other rows need)."""
    if kept is None:
        return fresh
    for old, new in zip(kept, fresh):
        old[~finished] = new[~finished]
    return kept
