"""Figures for estimation runs (matplotlib's object API with the Agg canvas: no pyplot state, no display).

- `loss_curve`: one child run's loss per evaluation and best-so-far.
- `runs_overlay`: several runs side by side, plus their best-so-far curves overlaid.
- `landscape`: heat map of an objective over a 2-D slice of the simplex through a point (`simplex_slice`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from datamodules.schema import HEADS
from estimation.search_space import simplex_slice


def _finish(fig: Figure, path) -> Figure:
    FigureCanvasAgg(fig)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _draw_curve(ax, loss, label=None, best_only=False):
    loss = np.asarray(loss, dtype=np.float64)
    steps = np.arange(len(loss))
    fin = np.isfinite(loss)
    if not best_only:
        ax.plot(steps[fin], loss[fin], ".", ms=2, alpha=0.4, label=None if label else "loss")
    best = np.minimum.accumulate(np.where(fin, loss, np.inf)) if len(loss) else loss
    ok = np.isfinite(best)
    ax.plot(steps[ok], best[ok], "-", lw=1.5, label=label or "best so far")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("loss")


def loss_curve(loss, title: str = "", path=None) -> Figure:
    """Loss per evaluation (dots; non-finite ones skipped) and best so far (line)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    _draw_curve(ax, loss)
    ax.set_title(title)
    ax.legend()
    return _finish(fig, path)


def runs_overlay(runs: dict[str, np.ndarray], path=None, title: str = "") -> Figure:
    """One panel per run (loss and best so far) and a last panel with all best-so-far curves overlaid."""
    n = len(runs)
    fig = Figure(figsize=(4 * (n + 1), 3.5))
    axes = fig.subplots(1, n + 1, squeeze=False)[0]
    for ax, (name, loss) in zip(axes, runs.items()):
        _draw_curve(ax, loss)
        ax.set_title(name, fontsize=9)
    for name, loss in runs.items():
        _draw_curve(axes[-1], loss, label=name, best_only=True)
    axes[-1].set_title("best so far")
    axes[-1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def landscape_values(objective, w0, axes=(0, 1), resolution: int = 41, batch: int = 256, signs=(1, 1, 1, -1)):
    """Objective over `simplex_slice(w0, axes, resolution, signs)`: (u, v, Z [n, n]) with NaN outside the
    simplex and where the loss is not finite. Evaluated in batches."""
    u, v, W = simplex_slice(w0, axes, resolution, signs=signs)
    flat = W.reshape(-1, 4)
    inside = np.isfinite(flat).all(1)
    Z = np.full(len(flat), np.nan)
    idx = np.nonzero(inside)[0]
    for s in range(0, len(idx), batch):
        part = idx[s : s + batch]
        Z[part] = objective(flat[part])
    Z[~np.isfinite(Z)] = np.nan
    return u, v, Z.reshape(W.shape[:2])


def landscape(u, v, Z, w0=None, axes=(0, 1), path=None, title: str = "", marks: dict | None = None) -> Figure:
    """Heat map of Z over the slice; w0 and any `marks` {label: w} drawn at their (|w_i|, |w_j|)."""
    i, j = axes
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    m = ax.pcolormesh(u, v, np.ma.masked_invalid(Z), shading="nearest", cmap="viridis")
    fig.colorbar(m, ax=ax, label="loss")
    pts = dict(marks or {})
    if w0 is not None:
        pts = {"slice point": w0, **pts}
    for label, w in pts.items():
        a = np.abs(np.asarray(w, dtype=np.float64))
        a = a / a.sum()
        ax.plot(a[i], a[j], "o", mfc="none", mec="red" if label == "slice point" else "white", ms=9, label=label)
    if pts:
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlabel(f"|w_{HEADS[i]}|")
    ax.set_ylabel(f"|w_{HEADS[j]}|")
    ax.set_title(title)
    return _finish(fig, path)
