"""Optimizers over a search space, all with one interface:

    optimize(objective, space, x0=None, log=None, **opts) -> Result

`objective(W [B, 4]) -> float64 [B]` (batched); `log(step, w, loss)` is called for EVERY evaluation, steps
0, 1, 2, ... in evaluation order; a non-finite loss is passed as +inf and never becomes the best point (the
tracking logger does not record it as a loss). The objective is piecewise constant in w (top-K sets change at
discrete w), so local methods start wide and restart.

- `nelder_mead`: scipy Nelder-Mead as in the notebook, with an explicit wide initial simplex, restarted from the
  best point with a fresh wide simplex until a restart brings no improvement.
- `grid`: the space's lattice at `resolution`, evaluated in big batches, then local refinement: shrinking x-lattices
  around the best point (or Nelder-Mead from it).
- `cmaes`: CMA-ES (`cmaes.CMA`, ask/tell), a generation per batched call, seeded.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.optimize import minimize

from estimation.search_space import Space

LogFn = Callable[[int, np.ndarray, float], None]


@dataclass
class Result:
    w: np.ndarray            # [4] best weights (signed, sum |w| = 1)
    loss: float              # best loss (+inf if nothing finite was found)
    n_evals: int
    history: "History"
    method: str = ""
    info: dict = field(default_factory=dict)


@dataclass
class History:
    w: np.ndarray            # [n, 4] every evaluated weight vector, in order (step = row)
    loss: np.ndarray         # [n] its loss (+inf where not finite)

    def best_so_far(self) -> np.ndarray:
        return np.minimum.accumulate(self.loss) if len(self.loss) else self.loss


class _Budget(Exception):
    pass


class _Evaluator:
    """Wraps the objective: batches, logging, best point, evaluation budget."""

    def __init__(self, objective, space: Space, log: LogFn | None, max_evals: int | None):
        self.objective, self.space, self.log, self.max_evals = objective, space, log, max_evals
        self.ws: list[np.ndarray] = []
        self.losses: list[float] = []
        self.best_loss, self.best_w, self.best_x = np.inf, None, None

    @property
    def n(self) -> int:
        return len(self.losses)

    def eval_x(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        return self.eval_w(self.space.to_w(X), X)

    def eval_w(self, W: np.ndarray, X: np.ndarray | None = None) -> np.ndarray:
        W = np.atleast_2d(np.asarray(W, dtype=np.float64))
        if self.max_evals is not None:
            room = self.max_evals - self.n
            if room <= 0:
                raise _Budget
            W = W[:room]
            X = None if X is None else X[:room]
        losses = np.asarray(self.objective(W), dtype=np.float64).reshape(len(W))
        losses = np.where(np.isfinite(losses), losses, np.inf)
        for i, (w, loss) in enumerate(zip(W, losses)):
            step = self.n
            self.ws.append(w.copy())
            self.losses.append(float(loss))
            if self.log is not None:
                self.log(step, w, float(loss))
            if loss < self.best_loss:
                self.best_loss, self.best_w = float(loss), w.copy()
                self.best_x = X[i].copy() if X is not None else None
        return losses

    def x_of_best(self, fallback) -> np.ndarray:
        if self.best_x is not None:
            return self.best_x
        return self.space.to_x(self.best_w) if self.best_w is not None else np.asarray(fallback, dtype=np.float64)

    def result(self, method: str, **info) -> Result:
        hist = History(np.array(self.ws).reshape(-1, 4), np.array(self.losses, dtype=np.float64))
        w = self.best_w if self.best_w is not None else np.full(4, np.nan)
        return Result(w, self.best_loss, self.n, hist, method, info)


def nelder_mead(objective, space: Space, x0=None, log: LogFn | None = None, *, scale: float = 0.25,
                maxiter: int = 500, xatol: float = 1e-3, fatol: float = 1e-4, max_restarts: int = 10,
                max_evals: int | None = None) -> Result:
    """Nelder-Mead from x0 with initial simplex x0 + scale * e_i; restarts from the best point while they help."""
    ev = _Evaluator(objective, space, log, max_evals)
    x = np.asarray(space.start() if x0 is None else x0, dtype=np.float64)
    f = lambda z: float(ev.eval_x(z[None])[0])
    runs = 0
    try:
        while True:
            before = ev.best_loss
            minimize(f, x, method="Nelder-Mead", options={
                "maxiter": maxiter, "xatol": xatol, "fatol": fatol, "initial_simplex": space.initial_simplex(x, scale)})
            runs += 1
            if runs > max_restarts or not ev.best_loss < before or ev.best_w is None:
                break
            x = ev.x_of_best(x)
    except _Budget:
        pass
    return ev.result("nelder-mead", runs=runs)


def grid(objective, space: Space, x0=None, log: LogFn | None = None, *, resolution: int = 20, batch: int = 256,
         refine: str = "grid", refine_rounds: int = 4, refine_points: int = 2, max_evals: int | None = None,
         **nm_opts) -> Result:
    """Lattice of the space at `resolution` in batches of `batch`; then refine around the best point:
    refine="grid": x-lattices {-m..m}^3 * r/m around the best x (m = refine_points), r = 1/resolution halving
    each round; refine="nm": Nelder-Mead from the best point with a simplex of one grid step; refine=None: none.
    With max_evals, the resolution is lowered until the lattice takes at most half the budget.
    x0 is ignored (the grid covers the space)."""
    ev = _Evaluator(objective, space, log, max_evals)
    G = space.grid(resolution)
    while max_evals is not None and len(G) > max_evals // 2 and resolution > 1:
        resolution -= 1  # a truncated lattice would be lopsided: coarsen it to half the budget instead
        G = space.grid(resolution)
    try:
        for i in range(0, len(G), batch):
            ev.eval_w(G[i : i + batch])
        if refine == "grid":
            m = int(refine_points)
            offsets = np.array(list(itertools.product(range(-m, m + 1), repeat=3)), dtype=np.float64) / m
            offsets = offsets[np.abs(offsets).sum(1) > 0]
            r = 1.0 / resolution
            for _ in range(refine_rounds):
                X = ev.x_of_best(space.start()) + r * offsets
                W = space.to_w(X)
                _, keep = np.unique(np.round(W, 12), axis=0, return_index=True)
                keep = np.sort(keep)
                for i in range(0, len(keep), batch):
                    ev.eval_w(W[keep[i : i + batch]], X[keep[i : i + batch]])
                r /= 2
        elif refine == "nm":
            nelder_mead(lambda W: ev.eval_w(W), space, ev.x_of_best(space.start()), None,
                        scale=nm_opts.pop("scale", 1.0 / resolution), **nm_opts)
        elif refine is not None:
            raise ValueError(f"refine must be 'grid', 'nm' or None, got {refine!r}")
    except _Budget:
        pass
    return ev.result("grid", resolution=resolution, n_grid=len(G), refine=refine)


def cmaes(objective, space: Space, x0=None, log: LogFn | None = None, *, sigma0: float = 0.25,
          popsize: int | None = None, seed: int = 0, max_evals: int = 3000,
          max_generations: int | None = None) -> Result:
    """CMA-ES in x-space from x0 (default: the space's start) with step size sigma0; each generation is one
    batched objective call. Non-finite losses are told to CMA as worse than every finite one."""
    from cmaes import CMA

    ev = _Evaluator(objective, space, log, max_evals)
    x = np.asarray(space.start() if x0 is None else x0, dtype=np.float64)
    opt = CMA(mean=x, sigma=sigma0, seed=seed, population_size=popsize)
    gens = 0
    try:
        while not opt.should_stop() and (max_generations is None or gens < max_generations):
            X = np.array([opt.ask() for _ in range(opt.population_size)])
            if ev.n + len(X) > max_evals:
                break
            L = ev.eval_x(X)
            finite = np.isfinite(L)
            worst = L[finite].max() if finite.any() else 0.0
            L = np.where(finite, L, worst + 1.0 + abs(worst))
            opt.tell(list(zip(X, L.tolist())))
            gens += 1
    except _Budget:
        pass
    return ev.result("cmaes", generations=gens, seed=seed, popsize=opt.population_size)


OPTIMIZERS: dict[str, Callable[..., Result]] = {"nelder-mead": nelder_mead, "grid": grid, "cmaes": cmaes}


def optimize(method: str, objective, space: Space, x0=None, log: LogFn | None = None, **opts) -> Result:
    """Dispatch by name: 'nelder-mead', 'grid' or 'cmaes'."""
    try:
        fn = OPTIMIZERS[method]
    except KeyError:
        raise ValueError(f"unknown optimizer {method!r}; choose from {sorted(OPTIMIZERS)}") from None
    return fn(objective, space, x0, log, **opts)
