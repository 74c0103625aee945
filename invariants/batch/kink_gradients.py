"""What the pinned slopes of a batch need about a kink, at any depth, for many rows.

For a kink k = (l, i, a), the pre-activation z_k = Z_l[i, a] of neuron a of hidden
layer l on sample i, and a parameter vector theta, `kink_parts` returns

- z_k and D_k = dz_k / dtheta;
- the gain g_k = dq_i / dh_k, where h_k = ReLU(z_k) is the neuron's output on
  sample i: the margin's gradient then reads J_i = J_i|_(h_k fixed) +
  ReLU'(z_k) g_k D_k, affine in the slope that stands for ReLU'(z_k);
- out_k = d(dq_i / dtheta) / dh_k restricted to the neuron's outgoing weights,
  the forward term: dq_i / dW_(l+1)[c, a] = delta_(l+1)[i, c] h_k.

Every ReLU' is read from the signs, as in `Network.unchecked_margin_jacobians`;
that is exact for a row whose other held kinks are not on sample i below or above
layer l, which is what `invariants.batch.pins` allows. At depth 2, D_k is the
sample x_i in the block of w_a and g_k = y_i v_a; deeper, both depend on theta.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kink_parts"]


def _scatter(network, l, per_entry):
    """(N, d_l * d_(l-1)) gradients of W_l's entries -> (N, p_l) of its
    parameters (tied entries summed)."""
    scatter = network._scatter[l - 1]
    if isinstance(scatter, tuple):
        entries, S = scatter
        return per_entry[:, entries] @ S
    return per_entry[:, scatter]


def kink_parts(network, thetas, X, y, kinks, pattern=None):
    """z (N,), D (N, P), gain (N,), out (N, P) for N rows: thetas (N, P), kinks an
    (N, 3) integer array of (layer, sample, neuron) with layers from 1.
    `pattern` (N, K_all), as in `Network.unchecked_margin_jacobians`, replaces
    the signs."""
    thetas = np.asarray(thetas, dtype=float)
    kinks = np.asarray(kinks, dtype=int).reshape(-1, 3)
    N, P = thetas.shape
    m = network.depth
    slices = network.layer_slices
    z, gain = np.zeros(N), np.zeros(N)
    D, out = np.zeros((N, P)), np.zeros((N, P))
    if N == 0:
        return z, D, gain, out
    Ws = network.batch_weight_matrices(thetas)
    L, I, A = kinks.T
    rows = np.arange(N)
    n = np.shape(X)[0]
    # Forward on each row's own sample: H[j] is layer j's output (H[0] = x), and
    # S[j - 1] its ReLU' there.
    H, Z, S = [np.asarray(X, dtype=float)[I]], [], []
    offset = 0
    for j in range(1, m + 1):
        Zj = np.einsum("noi,ni->no", Ws[j - 1], H[-1])
        Z.append(Zj)
        if j == m:
            H.append(Zj)
            break
        d = network.widths[j]
        if pattern is None:
            S.append((Zj > 0).astype(float))
        else:
            at = offset + I[:, None] * d + np.arange(d)[None, :]
            S.append(np.take_along_axis(np.asarray(pattern, float), at, 1))
        offset += n * d
        H.append(S[-1] * Zj)
    # delta[j] = dq_i / dZ_j, from the top down.
    delta = {m: np.asarray(y, dtype=float)[I][:, None]}
    for j in range(m, 1, -1):
        delta[j - 1] = np.einsum("no,noi->ni", delta[j], Ws[j - 1]) * S[j - 2]
    for l in np.unique(L):
        sel = rows[L == l]
        a = A[sel]
        z[sel] = Z[l - 1][sel, a]
        up = np.einsum("no,no->n", delta[l + 1][sel], Ws[l][sel, :, a])
        gain[sel] = up
        # The forward term: only W_(l+1)'s column a sees h_k.
        unit = np.zeros((sel.size, network.widths[l]))
        unit[np.arange(sel.size), a] = 1.0
        per = (delta[l + 1][sel][:, :, None] * unit[:, None, :]).reshape(sel.size, -1)
        out[np.ix_(sel, np.arange(slices[l].start, slices[l].stop))] = _scatter(
            network, l + 1, per
        )
        # D_k: backpropagation of e_a from layer l down.
        g = unit
        for j in range(l, 0, -1):
            per = (g[:, :, None] * H[j - 1][sel][:, None, :]).reshape(sel.size, -1)
            cols = np.arange(slices[j - 1].start, slices[j - 1].stop)
            D[np.ix_(sel, cols)] = _scatter(network, j, per)
            if j > 1:
                g = np.einsum("no,noi->ni", g, Ws[j - 1][sel]) * S[j - 2][sel]
    return z, D, gain, out
