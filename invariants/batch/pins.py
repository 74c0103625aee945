"""Pinned ReLU kinks for a batch: the single run's Filippov sliding.

`invariants.kinks` holds GF on a kink z_k = 0 it is pushed onto from both sides
with a Clarke slope alpha_k in [0, 1] for ReLU'(z_k), solved so that
d z_k / d clock = -KAPPA z_k. For a kink k = (l, i, a), the pre-activation of
neuron a of layer l on sample i, the slope enters the Jacobian of the margins in
one row: dq_i / dtheta = J_i|_(ReLU'(z_k) = 0) + alpha_k g_k D_k, with D_k =
dz_k / dtheta and g_k = dq_i / dReLU(z_k) (`invariants.batch.kink_gradients`).
So long as a row holds no two kinks of one sample in different layers (else the
row is a product of their slopes), neither D_k nor g_k depends on the slopes, and

    J(alpha) = J(0) + sum_k alpha_k e_(i_k) E_k^T,   E_k = g_k D_k,

is affine in alpha. At depth 2, D_k is constant (x_i in the block of w_a) and
g_k = y_i v_a, in closed form. The fit and stiff fields are v = sigma(theta)
G(alpha) + r(theta) with G = J(alpha)^T p, p the weights of the margins (on the
surface they do not depend on alpha: the forward pass does not), so the condition
D_k . v + KAPPA z_k = 0 reads

    sum_j (D_k . E_j) p_(i_j) alpha_j = -(D_k . r + KAPPA z_k) / sigma - D_k . G(0),

a K x K linear system per row (K <= MAX_PINS). sigma depends on alpha only
weakly (fit: 1 / ||F||; far: ||phi||^2 / phi . G, where phi . E_j = l g_j z_j
vanishes on the surface), and only through a right-hand side of the size of z
(in the far phase D . r = -l z, z being homogeneous of degree l): a few passes
solve it to rounding. In the sliding phase p is the multipliers of the
minimal-norm point, which depend on alpha through the Gram matrix:
`BatchField._pinned_sliding` alternates the two solves. This is the condition
`kinks.solve_slopes` solves by Newton; `tests/test_batch.py` checks the batch's
slopes in the single run's terms, at depths 2 and 3.

Not served here (the row is handed off): one dataset per row, more than MAX_PINS
kinks, two kinks of one sample in different layers, a first-layer kink whose
surface holds other kinks (proportional samples: the system is singular), a
neuron without an outgoing weight, a system that is singular at a row, and in the
sliding phase a row whose multipliers are not all positive. A slot whose slope no
longer moves the field (its sample's weight underflowed) is kept or released as
`Pins.solve` says.

A first-layer neuron pushed onto kinks on samples that span its inputs is pushed
onto the origin of its incoming weights: every input to it is then zero, and the
slopes that would hold it there are not unique (the condition is homogeneous in
them). If those weights are its own (not shared with another neuron), the batch
sets them to exactly 0 and lets the neuron go: with ReLU'(0) = 0 the field leaves
them at 0 and the neuron's outgoing weights alone (they are multiplied by
ReLU(0)), the minimal-norm Clarke selection there, and the only path once both
sides of every one of its kinks push towards them. It does the same when a held
neuron's own weights shrink into their origin while it slides along one kink.
The single run has no such step: its Newton for the slopes runs to its bounds,
releases, and chatters.
"""

from __future__ import annotations

import numpy as np

from invariants import kinks as kinkmod
from invariants.batch.kink_gradients import kink_parts

__all__ = ["MAX_PINS", "Pins"]

MAX_PINS = 2
# A pinned system this close to singular (|det| against the product of its rows'
# norms) is handed to the single run, whose bounded Newton copes.
SINGULAR_TOL = 1e-10
# As the single run's release test in `invariants.driver`.
RELEASE_TOL = 1e-9
# A slope that moves its own condition by less than this against the terms of that
# condition (||D_k|| ||G||) is not seen by GF; see `Pins.solve`. The same relative
# size below which the driver calls a side of a kink neutral.
DEGENERATE_TOL = 1e-12
# Where a degenerate slot's slope is put when GF leaves its kink: past the end of
# [0, 1] on the side GF goes (the single run's Newton bounds).
RELEASE_BELOW, RELEASE_ABOVE = kinkmod.SLOPE_LO, kinkmod.SLOPE_HI
# A held neuron whose incoming weights shrink to this size against ||theta|| is
# at their origin (see `Pins.shrinking`): as the release test's tolerance.
ORIGIN_TOL = 1e-9


