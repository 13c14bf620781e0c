"""Uncertainty of the estimated weights: a bootstrap over users, with m-out-of-n subsampling as a check.

Re-ranking every session for every replicate would cost a full optimisation per replicate. Instead:

1. Candidates: a finite set C of weight vectors: every point evaluated for the objective in this invocation (the
   optimizers' histories, landscapes: `RecordingObjective` keeps each evaluated w's per-session losses), the
   space's lattice at `resolution`, and a local lattice around the estimate (`candidate_weights`).
2. L[c, s]: the objective's per-session loss of candidate c on (used) session s, each computed once.
3. A replicate draws a weight per user: for the bootstrap, multinomial counts (n users out of n, with
   replacement), i.e. a user's sessions enter as often as the user is drawn; for m-out-of-n, a subset of
   m users without replacement (weights 0/1). Session weight = its user's weight. The replicate's loss of c is
   sum_s v_s L[c, s] / sum_s v_s, and its estimate the argmin over C (ties: the mean of the tied candidates; the
   objectives are piecewise constant in w, so neighbouring candidates often tie). No ranking per replicate.
4. Intervals, per weight, at `level` (90%):
   - bootstrap: percentile interval of the replicate estimates;
   - m-out-of-n (subsampling, Politis & Romano 1994): with m = ceil(n ** m_exponent) users (default
     exponent 0.7) and the estimator's rate n ** rate, the interval is
     [w_hat - (m/n)**rate * q_hi, w_hat - (m/n)**rate * q_lo], q = quantiles of (w_m - w_hat).
     Default rate 1/3: the objective is an average of step functions of w (a top-K set changes at discrete w),
     the setting of the maximum-score estimator, which converges at n^(1/3) (Kim & Pollard 1990) and for
     which the plain n-out-of-n bootstrap is inconsistent (Abrevaya & Huang 2005) -- hence the check.
   Both are clipped to the range a weight can take (|w_h| <= 1, and the space's sign where it has one).

The candidate-set argmin is the grid estimator's bootstrap: its resolution limits the intervals' (the local lattice
step, 0.025 by default, is the finest unless the optimizer's own evaluations are finer).
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from datamodules.schema import WEIGHT_KEYS


# ------------------------------------------------------------------------------------------ recording wrapper
class RecordingObjective:
    """Wraps an objective (anything with `per_session(W) -> [B, S]` and `used` bool [S]): calling it returns
    exactly what `Objective.__call__` returns (the mean over used sessions, +inf where not finite) and keeps
    every evaluated w's per-session losses; `rows(W)` returns per-session losses, computing only the missing
    ones. Other attributes are the wrapped objective's."""

    def __init__(self, objective, batch: int = 256):
        self.objective = objective
        self.used = np.asarray(objective.used, dtype=bool)
        self.batch = int(batch)
        self._index: dict[bytes, int] = {}
        self._w: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []  # float64 [S_used] each
        self.n_computed = 0

    def __getattr__(self, name):
        return getattr(self.__dict__["objective"], name)

    @staticmethod
    def _key(w: np.ndarray) -> bytes:
        return (np.asarray(w, dtype=np.float64) + 0.0).tobytes()

    def _compute(self, W: np.ndarray) -> None:
        """Per-session rows of the rows of W not yet stored, in batches."""
        todo, seen = [], set()
        for w in W:
            k = self._key(w)
            if k not in self._index and k not in seen:
                seen.add(k)
                todo.append(w)
        for i in range(0, len(todo), self.batch):
            part = np.array(todo[i : i + self.batch]).reshape(-1, 4)
            per = np.asarray(self.objective.per_session(part), dtype=np.float64)
            self.n_computed += len(part)
            for w, row in zip(part, per):
                self._index[self._key(w)] = len(self._w)
                self._w.append(np.asarray(w, dtype=np.float64).copy())
                self._rows.append(np.ascontiguousarray(row[self.used]))

    def rows(self, W) -> np.ndarray:
        """float64 [B, S_used]: per-session losses of W on the used sessions."""
        W = np.asarray(W, dtype=np.float64).reshape(-1, 4)
        self._compute(W)
        if len(W) == 0:
            return np.zeros((0, int(self.used.sum())))
        return np.stack([self._rows[self._index[self._key(w)]] for w in W])

    def __call__(self, W, session_weights=None) -> np.ndarray:
        if session_weights is not None:
            return self.objective(W, session_weights=session_weights)
        W = np.asarray(W, dtype=np.float64).reshape(-1, 4)
        per = self.rows(W)
        n_used = int(self.used.sum())
        # as Objective.__call__: row by row, so a 1-D sum's order does not depend on the batch
        loss = np.array([np.ascontiguousarray(row).sum() for row in per], dtype=np.float64).reshape(len(W))
        loss = loss / max(n_used, 1)
        loss[~np.isfinite(loss)] = np.inf
        if n_used == 0:
            loss[:] = np.inf
        return loss

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(W [C, 4], L [C, S_used]) of everything evaluated so far."""
        if not self._w:
            return np.zeros((0, 4)), np.zeros((0, int(self.used.sum())))
        return np.array(self._w), np.stack(self._rows)


# ------------------------------------------------------------------------------------------------ candidates
def candidate_weights(space, w_hat, resolution: int = 10, step: float | None = None, radius: int = 2) -> np.ndarray:
    """The space's lattice at `resolution` plus a local x-lattice w_hat + step * {-radius..radius}^3 (mapped
    through the space, so it folds back at the simplex's faces); default step = 1 / (4 * resolution). Unique rows."""
    parts = [space.grid(resolution)] if resolution else []
    w_hat = np.asarray(w_hat, dtype=np.float64)
    if np.isfinite(w_hat).all():
        step = 1.0 / (4 * resolution) if step is None else float(step)
        offsets = np.array(list(itertools.product(range(-radius, radius + 1), repeat=3)), dtype=np.float64) * step
        try:
            x = space.to_x(w_hat)
        except ValueError:
            x = None
        if x is not None:
            parts.append(space.to_w(x + offsets))
        parts.append(w_hat[None])
    W = np.vstack(parts) + 0.0
    _, keep = np.unique(np.round(W, 12), axis=0, return_index=True)
    return W[np.sort(keep)]


