"""Recovery study: plant w* in N worlds, run the whole estimation on each, and measure how well it comes back.

Worlds differ in seed and in w* (`world_specs`): the default w*, random ones, some near an edge of the simplex
(one |w_h| = 0.02), some near a vertex, and some with w_neg = 0. Each world is generated once under
`<out>/worlds/<name>/` and estimated by `runner.prepare_inputs` + `runner.estimate` (MLflow store in `<out>/mlruns`),
with the heads of `heads`: `oracle` (the world's true head probabilities: the estimator's own error),
`gnn` (a GNN trained per world: the error of the whole pipeline) or both.

Outputs under `<out>`:
- `results.jsonl`: one line per (world, heads, objective, optimizer), appended as worlds finish; a rerun resumes
  (worlds already there are skipped).
- `recovery_table.md` / `.csv`: per (heads, objective, optimizer): median / mean / worst L1 recovery error, how
  often the 90% bootstrap (and m-out-of-n) intervals cover w* (per weight, and all four at once), median interval
  width; `identification.csv`: per (heads, objective) and weight, the median absolute error and the median 90%
  interval width: a weight whose interval spans most of its range is one the objective cannot identify;
  `global_vs_nm.csv`: per world and objective, the best loss of each optimizer and grid/CMA-ES minus Nelder-Mead.
- `geometry.jsonl`: per world, the within-session covariance of the heads over the candidates and its weakest
  directions (`head_geometry`): along them scores hardly change, which is why a weight can go unidentified.
- `recovery.png`: L1 error per pair (one dot per world) and interval coverage per pair;
  `figures/profiles_<world>_<heads>.png`: every objective's profile through w* along each weight (a flat profile is
  why a weight is not identified).
- A run in the MLflow experiment `recovery-study` holding the tables and figures.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from datamodules.schema import HEADS, WEIGHT_KEYS, WORLD_SIZES
from estimation.cli import choice, folder_problem
from estimation.runner import OBJECTIVES, OPTIMIZERS, UsageError

log = logging.getLogger("recovery_study")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
KINDS = ("default", "random", "edge", "w4_zero", "vertex", "random", "edge", "w4_zero", "random", "edge")
SIGNS = np.array([1.0, 1.0, 1.0, -1.0])


@dataclass
class StudyConfig:
    n_worlds: int = 10                     # number of planted worlds
    size: str = field(default="small", metadata=choice(*WORLD_SIZES))  # world size
    seed0: int = 100                       # world i has seed seed0 + i
    heads: str = field(default="oracle", metadata=choice("oracle", "gnn", "both"))  # head source(s)
    objectives: str = field(default="cat_ce,cat_ce_smooth,cat_ce_l2,cat_ce_l3,emb_l2",
                            metadata=choice(*OBJECTIVES, many=True))
    optimizers: str = field(default="nelder-mead,grid,cmaes", metadata=choice(*OPTIMIZERS, many=True))
    max_evals: int = 300                   # per (objective, optimizer); the grid gets its lattice + refinement
    grid_resolution: int = 12              # grid optimizer lattice (455 points at 12)
    bootstrap: int = 200                   # bootstrap replicates per pair (0: no intervals)
    bootstrap_resolution: int = 10         # lattice resolution of the bootstrap's global candidate set
    m_exponent: float = 0.7                # m-out-of-n check: m = ceil(n_users ** m_exponent) users per subsample
    landscape_worlds: int = 1              # the first this many worlds get landscape figures in MLflow
    profiles: bool = True                  # profile figure (all objectives through w*) for those worlds
    epochs: int = 12                       # GNN epochs per world (heads gnn; at most, early stopping)
    geometry: bool = True                  # head-geometry diagnostic per world (added to worlds done before too)
    report_only: bool = False              # estimate nothing: write the tables and figure from results.jsonl
    out: str = str(PROJECT_ROOT / "data" / "recovery" / "study")  # study folder: worlds, results, tables, mlruns
    seed: int = 0                          # optimizer / bootstrap seed
    force: bool = False                    # <out> holds a study of other options: move its results aside, start anew

    def modes(self) -> list[str]:
        if self.heads == "both":
            return ["oracle", "gnn"]
        if self.heads not in ("oracle", "gnn"):
            raise ValueError(f"heads must be oracle, gnn or both, got {self.heads!r}")
        return [self.heads]


# ------------------------------------------------------------------------------------------------ worlds
def world_specs(n: int, seed0: int = 100) -> list[dict]:
    """N worlds: name, seed, kind and w* (signs +, +, +, -; sum |w| = 1), cycling through KINDS."""
    from datamodules.world import DEFAULT_W_STAR

    specs = []
    for i in range(n):
        seed = seed0 + i
        kind = KINDS[i % len(KINDS)]
        rng = np.random.default_rng(seed)
        if kind == "default":
            a = np.abs(np.asarray(DEFAULT_W_STAR, dtype=np.float64))
        elif kind == "random":
            a = rng.dirichlet(np.full(4, 2.0))
        elif kind == "edge":  # one weight nearly zero
            a = rng.dirichlet(np.full(4, 2.0))
            a[rng.integers(4)] = 0.0
            a = 0.98 * a / a.sum()
            a[a == 0] = 0.02
        elif kind == "w4_zero":
            a = np.append(rng.dirichlet(np.full(3, 2.0)), 0.0)
        elif kind == "vertex":  # one weight dominates
            j = rng.integers(3)
            a = np.zeros(4)
            a[j] = 0.8
            a[[c for c in range(4) if c != j]] = 0.2 * rng.dirichlet(np.full(3, 2.0))
        a = np.round(a / a.sum(), 4)
        a[np.argmax(a)] += 1.0 - a.sum()
        specs.append({"name": f"w{i:02d}-{kind}-seed{seed}", "seed": seed, "kind": kind,
                      "w_star": (a * SIGNS + 0.0).tolist()})
    return specs


def ensure_study_world(out: Path, spec: dict, size: str) -> Path:
    """Generate the world once (atomically) and return its data folder; a world of another size or w* there (an
    earlier study of another config) is regenerated."""
    from datamodules.world import DATA_SUBDIR, load_truth, make_world, world_complete

    root = Path(out) / "worlds" / spec["name"]
    truth = load_truth(root) if world_complete(root) else None
    if truth is None or truth.get("size") != size or truth.get("seed") != spec["seed"] or \
            not np.allclose(truth.get("w_star"), spec["w_star"], atol=1e-9):
        make_world(root, size=size, seed=spec["seed"], w_star=spec["w_star"], replace_foreign=True)
    return root / DATA_SUBDIR


# ------------------------------------------------------------------------------------------------ one world
def estimation_config(cfg: StudyConfig, data_dir: Path, mode: str, landscape: bool, run_name: str):
    from estimation.runner import EstimationConfig

    return EstimationConfig(
        data_dir=str(data_dir), objectives=cfg.objectives, optimizers=cfg.optimizers, heads=mode,
        max_evals=cfg.max_evals, grid_resolution=cfg.grid_resolution, bootstrap=cfg.bootstrap,
        bootstrap_resolution=cfg.bootstrap_resolution, m_exponent=cfg.m_exponent, landscape=landscape,
        epochs=cfg.epochs, seed=cfg.seed, root=str(Path(cfg.out)), run_name=run_name)


def run_world(cfg: StudyConfig, spec: dict, mode: str, index: int, client, uri: str) -> list[dict]:
    """Estimate every (objective, optimizer) on one world with one head source (one parent run, a child per
    pair); one row per pair."""
    from estimation import runner

    t0 = time.time()
    data_dir = ensure_study_world(Path(cfg.out), spec, cfg.size)
    t_world = time.time() - t0
    landscape = index < cfg.landscape_worlds
    config = estimation_config(cfg, data_dir, mode, landscape, f"{spec['name']}/{mode}")
    inputs = runner.prepare_inputs(config, client, uri)
    summary = runner.estimate(config, inputs, client, uri, tags={"study": Path(cfg.out).name,
                                                                 "world": spec["name"], "kind": spec["kind"]})
    results = summary["results"]
    try:
        if cfg.geometry:
            geom = head_geometry(next(iter(inputs.objectives.values())).ranker)
            with open(Path(cfg.out) / "geometry.jsonl", "a") as f:
                f.write(json.dumps({"world": spec["name"], "heads": mode, **geom}) + "\n")
    except Exception as e:  # a diagnostic: never lose a world's results over it
        log.warning("head geometry of %s/%s failed: %s", spec["name"], mode, e)
    if landscape and cfg.profiles:
        fig_dir = Path(cfg.out) / "figures"
        profile_grid(inputs.objectives, np.asarray(spec["w_star"]),
                     {f"{r.objective}/{r.optimizer}": r.w for r in results if r.optimizer == "grid"},
                     path=fig_dir / f"profiles_{spec['name']}_{mode}.png",
                     title=f"{spec['name']} ({mode} heads): profiles through w*")
    w_star = np.asarray(spec["w_star"], dtype=np.float64)
    rows = []
    for r in results:
        row = {"world": spec["name"], "kind": spec["kind"], "seed": spec["seed"], "heads": mode,
               "objective": r.objective, "optimizer": r.optimizer, "loss": r.loss, "n_evals": r.n_evals,
               "seconds": r.seconds, "l1_error": r.l1_error, "run_id": r.run_id,
               "n_sessions": int(len(inputs.session_keys)), "world_s": t_world,
               "w_star": w_star.tolist(), "w_hat": np.asarray(r.w).tolist()}
        u = r.uncertainty
        if u is not None:
            for name, lo, hi in (("boot", u.ci_low, u.ci_high), ("mn", u.mn_low, u.mn_high)):
                if lo is None:
                    continue
                cov = u.covers(w_star, name)
                row[f"{name}_low"], row[f"{name}_high"] = np.asarray(lo).tolist(), np.asarray(hi).tolist()
                row[f"{name}_covers"] = cov.astype(int).tolist()
            row["boot_std"] = np.asarray(u.boot_std).tolist() if u.boot_std is not None else None
            row["estimate_gap"] = None if not math.isfinite(u.estimate_gap) else float(u.estimate_gap)
        rows.append(row)
    return rows


def profile_grid(objectives: dict, w0, marks: dict | None = None, path=None, title: str = "",
                 resolution: int = 21):
    """Rows = objectives, columns = weights: each objective's profile through w0 (min-shifted loss), with w0
    (red) and the marks {"<objective>/<optimizer>": w} of that objective (dashed)."""
    from matplotlib.figure import Figure

    from estimation import plots
    from estimation.landscape import profiles

    names = list(objectives)
    fig = Figure(figsize=(13, 2.4 * len(names) + 0.6))
    axes = fig.subplots(len(names), 4, squeeze=False)
    a0 = np.abs(np.asarray(w0, dtype=np.float64))
    for i, name in enumerate(names):
        t, Z = profiles(objectives[name], w0, resolution)
        for h in range(4):
            ax = axes[i, h]
            ax.plot(t, Z[h] - np.nanmin(Z[h]), "-", lw=1.4)
            ax.axvline(a0[h] / a0.sum(), color="red", lw=1, label="w*")
            for label, w in (marks or {}).items():
                if label.split("/")[0] == name and np.isfinite(w).all():
                    a = np.abs(np.asarray(w))
                    ax.axvline(a[h] / a.sum(), color="C2", ls="--", lw=1, label="estimate")
            if i == len(names) - 1:
                ax.set_xlabel(f"|w_{HEADS[h]}|")
            if h == 0:
                ax.set_ylabel(f"{name}\nloss - min", fontsize=8)
            if i == 0 and h == 0:
                ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return plots._finish(fig, path)


def head_geometry(ranker, n_sessions: int = 400, seed: int = 0) -> dict:
    """Why a weight can be unidentified: the within-session covariance of the four head probabilities over each
    session's candidates (the exact skyband when the ranker was pruned, else the whole catalog), pooled over a
    sample of sessions. A ranking under w depends on p @ w up to a per-session shift, so a direction d with
    small d' cov d barely moves any score: w and w + t d rank alike and no objective can tell them apart.
    Returns cov, corr, eigvals (ascending, relative to the largest) and eigvecs (rows, unit length)."""
    probs = ranker.probs
    S, V = probs.shape[0], probs.shape[1]
    cand = getattr(ranker, "candidates", None)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(S, size=min(S, n_sessions), replace=False))
    acc, n = np.zeros((4, 4)), 0
    for s in sample:
        ids = cand[1][cand[0][s]:cand[0][s + 1]] if cand is not None else np.arange(V)
        if len(ids) < 2:
            continue
        P = np.asarray(probs[s][ids], dtype=np.float64)
        P = P - P.mean(0)
        acc += P.T @ P
        n += len(P)
    cov = acc / max(n, 1)
    sd = np.sqrt(np.maximum(np.diag(cov), 1e-300))
    vals, vecs = np.linalg.eigh(cov)
    return {"cov": cov.tolist(), "corr": (cov / np.outer(sd, sd)).tolist(),
            "eigvals": (vals / max(vals.max(), 1e-300)).tolist(), "eigvecs": vecs.T.tolist(),
            "candidates": "skyband" if cand is not None else "catalog", "n_pairs": int(n)}


def geometry_section(geoms: list[dict]) -> str:
    """Markdown: mean head correlation per heads mode and, per world, the weakest direction of the heads."""
    if not geoms:
        return ""
    lines = ["## Head geometry (why a weight can be unidentified)", "",
             "Within-session correlation of the heads over the candidates (mean over worlds), and per world the "
             "direction d of weight space along which scores p @ d vary least (relative variance = smallest / "
             "largest eigenvalue of the heads' covariance): moving w along d hardly changes any ranking.", ""]
    for mode in sorted({g["heads"] for g in geoms}):
        gs = [g for g in geoms if g["heads"] == mode]
        corr = np.mean([g["corr"] for g in gs], axis=0)
        lines += [f"{mode} heads, mean correlation:", "", "| | " + " | ".join(HEADS) + " |",
                  "|---|" + "---|" * 4]
        lines += [f"| {HEADS[i]} | " + " | ".join(f"{corr[i, j]:.2f}" for j in range(4)) + " |" for i in range(4)]
        lines += ["", "| world | weakest direction d (complete, long, rewatch, neg) | relative variance | 2nd |",
                  "|---|---|---|---|"]
        for g in gs:
            d = np.asarray(g["eigvecs"][0])
            d = d * np.sign(d[np.argmax(np.abs(d))])
            lines.append(f"| {g['world']} | ({', '.join(f'{v:+.2f}' for v in d)}) | {g['eigvals'][0]:.2e} | "
                         f"{g['eigvals'][1]:.2e} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ tables
def load_rows(out) -> list[dict]:
    p = Path(out) / "results.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def load_geometry(out, worlds=None, modes=None) -> list[dict]:
    p = Path(out) / "geometry.jsonl"
    if not p.exists():
        return []
    gs = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    last = {(g["world"], g["heads"]): g for g in gs}  # the newest per (world, heads)
    return [g for (w, m), g in last.items() if (worlds is None or w in worlds) and (modes is None or m in modes)]


def ensure_geometry(cfg: StudyConfig, specs: list[dict], modes: list[str], client, uri: str) -> None:
    """Head geometry for (world, heads) pairs estimated before it existed: prepares the inputs again (the GNN
    run and head cache are reused), estimates nothing."""
    from estimation import runner

    have = {(g["world"], g["heads"]) for g in load_geometry(cfg.out)}
    done = {(r["world"], r["heads"]) for r in load_rows(cfg.out)}
    for spec in specs:
        for mode in modes:
            key = (spec["name"], mode)
            if key in have or key not in done:
                continue
            data_dir = ensure_study_world(Path(cfg.out), spec, cfg.size)
            config = estimation_config(cfg, data_dir, mode, False, f"{spec['name']}/{mode}")
            inputs = runner.prepare_inputs(config, client, uri)
            geom = head_geometry(next(iter(inputs.objectives.values())).ranker)
            with open(Path(cfg.out) / "geometry.jsonl", "a") as f:
                f.write(json.dumps({"world": spec["name"], "heads": mode, **geom}) + "\n")


def summary_table(rows: list[dict]) -> pd.DataFrame:
    """Per (heads, objective, optimizer): worlds, median/mean/worst L1, coverage of the 90% intervals."""
    df = pd.DataFrame(rows)
    out = []
    for (heads, obj, opt), g in df.groupby(["heads", "objective", "optimizer"], sort=False):
        rec = {"heads": heads, "objective": obj, "optimizer": opt, "worlds": len(g),
               "median_l1": float(np.nanmedian(g["l1_error"].astype(float))),
               "mean_l1": float(np.nanmean(g["l1_error"].astype(float))),
               "worst_l1": float(np.nanmax(g["l1_error"].astype(float)))}
        for name in ("boot", "mn"):
            col = f"{name}_covers"
            if col in g and g[col].notna().any():
                cov = np.array([c for c in g[col] if isinstance(c, list)], dtype=float)
                rec[f"{name}_cover_weight"] = float(cov.mean())        # over worlds x 4 weights
                rec[f"{name}_cover_all4"] = float(cov.all(1).mean())   # all four at once
                lo = np.array([c for c in g[f"{name}_low"] if isinstance(c, list)], dtype=float)
                hi = np.array([c for c in g[f"{name}_high"] if isinstance(c, list)], dtype=float)
                rec[f"{name}_width"] = float(np.median((hi - lo).mean(1)))
        if "estimate_gap" in g and g["estimate_gap"].notna().any():
            gap = g["estimate_gap"].dropna().astype(float)
            rec["beaten_by_candidate"] = float((gap > 1e-12).mean())  # share of worlds: not the candidate min
        rec["median_seconds"] = float(np.median(g["seconds"]))
        out.append(rec)
    return pd.DataFrame(out)


def identification_table(rows: list[dict]) -> pd.DataFrame:
    """Per (heads, objective) and weight: median |w_hat - w*| and median 90% bootstrap interval width (over worlds
    and optimizers). A weight with a wide interval and large error is not identified by that objective."""
    out = []
    df = pd.DataFrame(rows)
    for (heads, obj), g in df.groupby(["heads", "objective"], sort=False):
        err = np.abs(np.array(g["w_hat"].tolist()) - np.array(g["w_star"].tolist()))
        rec = {"heads": heads, "objective": obj}
        for i, k in enumerate(WEIGHT_KEYS):
            rec[f"err_{k}"] = float(np.nanmedian(err[:, i]))
        if "boot_low" in g and g["boot_low"].notna().any():
            ok = g["boot_low"].apply(lambda v: isinstance(v, list))
            width = np.array(g["boot_high"][ok].tolist()) - np.array(g["boot_low"][ok].tolist())
            for i, k in enumerate(WEIGHT_KEYS):
                rec[f"ci_width_{k}"] = float(np.median(width[:, i]))
        out.append(rec)
    return pd.DataFrame(out)


def global_vs_nm(rows: list[dict]) -> pd.DataFrame:
    """Per world, heads and objective: each optimizer's best loss, and grid / CMA-ES minus Nelder-Mead (< 0: the
    global search found a lower loss)."""
    df = pd.DataFrame(rows)
    piv = df.pivot_table(index=["world", "heads", "objective"], columns="optimizer", values="loss",
                         aggfunc="first", sort=False)
    piv.columns = [f"loss_{c}" for c in piv.columns]
    piv = piv.reset_index()
    if "loss_nelder-mead" in piv:
        for g in ("grid", "cmaes"):
            if f"loss_{g}" in piv:
                piv[f"{g}_minus_nm"] = piv[f"loss_{g}"] - piv["loss_nelder-mead"]
    return piv


def gvn_summary(gvn: pd.DataFrame) -> str:
    """One line per (heads, objective): in how many worlds grid / CMA-ES reached a loss at most Nelder-Mead's."""
    lines = []
    for (heads, obj), g in gvn.groupby(["heads", "objective"], sort=False):
        parts = []
        for opt in ("grid", "cmaes"):
            col = f"{opt}_minus_nm"
            if col in g:
                d = g[col].dropna()
                parts.append(f"{opt} <= NM in {int((d <= 0).sum())}/{len(d)} worlds (median diff {d.median():+.4f})")
        if parts:
            lines.append(f"- {heads} / {obj}: " + "; ".join(parts))
    return "\n".join(lines)


