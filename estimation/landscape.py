"""Landscapes of an objective around an estimate, as figures for a child run.

- Heat maps over 2-D slices of the simplex (`search_space.simplex_slice`): two magnitudes |w_i|, |w_j| vary on a
  grid, the other two share the rest in their proportion at the slice point. Slices go through the estimate and,
  on planted worlds, through w*; both points are marked on every map.
- Profiles: for each head h, the objective along the line |w_h| = t (t in [0, 1]) with the other three
  magnitudes in their proportion at the point. A flat profile is a weight the objective cannot identify: moving
  it does not change any top-K set enough to change the loss.

Signs: a slice or profile keeps the sign pattern of its point (zeros take the constrained space's sign).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from datamodules.schema import HEADS
from estimation import plots

CONSTRAINED_SIGNS = (1, 1, 1, -1)
DEFAULT_AXES = ((0, 1), (2, 3))


def outside_constrained(w) -> list[tuple[str, float]]:
    """(head, weight) of every weight whose sign the constrained space (+, +, +, -) cannot take."""
    return [(h, float(x)) for h, x, s in zip(HEADS, w, CONSTRAINED_SIGNS) if x * s < 0]


def signs_of(w) -> tuple[int, ...]:
    """Sign pattern of w; a zero weight takes the constrained space's sign."""
    w = np.asarray(w, dtype=np.float64).reshape(4)
    return tuple(int(np.sign(v)) if v != 0 else s for v, s in zip(w, CONSTRAINED_SIGNS))


def parse_axes(text: str) -> tuple[tuple[int, int], ...]:
    """'0-1,2-3' or 'complete-long,rewatch-neg' -> ((0, 1), (2, 3)); '' -> () (profiles only). A bad pair raises
    a ValueError that says which part is wrong and what is allowed."""
    allowed = f"use two different heads of {','.join(HEADS)} (or 0..3) joined by '-', e.g. complete-long"
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        names = [s.strip() for s in part.split("-")]
        if len(names) != 2 or not all(names):
            raise ValueError(f"bad axis pair {part!r}: {allowed}")
        idx = []
        for name in names:
            if name.isdigit() and int(name) < 4:
                idx.append(int(name))
            elif name in HEADS:
                idx.append(HEADS.index(name))
            else:
                raise ValueError(f"bad axis {name!r} in {part!r}: {allowed}")
        if idx[0] == idx[1]:
            raise ValueError(f"bad axis pair {part!r}: the two heads must differ; {allowed}")
        out.append((idx[0], idx[1]))
    return tuple(out)


def profiles(objective, w0, resolution: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """t [n] in [0, 1] and Z [4, n]: the objective along |w_h| = t, other magnitudes in proportion to w0."""
    w0 = np.asarray(w0, dtype=np.float64).reshape(4)
    a0 = np.abs(w0) / np.abs(w0).sum()
    s = np.asarray(signs_of(w0), dtype=np.float64)
    t = np.linspace(0.0, 1.0, int(resolution))
    W = np.zeros((4, len(t), 4))
    for h in range(4):
        rest = [c for c in range(4) if c != h]
        share = a0[rest] / a0[rest].sum() if a0[rest].sum() > 0 else np.full(3, 1.0 / 3.0)
        W[h, :, h] = t
        W[h][:, rest] = (1.0 - t)[:, None] * share[None, :]
    W = W * s + 0.0
    Z = np.asarray(objective(W.reshape(-1, 4)), dtype=np.float64).reshape(4, len(t))
    Z[~np.isfinite(Z)] = np.nan
    return t, Z


def profile_figure(t, Z, w0, marks: dict | None = None, path=None, title: str = "") -> Figure:
    """One panel per head: the profile, with w0's and the marks' |w_h| as vertical lines."""
    fig = Figure(figsize=(13, 3.2))
    axes = fig.subplots(1, 4)
    pts = {"slice point": w0, **(marks or {})}
    colors = {"slice point": "red"}
    for h, ax in enumerate(axes):
        ax.plot(t, Z[h], "-", lw=1.5)
        for k, (label, w) in enumerate(pts.items()):
            if w is None:
                continue
            a = np.abs(np.asarray(w, dtype=np.float64))
            ax.axvline(a[h] / a.sum(), ls="--" if k else "-", lw=1, color=colors.get(label, f"C{k + 1}"),
                       label=label)
        ax.set_xlabel(f"|w_{HEADS[h]}|")
        if h == 0:
            ax.set_ylabel("loss")
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return plots._finish(fig, path)


def landscape_figures(objective, points: dict, axes=DEFAULT_AXES, resolution: int = 15, out_dir=None,
                      title: str = "", profile: bool = True, profile_resolution: int = 21) -> list[Path]:
    """Heat maps through each of `points` {name: w} (None values skipped) over each slice `axes`, every point
    marked on every map; plus a profile figure per point. Returns the PNG paths (written into out_dir)."""
    out_dir = Path(out_dir)
    pts = {k: np.asarray(v, dtype=np.float64) for k, v in points.items() if v is not None
           and np.isfinite(np.asarray(v, dtype=np.float64)).all()}
    paths = []
    for name, w0 in pts.items():
        others = {k: v for k, v in pts.items() if k != name}
        for ij in axes:
            u, v, Z = plots.landscape_values(objective, w0, ij, resolution, signs=signs_of(w0))
            p = out_dir / f"landscape_{name}_{HEADS[ij[0]]}-{HEADS[ij[1]]}.png"
            plots.landscape(u, v, Z, w0=w0, axes=ij, path=p, marks=others,
                            title=f"{title} through {name}".strip())
            paths.append(p)
        if profile:
            t, Z = profiles(objective, w0, profile_resolution)
            p = out_dir / f"profile_{name}.png"
            profile_figure(t, Z, w0, marks=others, path=p, title=f"{title}: profiles through {name}".strip())
            paths.append(p)
    return paths


def log_landscapes(client, run_id: str, objective, w_hat, w_star=None, axes=DEFAULT_AXES, resolution: int = 15,
                   title: str = "", artifact_path: str = "figures/landscape") -> list[str]:
    """Heat maps and profiles through the estimate (and w* when given), logged to the run under
    `artifact_path`; returns the artifact paths."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = landscape_figures(objective, {"estimate": w_hat, "w_star": w_star}, axes, resolution, tmp, title)
        for p in paths:
            client.log_artifact(run_id, str(p), artifact_path)
    return [f"{artifact_path}/{p.name}" for p in paths]