class Pins:
    """Which kinks each row holds (slot -> index into `kinks.all_kinks`, -1 for
    none) and the slopes last solved for them."""

    def __init__(self, network, X, y, batch: int):
        n = X.shape[-2]
        self.kinks = kinkmod.all_kinks(network, n)
        self.slot = np.full((batch, MAX_PINS), -1)
        self.alpha = np.zeros((batch, MAX_PINS))
        # The slopes that hold the surface without the pull-back: see `solve`.
        self.free = np.zeros((batch, MAX_PINS))
        self.singular = np.zeros(batch, bool)
        self.pins = np.zeros(batch, dtype=np.int64)
        self.releases = np.zeros(batch, dtype=np.int64)
        self.collapses = np.zeros(batch, dtype=np.int64)
        self.able = network.activation == "relu" and network.depth >= 2 and X.ndim == 2
        if not self.able:
            return
        self.network = network
        self.table = np.array(self.kinks, dtype=int).reshape(-1, 3)
        self.layer, self.sample, self.neuron = self.table.T
        self.y = np.asarray(y, float)
        self.X = np.asarray(X, float)
        # A first-layer kink's gradient is x_i in the block of w_a, whatever theta.
        P = network.num_parameters
        first = np.flatnonzero(self.layer == 1)
        self.D = np.zeros((len(self.kinks), P))
        self.D[first] = network.preactivation_gradients(
            np.ones(P), X, [self.kinks[k] for k in first]
        )[1]
        lines = kinkmod.rays(X, lines=True)
        self.alone = np.array([np.sum(lines == lines[i]) == 1 for i in self.sample])
        # A neuron without an outgoing weight does not move the margins.
        self.alone &= np.array(
            [
                np.any(network._gather[l][:, a] < network.layer_sizes[l])
                for l, _, a in self.kinks
            ]
        )
        if network.depth == 2:
            self.out_slice = network.layer_slices[1]
            self.out_gather = network._gather[1][0]  # one row, d_1 entries
            p2 = self.out_slice.stop - self.out_slice.start
            # Parameter column of each neuron's outgoing weight.
            self.vcol = np.where(
                self.out_gather < p2, self.out_slice.start + self.out_gather, -1
            )[self.neuron]
        # Each first-layer neuron's incoming parameter columns, and whether they
        # are its own.
        self.incoming = {}
        for a in np.unique(self.neuron[first]):
            mine = first[self.neuron[first] == a]
            cols = np.flatnonzero(np.any(self.D[mine] != 0, axis=0))
            others = first[self.neuron[first] != a]
            shared = np.any(self.D[others][:, cols] != 0)
            self.incoming[int(a)] = None if shared else cols

    def same_neuron(self, j):
        """Mask of the kinks of kink j's neuron (its layer, its index)."""
        return (self.layer == self.layer[j]) & (self.neuron == self.neuron[j])

    # -- bookkeeping ---------------------------------------------------------------

    def held(self, rows):
        """Rows (of `rows`) holding at least one kink."""
        return np.any(self.slot[rows] >= 0, axis=1)

    def can_pin(self, r, j) -> bool:
        if not (
            self.able and self.alone[j] and np.any(self.slot[r] < 0)
            and j not in self.slot[r]
        ):  # fmt: skip
            return False
        # A neuron pinned on samples that span its inputs has its weights held at
        # 0: the condition is then homogeneous in the slopes (any multiple of a
        # solution solves it), and the single run's Newton runs to its bounds and
        # releases. Its business.
        held = self.slot[r][self.slot[r] >= 0]
        if np.any(
            (self.sample[held] == self.sample[j]) & (self.layer[held] != self.layer[j])
        ):
            # Kinks on one sample in two layers: the margin's gradient is then a
            # product of their slopes, and the linear solve does not hold.
            return False
        if self.layer[j] > 1:
            return True  # a singular system is caught where it is solved
        same = held[self.same_neuron(j)[held]]
        samples = list(self.sample[same]) + [self.sample[j]]
        return bool(np.linalg.matrix_rank(self.X[samples]) < self.X.shape[1])

    def collapsing(self, r, j):
        """The incoming parameter columns of kink j's neuron when row r, adding j
        to its pins, would hold that neuron's own weights at the origin (the
        pre-activations' gradients on the held samples span them); else None."""
        if not (self.able and self.alone[j]) or self.layer[j] != 1:
            return None
        cols = self.incoming.get(int(self.neuron[j]))
        if cols is None:
            return None
        held = self.slot[r][self.slot[r] >= 0]
        held = list(held[self.same_neuron(j)[held]]) + [j]
        if np.linalg.matrix_rank(self.D[held][:, cols]) < cols.size:
            return None
        return cols

    def shrinking(self, r, before, after):
        """A kink of each neuron row r holds a kink of whose own incoming weights
        have shrunk over a step to within ORIGIN_TOL of the origin, against
        ||theta||."""
        out, seen = [], set()
        for j in self.slot[r][self.slot[r] >= 0]:
            if int(self.neuron[j]) in seen:
                continue
            cols = self.incoming.get(int(self.neuron[j]))
            if cols is None or self.layer[j] != 1:
                continue
            now = np.linalg.norm(after[cols])
            if now < np.linalg.norm(
                before[cols]
            ) and now <= ORIGIN_TOL * np.linalg.norm(after):
                out.append(int(j))
                seen.add(int(self.neuron[j]))
        return out

    def collapse(self, r, j):
        """Row r lets kink j's neuron go: its pins are dropped (not released: no
        slope left [0, 1]). Returns the neuron's incoming parameter columns, which
        the caller sets to 0."""
        same = self.same_neuron(j)
        for k in range(MAX_PINS):
            if self.slot[r, k] >= 0 and same[self.slot[r, k]]:
                self.slot[r, k] = -1
        self.collapses[r] += 1
        return self.incoming[int(self.neuron[j])]

    def pin(self, r, j):
        free = int(np.flatnonzero(self.slot[r] < 0)[0])
        self.slot[r, free] = j
        self.alpha[r, free] = self.free[r, free] = 0.5
        self.pins[r] += 1

    def release(self, r, k):
        j = int(self.slot[r, k])
        self.slot[r, k] = -1
        self.releases[r] += 1
        return j

    def pinned(self, r):
        """The single run's view of row r: its pinned kinks and their slopes."""
        keep = self.slot[r] >= 0
        return [self.kinks[j] for j in self.slot[r][keep]], self.alpha[r][keep]

    # -- the algebra -----------------------------------------------------------------

    def parts(self, rows, thetas, z, pattern=None):
        """For rows holding kinks, z (b, K_all) their hidden pre-activations: valid
        slots (b, K), their kink indices (b, K), D (b, K, P), E (b, K, P), the
        samples of the slots (b, K) and dq_(i_k) / dalpha_k (b, K). `pattern`, for
        a difference column, the activation pattern it was evaluated with.

        E_k = dJ_(i_k) / dalpha_k is g_k D_k (`kink_gradients`) plus z_k times the
        forward term: ReLU(z_k), which the neuron's outgoing weights see, is read as
        alpha_k z_k (and so is it in the margin q_i, through which the weights see
        it), the same Clarke selection (the two differ by O(z_k), which the
        pull-back keeps at rounding level), so that the pinned field is smooth
        across the surface and the stiff phase's difference Jacobian sees slope
        alpha_k there, not 0 or 1 (with ReLU, RODAS4 crawled at steps of 5e-5 on a
        pinned row). Deeper layers see ReLU(z_k) through later activations too, at
        O(z_k) again; that is left out."""
        slot = self.slot[rows]
        valid = slot >= 0
        j = np.where(valid, slot, 0)
        zk = np.take_along_axis(z, j, 1)
        samples = self.sample[j]
        b, k = np.nonzero(valid)
        if self.network.depth == 2:
            # The closed form: D is constant and g_k = y_i v_a.
            u = np.concatenate([thetas[:, self.out_slice], np.zeros((len(rows), 1))], 1)
            v = u[:, self.out_gather]  # (b, d_1)
            D = np.where(valid[:, :, None], self.D[j], 0.0)
            gain = self.y[samples] * np.take_along_axis(v, self.neuron[j], 1)
            E = gain[:, :, None] * D
            E[b, k, self.vcol[j[b, k]]] += self.y[samples[b, k]] * zk[b, k]
            return valid, j, D, E, samples, gain * zk * valid
        P = thetas.shape[1]
        D, E = (
            np.zeros((len(rows), valid.shape[1], P)),
            np.zeros((len(rows), valid.shape[1], P)),
        )
        gain = np.zeros(valid.shape)
        _, Dk, gk, outk = kink_parts(
            self.network, thetas[b], self.X, self.y, self.table[j[b, k]],
            None if pattern is None else pattern[b],
        )  # fmt: skip
        D[b, k], gain[b, k] = Dk, gk
        E[b, k] = gk[:, None] * Dk + zk[b, k][:, None] * outk
        return valid, j, D, E, samples, gain * zk * valid

    @staticmethod
    def add_slopes(J, valid, E, samples, delta):
        """J (b, n, P) with each valid slot's ReLU' raised by delta (b, K), in place:
        the slope enters margin i_k's row as delta_k E_k."""
        for k in range(valid.shape[1]):
            b = np.flatnonzero(valid[:, k])
            if b.size:
                J[b, samples[b, k]] += delta[b, k][:, None] * E[b, k]
        return J

    def at_zero(self, J, z, valid, j, E, samples):
        """J with ReLU' = 0 at every valid slot (whatever the sign of z there)."""
        now = (np.take_along_axis(z, j, 1) > 0.0).astype(float)
        return self.add_slopes(J, valid, E, samples, -now * valid)

    def solve(self, p, samples, valid, D, E, G0, rhs_of, previous):
        """Slopes with G = G0 + sum_k alpha_k p_(i_k) E_k and D . G = rhs_of(G):
        two passes (rhs_of depends on alpha only through sigma). Returns alpha,
        G, dG/dalpha, a mask of singular rows, and the free slopes: those with
        D . G = 0, which hold the surface without the pull-back.

        The free slopes decide the release. The pull-back acts on a
        pre-activation that rounding put off the surface; where GF grazes the
        surface from one side (the slope that holds it at 0 or 1: the neuron is
        dead, or live, on every other sample), the pull-back from the wrong side
        takes the solved slope a rounding error past [0, 1]. A release there
        was followed by a pin at the next step, again and again, until the
        evaluation budget was spent.

        A slot whose sample's weight p_(i_k) has fallen so far that its slope moves
        D_k . G by less than rounding (a sample that stopped being a support
        vector; in the sliding phase an inactive one, whose multiplier is 0) is
        degenerate: GF no longer sees the slope, and the two sides of the kink
        have the same field. If that field holds the kink anyway (D_k . G meets
        the condition to rounding), the slope keeps its `previous` value; if not,
        GF leaves the kink to the side its rate points to, and the slope is set
        past that end of [0, 1] so that the kink is released there."""
        pk = np.take_along_axis(p, samples, 1) * valid  # (b, K)
        Fa = pk[:, :, None] * E  # dG / dalpha_k
        A = np.einsum("bjp,bkp->bjk", D, Fa)
        d_norm = np.linalg.norm(D, axis=2)
        g_norm = np.linalg.norm(G0, axis=1)[:, None]
        diag = np.abs(np.diagonal(A, axis1=1, axis2=2))
        degenerate = valid & ~(diag > DEGENERATE_TOL * d_norm * g_norm)
        solved = valid & ~degenerate
        eye = np.eye(A.shape[1])[None]
        A = np.where(solved[:, :, None] & solved[:, None, :], A, eye)
        rows_norm = np.prod(np.linalg.norm(A, axis=2), axis=1)
        finite = np.all(np.isfinite(A), axis=(1, 2))
        # A trial stage off the rails (not finite) is rejected by its step's
        # error test; it says nothing about the system.
        singular = finite & ~(np.abs(np.linalg.det(A)) > SINGULAR_TOL * rows_norm)
        A[singular | ~finite] = eye[0]
        DG0 = np.einsum("bkp,bp->bk", D, G0)
        G = G0
        for _ in range(2):
            rhs = rhs_of(G)
            b = np.where(solved, rhs - DG0, 0.0)
            alpha = np.linalg.solve(A, b[:, :, None])[:, :, 0]
            alpha = np.where(degenerate, 0.0, alpha)
            G = G0 + np.einsum("bk,bkp->bp", alpha, Fa)
        free = np.linalg.solve(A, np.where(solved, -DG0, 0.0)[:, :, None])[:, :, 0]
        if degenerate.any():
            rate = np.einsum("bkp,bp->bk", D, G) - rhs
            scale = DEGENERATE_TOL * d_norm * np.linalg.norm(G, axis=1)[:, None]
            leave = np.where(rate > 0, RELEASE_ABOVE, RELEASE_BELOW)
            # Clipped: `previous` may be a trial stage's release marker.
            kept = np.clip(previous, 0.0, 1.0)
            alpha = np.where(
                degenerate, np.where(np.abs(rate) <= scale, kept, leave), alpha
            )
            free = np.where(degenerate, alpha, free)
            G = G0 + np.einsum("bk,bkp->bp", alpha, Fa)
        return alpha, G, Fa, singular, free