def _fmt(v, nd=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown_table(df: pd.DataFrame, nd: int = 3) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c], nd) for c in cols) + " |")
    return "\n".join(lines)


def recovery_figure(rows: list[dict], path=None, target: float = 0.05):
    """Left: L1 recovery error per (heads, objective, optimizer), a dot per world, median bar, target line.
    Right: share of weights covered by the 90% bootstrap / m-out-of-n intervals per pair."""
    from matplotlib.figure import Figure

    from estimation import plots

    df = pd.DataFrame(rows)
    table = summary_table(rows)
    labels = [f"{h}:{o}/{p}" if df["heads"].nunique() > 1 else f"{o}/{p}"
              for h, o, p in zip(table["heads"], table["objective"], table["optimizer"])]
    fig = Figure(figsize=(max(8, 0.9 * len(labels) + 4), 8))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    rng = np.random.default_rng(0)
    for i, (_, t) in enumerate(table.iterrows()):
        g = df[(df.heads == t.heads) & (df.objective == t.objective) & (df.optimizer == t.optimizer)]
        y = g["l1_error"].astype(float).to_numpy()
        ax1.plot(i + rng.uniform(-0.15, 0.15, len(y)), y, "o", ms=4, alpha=0.6, color=f"C{i % 10}")
        ax1.plot([i - 0.3, i + 0.3], [np.nanmedian(y)] * 2, "k-", lw=2)
    ax1.axhline(target, color="red", ls="--", lw=1, label=f"target median {target}")
    ax1.set_yscale("log")
    ax1.set_ylabel("L1 recovery error |w_hat - w*|_1")
    ax1.legend(fontsize=8)
    ax1.set_title("recovery error per objective / optimizer (dot = world, bar = median)")
    x = np.arange(len(table))
    for j, (name, label) in enumerate((("boot", "bootstrap 90%"), ("mn", "m-out-of-n 90%"))):
        col = f"{name}_cover_weight"
        if col in table:
            ax2.bar(x + (j - 0.5) * 0.35, table[col].fillna(0), width=0.35, label=label)
    ax2.axhline(0.9, color="k", ls=":", lw=1)
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("coverage of w* (per weight)")
    if ax2.get_legend_handles_labels()[0]:  # no bootstrap: no bars, no legend (and no matplotlib warning)
        ax2.legend(fontsize=8)
    ax2.set_xticks(x)
    ax2.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    return plots._finish(fig, path)


