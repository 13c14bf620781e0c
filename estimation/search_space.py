"""Search spaces: how an optimizer's free vector x in R^3 maps to reported weights w (signed, sum |w| = 1).

- `reference-ce`  (notebook, category objective): w_raw = (x1, x2, x3, 1 - (x1 + x2 + x3)), w = w_raw / sum|w_raw|,
  uniform (1/4, 1/4, 1/4, 1/4) when sum|w_raw| < 1e-8. Reaches every w with sum(w) > 0, any signs.
- `reference-emb` (notebook, embedding objective): w_raw = (x1, x2, x3, -(1 - (x1 + x2 + x3))), same
  normalisation, fallback (1/4, 1/4, 1/4, -1/4). Reaches every w with w1 + w2 + w3 - w4 > 0; w4 can turn positive.
- `constrained` (default): signs (+, +, +, -), i.e. w = (a1, a2, a3, -a4) with a on the 3-simplex. The map is
  the notebook's with absolute values, y = (x1, x2, x3, 1 - (x1 + x2 + x3)), a = |y| / sum|y| (sum|y| >= 1, so no
  fallback is needed). Why this one: it is the identity on the simplex (x = (a1, a2, a3), so steps in x are steps
  in w), it reaches the faces exactly (a softmax only approaches them), and outside the simplex it folds back
  continuously instead of leaving the flat regions a projection would create.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np


def simplex_grid(resolution: int, dim: int = 4) -> np.ndarray:
    """All points of the (dim-1)-simplex with coordinates in {0, 1/n, ..., 1}: C(n + dim - 1, dim - 1) rows."""
    n = int(resolution)
    if n < 1:
        raise ValueError("resolution must be >= 1")
    rows = []
    for bars in itertools.combinations(range(n + dim - 1), dim - 1):  # stars and bars
        b = (-1,) + bars + (n + dim - 1,)
        rows.append([b[i + 1] - b[i] - 1 for i in range(dim)])
    return np.asarray(rows, dtype=np.float64) / n


@dataclass(frozen=True)
class Space:
    name: str
    _to_w: Callable[[np.ndarray], np.ndarray]     # [n, 3] -> [n, 4]
    _to_x: Callable[[np.ndarray], np.ndarray]     # [n, 4] -> [n, 3]
    _reachable: Callable[[np.ndarray], np.ndarray]  # [n, 4] -> bool [n]
    signs: tuple[int, ...] | None                 # fixed sign pattern, or None (any)
    dim: int = 3

    def to_w(self, x) -> np.ndarray:
        """x [3] or [n, 3] -> w [4] or [n, 4], signed with sum |w| = 1."""
        x = np.asarray(x, dtype=np.float64)
        w = self._to_w(x.reshape(-1, 3))
        return w.reshape(4) if x.ndim == 1 else w

    def to_x(self, w) -> np.ndarray:
        """A preimage of w (ValueError if w is outside the space)."""
        w = np.asarray(w, dtype=np.float64)
        W = w.reshape(-1, 4)
        W = W / np.abs(W).sum(1, keepdims=True)
        if not self._reachable(W).all():
            raise ValueError(f"weights {W.tolist()} are not reachable in space {self.name!r}")
        x = self._to_x(W)
        return x.reshape(3) if w.ndim == 1 else x

    def start(self) -> np.ndarray:
        """The notebook's starting point: equal magnitudes (x = (1/4, 1/4, 1/4))."""
        return np.full(3, 0.25)

    def initial_simplex(self, x, scale: float = 0.25) -> np.ndarray:
        """[4, 3] Nelder-Mead simplex x, x + scale e_i: wide, so that it leaves the plateau around x."""
        x = np.asarray(x, dtype=np.float64)
        return np.vstack([x, x + scale * np.eye(3)])

    def grid(self, resolution: int) -> np.ndarray:
        """[G, 4] weights on the lattice {k / n : sum |k| = n} that lie in the space."""
        a = simplex_grid(resolution)
        if self.signs is not None:
            return a * np.asarray(self.signs, dtype=np.float64) + 0.0  # + 0.0: -0 -> 0
        W = np.vstack([a * np.asarray(s) for s in itertools.product((1.0, -1.0), repeat=4)])
        W = np.unique(W + 0.0, axis=0)  # + 0.0: -0 -> 0
        return W[self._reachable(W)]


def _normalise(raw: np.ndarray, fallback) -> np.ndarray:
    norm = np.abs(raw).sum(1, keepdims=True)
    out = np.divide(raw, norm, out=np.zeros_like(raw), where=norm >= 1e-8)
    out[norm[:, 0] < 1e-8] = fallback
    return out


def _ref_ce_w(x):
    return _normalise(np.column_stack([x, 1.0 - x.sum(1)]), [0.25, 0.25, 0.25, 0.25])


def _ref_emb_w(x):
    return _normalise(np.column_stack([x, -(1.0 - x.sum(1))]), [0.25, 0.25, 0.25, -0.25])


def _constrained_w(x):
    y = np.abs(np.column_stack([x, 1.0 - x.sum(1)]))
    return y / y.sum(1, keepdims=True) * np.array([1.0, 1.0, 1.0, -1.0])


SPACES: dict[str, Space] = {
    "constrained": Space(
        "constrained", _constrained_w, lambda W: np.abs(W[:, :3]),
        lambda W: (W[:, :3] >= 0).all(1) & (W[:, 3] <= 0), signs=(1, 1, 1, -1)),
    "reference-ce": Space(
        "reference-ce", _ref_ce_w, lambda W: W[:, :3] / W.sum(1, keepdims=True),
        lambda W: W.sum(1) > 1e-12, signs=None),
    "reference-emb": Space(
        "reference-emb", _ref_emb_w, lambda W: W[:, :3] / (W[:, :3].sum(1) - W[:, 3])[:, None],
        lambda W: W[:, :3].sum(1) - W[:, 3] > 1e-12, signs=None),
}


def get_space(name: str = "constrained") -> Space:
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; choose from {sorted(SPACES)}") from None


def simplex_slice(w0, axes=(0, 1), resolution: int = 41, signs=(1, 1, 1, -1)):
    """A 2-D slice of the constrained space through w0 (for landscape plots).

    With a = |w| on the 3-simplex: a[axes[0]] = u and a[axes[1]] = v on a regular grid of [0, 1]^2, and the
    other two magnitudes share 1 - u - v in their proportion at w0 (equally if both are 0), so (u, v) =
    (a0[i], a0[j]) is w0 itself. Returns u [n], v [n], W [n, n, 4] (NaN where u + v > 1), indexed [iv, iu].
    """
    a0 = np.abs(np.asarray(w0, dtype=np.float64).reshape(4))
    a0 = a0 / a0.sum()
    i, j = axes
    rest = [c for c in range(4) if c not in (i, j)]
    share = a0[rest] / a0[rest].sum() if a0[rest].sum() > 0 else np.full(2, 0.5)
    u = np.linspace(0, 1, resolution)
    v = np.linspace(0, 1, resolution)
    U, Vv = np.meshgrid(u, v)
    A = np.zeros(U.shape + (4,))
    A[..., i], A[..., j] = U, Vv
    left = 1 - U - Vv
    A[..., rest[0]], A[..., rest[1]] = left * share[0], left * share[1]
    W = A * np.asarray(signs, dtype=np.float64) + 0.0
    W[left < -1e-12] = np.nan
    return u, v, W