# ------------------------------------------------------------------------------------------------ replicates
def user_index(session_users) -> tuple[np.ndarray, int]:
    """Dense user index per session (0..n_users-1) and the number of users."""
    uniq, inv = np.unique(np.asarray(session_users), return_inverse=True)
    return inv.astype(np.int64), len(uniq)


def bootstrap_user_weights(n_users: int, n_rep: int, rng) -> np.ndarray:
    """[n_rep, n_users] multinomial counts: n users drawn with replacement."""
    return rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=n_rep).astype(np.float64)


def subsample_user_weights(n_users: int, m: int, n_rep: int, rng) -> np.ndarray:
    """[n_rep, n_users] 0/1: m users drawn without replacement."""
    out = np.zeros((n_rep, n_users))
    for r in range(n_rep):
        out[r, rng.choice(n_users, size=m, replace=False)] = 1.0
    return out


def replicate_argmins(W: np.ndarray, L: np.ndarray, session_weights: np.ndarray, tie_rtol: float = 1e-12,
                      chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """For each row of session_weights [R, S], the argmin over candidates W [C, 4] of the weighted mean of
    L [C, S]; returns (w [R, 4], loss [R]). Candidates with a non-finite loss on any session never win; tied
    minima (within tie_rtol) give the mean of the tied candidates."""
    W, L = np.asarray(W, dtype=np.float64), np.asarray(L, dtype=np.float64)
    SW = np.atleast_2d(np.asarray(session_weights, dtype=np.float64))
    ok = np.isfinite(L).all(1) & np.isfinite(W).all(1)
    if not ok.any():
        return np.full((len(SW), 4), np.nan), np.full(len(SW), np.inf)
    Wk, Lk = W[ok], L[ok]
    out_w = np.empty((len(SW), 4))
    out_l = np.empty(len(SW))
    for r0 in range(0, len(SW), chunk):
        sw = SW[r0 : r0 + chunk]
        means = (Lk @ sw.T) / np.maximum(sw.sum(1), 1e-300)[None, :]   # [C, r]
        best = means.min(0)
        tied = means <= best[None, :] + tie_rtol * np.maximum(np.abs(best), 1.0)[None, :]
        out_w[r0 : r0 + chunk] = (tied.T.astype(np.float64) @ Wk) / tied.sum(0)[:, None]
        out_l[r0 : r0 + chunk] = best
    return out_w, out_l


def weight_bounds(signs) -> tuple[np.ndarray, np.ndarray]:
    """Range each signed weight can take: [0, 1] for +, [-1, 0] for -, [-1, 1] without a sign pattern."""
    if signs is None:
        return np.full(4, -1.0), np.full(4, 1.0)
    s = np.asarray(signs, dtype=np.float64)
    return np.where(s < 0, -1.0, 0.0), np.where(s < 0, 0.0, 1.0)


# ------------------------------------------------------------------------------------------------ result
@dataclass
class Uncertainty:
    w_hat: np.ndarray
    level: float
    n_users: int
    n_sessions: int
    n_candidates: int
    # bootstrap (n out of n, users with replacement)
    n_boot: int
    boot_w: np.ndarray = field(repr=False)          # [R, 4] replicate argmins
    ci_low: np.ndarray = None
    ci_high: np.ndarray = None
    boot_std: np.ndarray = None
    # m out of n (users without replacement)
    m: int = 0
    rate: float = 1.0 / 3.0
    mn_w: np.ndarray = field(default=None, repr=False)  # [R_m, 4]
    mn_low: np.ndarray = None
    mn_high: np.ndarray = None
    mn_std: np.ndarray = None                       # std of the replicate estimates, rescaled by (m/n)^rate
    # the full sample on the candidate set: its argmin and how much lower its loss is than the estimate's (> 0:
    # a candidate beats the optimizer's estimate, so the intervals are centred elsewhere -- an optimizer failure)
    cand_best_w: np.ndarray = None
    cand_best_loss: float = float("nan")
    estimate_gap: float = float("nan")

    @property
    def tag(self) -> str:
        return f"ci{int(round(100 * self.level))}"

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: <tag>_low_w_*, <tag>_high_w_*, boot_std_w_*, mn_<tag>_low_w_*, mn_<tag>_high_w_*,
        mn_std_w_* and counts (tag = ci90 at level 0.9)."""
        m = {"boot_n": float(self.n_boot), "boot_n_users": float(self.n_users),
             "boot_n_candidates": float(self.n_candidates), "boot_m": float(self.m)}
        if math.isfinite(self.cand_best_loss):
            m["boot_cand_best_loss"] = float(self.cand_best_loss)
        if math.isfinite(self.estimate_gap):
            m["boot_estimate_gap"] = float(self.estimate_gap)
        if self.cand_best_w is not None:
            m.update({f"boot_cand_best_{k}": float(v) for k, v in zip(WEIGHT_KEYS, self.cand_best_w)})
        for i, k in enumerate(WEIGHT_KEYS):
            for name, arr in ((f"{self.tag}_low_", self.ci_low), (f"{self.tag}_high_", self.ci_high),
                              ("boot_std_", self.boot_std), (f"mn_{self.tag}_low_", self.mn_low),
                              (f"mn_{self.tag}_high_", self.mn_high), ("mn_std_", self.mn_std)):
                if arr is not None and math.isfinite(float(arr[i])):
                    m[name + k] = float(arr[i])
        return m

    def covers(self, w_star, which: str = "boot", tol: float = 1e-9) -> np.ndarray:
        """bool [4]: does the interval contain w_star's weight? which = 'boot' or 'mn'."""
        lo, hi = (self.ci_low, self.ci_high) if which == "boot" else (self.mn_low, self.mn_high)
        return covers(lo, hi, w_star, tol)

    def to_dict(self) -> dict:
        d = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}
        d["heads"] = list(WEIGHT_KEYS)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def covers(low, high, w_star, tol: float = 1e-9) -> np.ndarray:
    """bool [4]: low - tol <= w_star <= high + tol, per weight (False where the interval is missing)."""
    low, high, w = (np.asarray(a, dtype=np.float64) for a in (low, high, w_star))
    return (low - tol <= w) & (w <= high + tol)