def write_reports(cfg: StudyConfig, rows: list[dict]) -> dict[str, Path]:
    out = Path(cfg.out)
    table = summary_table(rows)
    ident = identification_table(rows)
    gvn = global_vs_nm(rows)
    paths = {"table_csv": out / "recovery_table.csv", "table_md": out / "recovery_table.md",
             "identification": out / "identification.csv", "global_vs_nm": out / "global_vs_nm.csv",
             "figure": out / "recovery.png"}
    table.to_csv(paths["table_csv"], index=False)
    ident.to_csv(paths["identification"], index=False)
    gvn.to_csv(paths["global_vs_nm"], index=False)
    worlds = pd.DataFrame(rows).drop_duplicates("world")[["world", "kind", "seed", "w_star", "n_sessions"]]
    md = [f"# Recovery study ({len(worlds)} {cfg.size} worlds, heads: {cfg.heads})", "",
          "## Recovery error and interval coverage per pair", "", markdown_table(table), "",
          "## Identification (median |error| and 90% interval width per weight)", "", markdown_table(ident), "",
          "## Global search vs Nelder-Mead (best loss per world)", "", gvn_summary(gvn), "",
          markdown_table(gvn, 5), "",
          "## Worlds", "", markdown_table(worlds.assign(w_star=worlds.w_star.apply(
              lambda w: "(" + ", ".join(f"{v:.3f}" for v in w) + ")"))), "",
          geometry_section(load_geometry(out, set(worlds.world), set(pd.DataFrame(rows).heads)))]
    paths["table_md"].write_text("\n".join(md))
    recovery_figure(rows, paths["figure"])
    return paths