def bootstrap(W, L, session_users, w_hat, n_boot: int = 200, level: float = 0.9, m: int | None = None,
              m_exponent: float = 0.7, n_sub: int | None = None, rate: float = 1.0 / 3.0, signs=None,
              seed: int = 0) -> Uncertainty:
    """Bootstrap over users (and m-out-of-n subsampling) of the candidate-set argmin; see the module doc.

    W [C, 4] candidates, L [C, S] their per-session losses, session_users [S] the user of each session,
    w_hat [4] the point estimate (the centre of the m-out-of-n interval). n_sub: m-out-of-n replicates
    (default n_boot; 0 skips it)."""
    W, L = np.asarray(W, dtype=np.float64), np.asarray(L, dtype=np.float64)
    w_hat = np.asarray(w_hat, dtype=np.float64).reshape(4)
    if L.ndim != 2 or L.shape[0] != len(W) or L.shape[1] != len(session_users):
        raise ValueError(f"L must be [C={len(W)}, S={len(session_users)}], got {L.shape}")
    groups, n_users = user_index(session_users)
    rng = np.random.default_rng(seed)
    lo_b, hi_b = weight_bounds(signs)
    a = (1.0 - level) / 2.0

    full_w, full_loss = replicate_argmins(W, L, np.ones((1, L.shape[1])))
    gap = float("nan")
    at = np.nonzero(np.all(np.abs(W - w_hat[None]) <= 1e-12, axis=1))[0]
    if len(at) and np.isfinite(L[at[0]]).all() and np.isfinite(full_loss[0]):
        gap = float(L[at[0]].mean() - full_loss[0])
    uw = bootstrap_user_weights(n_users, int(n_boot), rng) if n_boot else np.zeros((0, n_users))
    boot_w, _ = replicate_argmins(W, L, uw[:, groups])
    ci_low = ci_high = std = None
    if len(boot_w):
        ci_low = np.clip(np.nanquantile(boot_w, a, axis=0), lo_b, hi_b)
        ci_high = np.clip(np.nanquantile(boot_w, 1 - a, axis=0), lo_b, hi_b)
        std = np.nanstd(boot_w, axis=0, ddof=1) if len(boot_w) > 1 else np.zeros(4)

    n_sub = int(n_boot) if n_sub is None else int(n_sub)
    if m is None:
        m = int(math.ceil(n_users ** m_exponent))
    m = int(min(max(m, 1), n_users))
    mn_w = mn_low = mn_high = mn_std = None
    if n_sub and n_users > 1:
        sw = subsample_user_weights(n_users, m, n_sub, rng)
        mn_w, _ = replicate_argmins(W, L, sw[:, groups])
        scale = (m / n_users) ** rate
        dev = mn_w - w_hat[None, :]
        mn_low = np.clip(w_hat - scale * np.nanquantile(dev, 1 - a, axis=0), lo_b, hi_b)
        mn_high = np.clip(w_hat - scale * np.nanquantile(dev, a, axis=0), lo_b, hi_b)
        mn_std = scale * (np.nanstd(mn_w, axis=0, ddof=1) if n_sub > 1 else np.zeros(4))
    return Uncertainty(w_hat=w_hat, level=level, n_users=n_users, n_sessions=int(L.shape[1]),
                       n_candidates=int(len(W)), n_boot=int(len(boot_w)), boot_w=boot_w, ci_low=ci_low,
                       ci_high=ci_high, boot_std=std, m=m, rate=rate, mn_w=mn_w, mn_low=mn_low, mn_high=mn_high,
                       mn_std=mn_std, cand_best_w=full_w[0], cand_best_loss=float(full_loss[0]), estimate_gap=gap)


def bootstrap_objective(objective: RecordingObjective, space, w_hat, session_users, n_boot: int = 200,
                        resolution: int = 10, level: float = 0.9, m_exponent: float = 0.7,
                        rate: float = 1.0 / 3.0, seed: int = 0) -> Uncertainty:
    """Candidates = everything `objective` has evaluated + `candidate_weights(space, w_hat, resolution)`;
    per-session losses computed once (only the missing ones); then `bootstrap` over the used sessions.
    session_users [S] covers all sessions of the objective (unused ones are dropped here)."""
    objective.rows(candidate_weights(space, w_hat, resolution))
    W, L = objective.table()
    users = np.asarray(session_users)[objective.used]
    return bootstrap(W, L, users, w_hat, n_boot=n_boot, level=level, m_exponent=m_exponent, rate=rate,
                     signs=space.signs, seed=seed)