# ------------------------------------------------------------------------------------------------ the study
# options whose change makes earlier results incomparable (n_worlds, heads, figures may change on resume)
RESULT_KEYS = ("size", "seed0", "objectives", "optimizers", "max_evals", "grid_resolution", "bootstrap",
               "bootstrap_resolution", "m_exponent", "epochs", "seed")


def check_study(cfg: StudyConfig) -> list[str]:
    """Validate the options, and a resume against the study already in <out>, before anything is written;
    returns the options that differ from that study (only with force; they are then started afresh)."""
    from estimation import runner

    for name, value, low in (("n-worlds", cfg.n_worlds, 1), ("landscape-worlds", cfg.landscape_worlds, 0)):
        if value < low:
            raise UsageError(f"--{name} must be >= {low}, got {value}")
    for name, value, allowed in (("size", cfg.size, WORLD_SIZES),
                                 ("heads", cfg.heads, ("oracle", "gnn", "both"))):
        if value not in allowed:
            raise UsageError(f"--{name}: unknown value {value!r}; choose from {', '.join(allowed)}")
    out = Path(cfg.out)
    problem = folder_problem(out)
    if problem:
        raise UsageError(f"--out {out}: {problem}; pass a folder for the study")
    for mode in cfg.modes():  # objectives, optimizers, budgets: the estimation's own checks
        runner.check_config(estimation_config(cfg, Path(cfg.out), mode, False, "check"))
    if cfg.report_only or not load_rows(out):
        return []
    try:
        old = json.loads((out / "study.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        log.warning("%s has results but no readable study.json: resuming without checking the config", out)
        return []
    new = dataclasses.asdict(cfg)
    diff = [k for k in RESULT_KEYS if k in old and old[k] != new[k]]
    if diff and not cfg.force:
        what = ", ".join(f"--{k.replace('_', '-')} {old[k]} (now {new[k]})" for k in diff)
        raise UsageError(f"--out {out} holds a study run with {what}; resuming would mix the two: use another "
                         f"--out, the same options, or --force to move the old results aside and start afresh")
    return diff


def _move_old_results(out: Path) -> Path:
    """--force on a changed config: the old results go to <out>/superseded-<time>/ (nothing is deleted)."""
    dest = out / time.strftime("superseded-%Y%m%d-%H%M%S")
    dest.mkdir()
    for name in ("results.jsonl", "geometry.jsonl", "study.json"):
        if (out / name).exists():
            os.replace(out / name, dest / name)
    log.warning("config changed (--force): old results moved to %s", dest)
    return dest


def run_study(cfg: StudyConfig) -> dict:
    """Run (or resume) the study; returns {'rows', 'paths', 'run_id'}."""
    import mlflow

    from estimation.tracking import log_params, setup_mlflow

    changed = check_study(cfg)  # before anything is written
    out = Path(cfg.out)
    if cfg.report_only and not load_rows(out):
        raise UsageError(f"--report-only: no results in {out / 'results.jsonl'}; run the study there first")
    out.mkdir(parents=True, exist_ok=True)
    if changed:
        _move_old_results(out)
    specs = world_specs(cfg.n_worlds, cfg.seed0)
    modes = cfg.modes()
    if not cfg.report_only:
        tmp = out / f".study.json.{os.getpid()}"
        tmp.write_text(json.dumps({"config": dataclasses.asdict(cfg), "worlds": specs}, indent=1))
        os.replace(tmp, out / "study.json")
    uri = setup_mlflow(out)
    client = mlflow.MlflowClient(uri)
    done = {(r["world"], r["heads"]) for r in load_rows(out)}
    t0 = time.time()
    if cfg.report_only:
        rows = [r for r in load_rows(out) if r["world"] in {s["name"] for s in specs} and r["heads"] in modes]
        if not rows:
            raise ValueError(f"--report-only: no results in {out / 'results.jsonl'}")
        return {"rows": rows, "paths": write_reports(cfg, rows), "run_id": None, "tracking_uri": uri}
    for i, spec in enumerate(specs):
        for mode in modes:
            if (spec["name"], mode) in done:
                log.info("%s/%s: done before, skipped", spec["name"], mode)
                continue
            t = time.time()
            rows = run_world(cfg, spec, mode, i, client, uri)
            with open(out / "results.jsonl", "a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            best = min((r["l1_error"] for r in rows if r["l1_error"] is not None), default=float("nan"))
            log.info("%s/%s: %d pairs in %.0fs, best L1 %.3f", spec["name"], mode, len(rows), time.time() - t, best)
    if cfg.geometry:
        ensure_geometry(cfg, specs, modes, client, uri)
    rows = [r for r in load_rows(out) if r["world"] in {s["name"] for s in specs} and r["heads"] in modes]
    paths = write_reports(cfg, rows)
    exp = client.get_experiment_by_name("recovery-study")
    exp_id = exp.experiment_id if exp else client.create_experiment(
        "recovery-study", artifact_location=(out / "mlruns" / "artifacts" / "recovery-study").resolve().as_uri())
    from estimation.tracking import process_tags

    run = client.create_run(exp_id, run_name=out.name, tags=process_tags())
    try:
        log_params(run.info.run_id, {"config": dataclasses.asdict(cfg)}, client)
        table = summary_table(rows)
        for _, r in table.iterrows():
            tag = f"{r['heads']}.{r['objective']}.{r['optimizer']}"
            client.log_metric(run.info.run_id, f"{tag}.median_l1", r["median_l1"])
            client.log_metric(run.info.run_id, f"{tag}.worst_l1", r["worst_l1"])
            if "boot_cover_weight" in r and pd.notna(r["boot_cover_weight"]):
                client.log_metric(run.info.run_id, f"{tag}.boot_cover_weight", r["boot_cover_weight"])
        for p in paths.values():
            client.log_artifact(run.info.run_id, str(p))
        for p in sorted((out / "figures").glob("*.png")):
            client.log_artifact(run.info.run_id, str(p), "figures")
        client.log_metric(run.info.run_id, "seconds", time.time() - t0)
        client.set_terminated(run.info.run_id, "FINISHED")
    except Exception:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    return {"rows": rows, "paths": paths, "run_id": run.info.run_id, "tracking_uri": uri}
