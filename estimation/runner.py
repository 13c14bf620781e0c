"""The main job: data -> GNN (reused or trained) -> head predictions -> estimation per (objective, optimizer).

`experiments/run_estimation.py` is a thin CLI over `run(EstimationConfig)`. One MLflow parent run per
invocation in the experiment 'head-weight-estimation'; a child run per (objective, optimizer) logs every
evaluation as a step (loss, w_complete, w_long, w_rewatch, w_neg), its final weights and a loss-curve figure;
the parent holds the results table and a side-by-side figure. On a planted world, w* and the L1 recovery error
are logged as well (the truth is read only here, after estimation, never by the estimator).

Per child, after the optimizer (each cheap, both on by default, see `EstimationConfig`):
- bootstrap over users (`estimation.uncertainty`): 90% percentile intervals per weight from `bootstrap`
  replicates, plus m-out-of-n subsampling as a check; metrics ci90_low_w_* / ci90_high_w_* / boot_std_w_* /
  mn_ci90_*, artifact uncertainty.json. No re-ranking per replicate: per-session losses of a candidate set
  (everything evaluated for the objective + a lattice at `bootstrap_resolution` + a local lattice) are computed
  once and each replicate re-weights sessions.
- landscapes (`estimation.landscape`): heat maps over 2-D simplex slices and 1-D profiles through the estimate
  (and w* on planted worlds), under figures/landscape/.

`prepare_inputs` (data, heads, ranker, objectives) and `estimate` (MLflow runs) are separate so that the recovery
study can reuse them. heads="oracle" (planted worlds only) uses the world's true head probabilities instead of a
GNN, to separate the estimator's error from the head model's.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datamodules.schema import HEADS, WEIGHT_KEYS, WORLD_SIZES
from estimation.cli import end_status, folder_problem, note_killed

log = logging.getLogger("run_estimation")
PROJECT_ROOT = Path(__file__).resolve().parents[1]

OBJECTIVES = ("cat_ce", "cat_ce_smooth", "cat_ce_l2", "cat_ce_l3", "emb_l2")
OPTIMIZERS = ("nelder-mead", "grid", "cmaes")
SPACES = ("constrained", "reference")
HEAD_SOURCES = ("gnn", "oracle")


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


@dataclass
class EstimationConfig:
    data_dir: str | None = None        # KuaiRec 2.0 folder; None: the embedded planted world
    world_size: str = "small"          # embedded planted world when no --data-dir (see README: sizes)
    world_seed: int = 0                # embedded world seed
    matrix: str = "big"                # interaction matrix to use (big or small)
    gnn_run_id: str | None = None      # MLflow run of the GNN to use; default: newest finished run for this dataset
    checkpoint: str = "best"           # which checkpoint of that run: best or last
    retrain: bool = False              # train a new GNN even if one exists for this dataset
    epochs: int = 12                   # GNN epochs when training is needed (at most; early stopping, patience 3)
    objectives: str = "cat_ce,emb_l2"  # comma list from OBJECTIVES
    optimizers: str = "nelder-mead"    # comma list from OPTIMIZERS
    space: str = "constrained"         # constrained (+,+,+,- on sum|w|=1) or reference (the notebook's per objective)
    max_evals: int = 300               # evaluation budget per (objective, optimizer), except the grid
    grid_resolution: int = 20          # lattice resolution of the grid optimizer
    grid_max_evals: int = 0            # the grid's budget; 0: its whole lattice + refinement (C(n+3,3) + 4*124)
    min_sess_len: int = 5              # valid test sessions have at least this many interactions
    exclude_seen: bool = True          # candidates exclude videos the user watched before the session
    precision: str = "auto"            # head prediction: auto (split bf16 where the hardware has bf16, else fp32), fp32, bf16
    seed: int = 0                      # seed for stochastic optimizers and the bootstrap
    heads: str = "gnn"                 # gnn (trained head model) or oracle (a planted world's true head probabilities)
    prune: bool = True                 # exact skyband candidate pruning (constrained space only; same results, faster)
    bootstrap: int = 200               # bootstrap replicates (users resampled) per child run; 0 skips
    bootstrap_resolution: int = 10     # lattice resolution of the bootstrap's global candidate set
    m_exponent: float = 0.7            # m-out-of-n check: m = ceil(n_users ** m_exponent) users per subsample
    landscape: bool = True             # heat maps and profiles of the objective through the estimate (and w*)
    landscape_resolution: int = 15     # grid points per slice axis
    landscape_axes: str = "complete-long,rewatch-neg"  # slices: pairs of heads that vary
    root: str = str(PROJECT_ROOT)      # project root holding mlruns/ and data/
    run_name: str | None = None        # MLflow name of the parent run; default "<dataset id> <objectives> <optimizers>[ oracle]"

    def names(self, field_name: str, allowed: tuple[str, ...]) -> list[str]:
        items = [s.strip() for s in str(getattr(self, field_name)).split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise UsageError(f"--{field_name.replace('_', '-')}: unknown value {bad[0] if bad else '(empty)'!r}; "
                             f"choose from {', '.join(allowed)}")
        return items


@dataclass
class PairResult:
    objective: str
    optimizer: str
    w: np.ndarray
    loss: float
    n_evals: int
    seconds: float
    run_id: str
    losses: np.ndarray = field(repr=False)
    l1_error: float | None = None
    uncertainty: object = field(default=None, repr=False)   # uncertainty.Uncertainty when bootstrapped
    figures: list = field(default_factory=list, repr=False)


@dataclass
class Inputs:
    """Everything estimation needs, built once per invocation by `prepare_inputs`."""
    data_dir: Path
    dataset: object
    session_keys: np.ndarray           # [S] valid test sessions
    session_users: np.ndarray          # [S] their users (bootstrap unit)
    objectives: dict                   # name -> RecordingObjective
    gnn_run: str | None                # None in oracle mode
    gnn_trained: bool
    head_source: str
    w_star: np.ndarray | None          # planted worlds only; read for evaluation, never by the estimator
    timings: dict
    gnn_dataset_id: str | None = None  # the dataset the GNN was trained on (differs: parent tagged a mismatch)


# ------------------------------------------------------------------------------------------------ stages
def resolve_data(config: EstimationConfig) -> Path:
    from datamodules.raw import resolve_data_dir

    if config.data_dir:
        return Path(resolve_data_dir(config.data_dir))
    from datamodules.world import ensure_world

    return Path(ensure_world(config.world_size, config.world_seed, root=Path(config.root) / "data" / "worlds"))


def find_gnn_run(client, dataset_id: str, run_id: str | None, tracking_uri: str) -> str | None:
    """The GNN run to use: the named one (checked), else the newest finished one trained on this dataset."""
    exp = client.get_experiment_by_name("gnn-training")
    if run_id:
        try:
            run = client.get_run(run_id)
        except Exception:
            raise UsageError(f"--gnn-run-id {run_id}: no such run in {tracking_uri}; "
                             f"{_gnn_runs_hint(client, exp, tracking_uri)}") from None
        if run.data.tags.get("stage") != "gnn-training":
            raise UsageError(f"--gnn-run-id {run_id} is not a GNN training run (experiment 'gnn-training'); "
                             f"{_gnn_runs_hint(client, exp, tracking_uri)}")
        if "best_val_auc_mean" not in run.data.tags:  # its training crashed or was stopped: no checkpoints
            raise UsageError(f"--gnn-run-id {run_id} ended {run.info.status} without checkpoints; pass another "
                             f"--gnn-run-id or omit it (with --retrain to train a new GNN)")
        return run_id
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.dataset_id = '{dataset_id}' and "
                              "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
                              max_results=50)
    # a run whose training crashed after MLflow marked it finished has no checkpoints (no best_val_auc_mean tag)
    usable = [r for r in runs if "best_val_auc_mean" in r.data.tags]
    if not usable:
        return None
    run = usable[0]
    try:
        best = f"{float(run.data.tags['best_val_auc_mean']):.4f}"
    except ValueError:
        best = run.data.tags["best_val_auc_mean"]
    log.info("reusing GNN run %s (%s, best val auc_mean %s); --retrain trains a new one", run.info.run_id,
             run.info.run_name, best)
    return run.info.run_id


def _gnn_runs_hint(client, exp, tracking_uri: str) -> str:
    """The newest usable GNN runs of the store and the command that lists them all."""
    if exp is None:
        return "this store has no GNN runs: omit --gnn-run-id to train one"
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=20)
    ids = [f"{r.info.run_id} ({r.info.run_name})" for r in runs if "best_val_auc_mean" in r.data.tags][:3]
    newest = f"newest GNN runs: {', '.join(ids)}; " if ids else "no finished GNN run here; "
    return (f"{newest}all: MLFLOW_TRACKING_URI={tracking_uri} mlflow runs list --experiment-id "
            f"{exp.experiment_id}; or omit --gnn-run-id")


def train_gnn(config: EstimationConfig, dataset, data_dir: Path) -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_gnn", PROJECT_ROOT / "experiments" / "train_gnn.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_gnn"] = mod
    spec.loader.exec_module(mod)
    TrainConfig, train = mod.TrainConfig, mod.train

    log.info("no finished GNN run for dataset %s: training one (%d epochs)", dataset.dataset_id, config.epochs)
    return train(TrainConfig(data_dir=str(data_dir), matrix=config.matrix, epochs=config.epochs, seed=config.seed,
                             root=config.root), dataset=dataset, data_dir=str(data_dir))


def build_objectives(names, ranker, observed, dataset, video_emb):
    from estimation.objectives import CategoryCrossEntropy, EmbeddingL2

    items = dataset.item_features
    made = {}
    for name in names:
        if name == "cat_ce":
            made[name] = CategoryCrossEntropy(ranker, observed, items["i_cat_level1_id"].to_numpy(), name=name)
        elif name == "cat_ce_smooth":
            made[name] = CategoryCrossEntropy(ranker, observed, items["i_cat_level1_id"].to_numpy(),
                                              smoothing="dirichlet", name=name)
        elif name == "cat_ce_l2":
            made[name] = CategoryCrossEntropy(ranker, observed, items["i_cat_level2_id"].to_numpy(), name=name)
        elif name == "cat_ce_l3":
            made[name] = CategoryCrossEntropy(ranker, observed, items["i_cat_level3_id"].to_numpy(), name=name)
        elif name == "emb_l2":
            made[name] = EmbeddingL2(ranker, observed, video_emb, name=name)
    return made


def space_for(config: EstimationConfig, objective: str):
    from estimation.search_space import get_space

    if config.space == "reference":
        return get_space("reference-emb" if objective == "emb_l2" else "reference-ce")
    return get_space(config.space)


def optimizer_options(config: EstimationConfig, method: str) -> dict:
    opts = {"max_evals": config.max_evals}
    if method == "grid":  # a grid cut short by a budget is a half lattice: by default it gets all of it
        opts["resolution"] = config.grid_resolution
        opts["max_evals"] = config.grid_max_evals if config.grid_max_evals > 0 else None
    if method == "cmaes":
        opts["seed"] = config.seed
    return opts


# ------------------------------------------------------------------------------------------------ the job
def check_config(config: EstimationConfig) -> tuple[list[str], list[str]]:
    """Validate the choices; returns (objective names, optimizer names)."""
    objective_names = config.names("objectives", OBJECTIVES)
    optimizer_names = config.names("optimizers", OPTIMIZERS)
    for name, value, allowed in (("space", config.space, SPACES), ("heads", config.heads, HEAD_SOURCES),
                                 ("precision", config.precision, ("auto", "fp32", "bf16")),
                                 ("checkpoint", config.checkpoint, ("best", "last"))):
        if value not in allowed:
            raise UsageError(f"--{name}: unknown value {value!r}; choose from {', '.join(allowed)}")
    for name, value, allowed in (("world-size", config.world_size, WORLD_SIZES),
                                 ("matrix", config.matrix, ("big", "small"))):
        if value not in allowed:
            raise UsageError(f"--{name}: unknown value {value!r}; choose from {', '.join(allowed)}")
    for name, value in (("max-evals", config.max_evals), ("min-sess-len", config.min_sess_len),
                        ("grid-resolution", config.grid_resolution), ("epochs", config.epochs)):
        if value < 1:
            raise UsageError(f"--{name} must be a positive integer, got {value}")
    if config.grid_max_evals < 0:
        raise UsageError(f"--grid-max-evals must be >= 0 (0: the whole lattice), got {config.grid_max_evals}")
    if config.landscape_resolution < 2:
        raise UsageError(f"--landscape-resolution must be >= 2, got {config.landscape_resolution}")
    if config.bootstrap < 0 or config.bootstrap_resolution < 1:
        raise UsageError("--bootstrap must be >= 0 and --bootstrap-resolution >= 1")
    if not 0 < config.m_exponent <= 1:
        raise UsageError(f"--m-exponent must lie in (0, 1], got {config.m_exponent}")
    if config.world_seed < 0:
        raise UsageError(f"--world-seed must be >= 0, got {config.world_seed}")
    problem = folder_problem(config.root)
    if problem:
        raise UsageError(f"--root {config.root}: {problem}; pass a folder where mlruns/ and data/ may be created")
    if config.landscape:
        from estimation.landscape import parse_axes

        try:
            parse_axes(config.landscape_axes)
        except ValueError as e:
            raise UsageError(f"--landscape-axes: {e}") from None
    return objective_names, optimizer_names


def oracle_heads(data_dir: Path, dataset, session_keys: np.ndarray, chunk: int = 32):
    """The planted world's true head probabilities for every (session, catalog video): float32 [S, V, 4], at the
    Beijing hour of the session's start; and the true video factors (embeddings for emb_l2)."""
    from datamodules.world import TrueHeadModel

    try:
        model = TrueHeadModel.load(data_dir)
    except FileNotFoundError:
        raise UsageError(f"--heads oracle needs a planted world (ground_truth/ next to the data); {data_dir} "
                         f"has none") from None
    sessions = dataset.sessions.loc[session_keys]
    users = sessions["user_id"].to_numpy().astype(np.int64)
    hours = (((sessions["start_ts"].to_numpy().astype(np.int64) + 8 * 3600) // 3600) % 24).astype(np.int64)
    V = int(dataset.n_videos)
    if model.video_factors.shape[0] != V:
        raise UsageError(f"--heads oracle: the world has {model.video_factors.shape[0]} videos, the dataset {V}")
    probs = np.empty((len(session_keys), V, 4), dtype=np.float32)
    vid = np.arange(V)
    for lo in range(0, len(session_keys), chunk):
        hi = min(lo + chunk, len(session_keys))
        n = hi - lo
        p = model.probs(np.repeat(users[lo:hi], V), np.tile(vid, n), np.repeat(hours[lo:hi], V))
        probs[lo:hi] = p.reshape(n, V, 4)
    return probs, np.asarray(model.video_factors, dtype=np.float64)


def prepare_inputs(config: EstimationConfig, client=None, uri: str | None = None, dataset=None,
                   data_dir: Path | None = None) -> Inputs:
    """Data -> head probabilities (GNN or oracle) -> ranker -> recording objectives. A dataset already loaded
    (and its data_dir) may be passed in."""
    import mlflow

    from datamodules.dataset import load_dataset, prepare_dataset
    from datamodules.world import load_truth
    from estimation.candidates import observed_videos, seen_before
    from estimation.ranking import Ranker
    from estimation.tracking import setup_mlflow
    from estimation.uncertainty import RecordingObjective

    objective_names, _ = check_config(config)
    timings: dict[str, float] = {}
    if config.data_dir and data_dir is None:  # fail fast on a bad folder, before any slow setup
        resolve_data(config)
    if uri is None:
        uri = setup_mlflow(config.root)
    client = client or mlflow.MlflowClient(uri)
    if config.gnn_run_id and config.heads == "gnn":  # fail fast, before any data work
        find_gnn_run(client, "", config.gnn_run_id, uri)

    t = time.time()
    if dataset is None:
        data_dir = resolve_data(config)
        processed = prepare_dataset(data_dir, matrix=config.matrix,
                                    cache_root=Path(config.root) / "data" / "processed")
        dataset = load_dataset(processed)
    data_dir = Path(data_dir)
    timings["data_s"] = time.time() - t
    log.info("dataset %s: %d interactions, %d sessions", dataset.dataset_id, len(dataset.interactions),
             len(dataset.sessions))
    truth = load_truth(data_dir)
    if config.heads == "oracle" and truth is None:
        raise UsageError(f"--heads oracle needs a planted world; {data_dir} has no ground truth")
    if truth is not None and config.space == "constrained":
        from estimation.landscape import outside_constrained

        off = [f"{h} {x:+.3f}" for h, x in outside_constrained(truth["w_star"])]
        if off:
            log.warning("warning: the planted w* has %s, outside the constrained space (+,+,+,-) searched here: "
                        "it cannot be recovered (errors are measured against it anyway; --space reference "
                        "searches other signs)", ", ".join(off))

    sessions = dataset.valid_test_sessions(config.min_sess_len)
    keys = sessions.index.to_numpy().astype(np.int64)
    if len(keys) == 0:
        s_all = dataset.sessions
        n_test = int((s_all["split"] == 2).sum())
        longest = int(s_all.loc[s_all["split"] == 2, "sess_len"].max()) if n_test else 0
        hint = "use --matrix big or lower --min-sess-len" if config.matrix == "small" else "lower --min-sess-len"
        raise UsageError(f"no valid test sessions (test split, length >= {config.min_sess_len}) in {data_dir}: "
                         f"--matrix {config.matrix} gives {len(s_all)} sessions from {len(dataset.interactions)} "
                         f"interactions, {n_test} in the test split, the longest of length {longest}; {hint}")
    gnn_run, trained = None, False
    if config.heads == "gnn":
        from estimation.heads import heads_cache_key, predict_session_heads, resolve_precision, video_embeddings
        from lightning_modules.checkpoints import check_compatible, checkpoint_artifact, load_checkpoint_file

        t = time.time()
        gnn_run = find_gnn_run(client, dataset.dataset_id, config.gnn_run_id, uri)
        trained = gnn_run is None or config.retrain
        if trained:
            gnn_run = train_gnn(config, dataset, data_dir)
        elif config.epochs != EstimationConfig.epochs:
            log.warning("warning: --epochs %d has no effect: GNN run %s is reused (add --retrain to train a new "
                        "GNN for %d epochs)", config.epochs, gnn_run, config.epochs)
        gnn_dataset = client.get_run(gnn_run).data.tags.get("dataset_id")
        ckpt_path = checkpoint_artifact(gnn_run, config.checkpoint, tracking_uri=uri)
        model = load_checkpoint_file(ckpt_path)
        check_compatible(model, dataset)  # a GNN that cannot score this catalog fails here, before any run exists
        if gnn_dataset and gnn_dataset != dataset.dataset_id:
            log.warning("warning: GNN run %s was trained on dataset %s, not on this data (%s): its heads may not "
                        "fit; the parent run will be tagged gnn_dataset_mismatch=true", gnn_run, gnn_dataset,
                        dataset.dataset_id)
        timings["gnn_s"] = time.time() - t
        t = time.time()
        precision = resolve_precision(config.precision)
        heads_key = heads_cache_key(ckpt_path, dataset.dataset_id, keys, precision)
        heads = predict_session_heads(model, dataset, keys, cache_dir=Path(config.root) / "data" / "cache" / "heads",
                                      cache_key=heads_key, dtype=precision)
        probs, k = heads.probs, heads.k
        video_emb = video_embeddings(model)
    else:
        t = time.time()
        heads_key = None
        probs, video_emb = oracle_heads(data_dir, dataset, keys)
        k = sessions["sess_len"].to_numpy().astype(np.int64)
    timings["heads_s"] = time.time() - t

    t = time.time()
    observed = observed_videos(dataset.interactions, keys)
    seen = seen_before(dataset.interactions, dataset.sessions, keys) if config.exclude_seen else None
    if config.prune and config.space == "constrained":
        from estimation.pruning import cached_skyband, skyband_cache_path

        # cached beside the heads cache (GNN heads only), keyed by the heads key and exclude-seen
        cache = (skyband_cache_path(Path(config.root) / "data" / "cache" / "heads", heads_key, config.exclude_seen)
                 if heads_key else None)
        cand = cached_skyband(probs, k, seen=seen, cache_path=cache)
        timings["prune_s"] = time.time() - t
        ranker = Ranker(probs, k, candidates=cand)
        log.info("pruning: %.1f candidates per session kept of %d", cand.lengths().mean(), probs.shape[1])
    else:
        ranker = Ranker(probs, k, seen=seen)
    objectives = {name: RecordingObjective(obj) for name, obj in
                  build_objectives(objective_names, ranker, observed, dataset, video_emb).items()}
    timings["ranker_s"] = time.time() - t
    w_star = np.asarray(truth["w_star"], dtype=np.float64) if truth else None
    users = dataset.sessions.loc[keys, "user_id"].to_numpy().astype(np.int64)
    return Inputs(data_dir, dataset, keys, users, objectives, gnn_run, trained, config.heads, w_star, timings,
                  gnn_dataset if config.heads == "gnn" else None)


def run(config: EstimationConfig) -> dict:
    """Run the whole job; returns a summary dict (parent run id, per-pair results, truth if planted)."""
    import mlflow

    from estimation.tracking import setup_mlflow

    check_config(config)
    t_start = time.time()
    uri = setup_mlflow(config.root)
    client = mlflow.MlflowClient(uri)
    inputs = prepare_inputs(config, client, uri)
    return estimate(config, inputs, client, uri, t_start=t_start)


def estimate(config: EstimationConfig, inputs: Inputs, client, uri: str, t_start: float | None = None,
             tags: dict | None = None) -> dict:
    """One parent run with a child run per (objective, optimizer); returns the summary dict."""
    from estimation import plots
    from estimation.optimizers import optimize
    from estimation.tracking import StepLogger, log_final, log_params, process_tags, start_child_run

    _, optimizer_names = check_config(config)
    t_start = time.time() if t_start is None else t_start
    timings = dict(inputs.timings)
    dataset, w_star = inputs.dataset, inputs.w_star
    mismatch = inputs.gnn_dataset_id is not None and inputs.gnn_dataset_id != dataset.dataset_id
    default_name = f"{dataset.dataset_id[:8]} {config.objectives} {config.optimizers}" + \
        (" oracle" if inputs.head_source == "oracle" else "")  # not MLflow's random name: seeding repeats it
    parent = client.create_run(client.get_experiment_by_name("head-weight-estimation").experiment_id,
                               run_name=config.run_name or default_name,
                               tags={"dataset_id": dataset.dataset_id, "gnn_run_id": str(inputs.gnn_run),
                                     "data_dir": str(inputs.data_dir), "planted": str(w_star is not None),
                                     "heads": inputs.head_source, **process_tags(),
                                     **({"gnn_dataset_id": inputs.gnn_dataset_id} if inputs.gnn_dataset_id else {}),
                                     **({"gnn_dataset_mismatch": "true"} if mismatch else {}),
                                     **{k: str(v) for k, v in (tags or {}).items()}})
    parent_id = parent.info.run_id
    results: list[PairResult] = []
    status = "FAILED"
    try:
        log_params(parent_id, {"config": dataclasses.asdict(config), "dataset_id": dataset.dataset_id,
                               "gnn_run_id": inputs.gnn_run, "gnn_trained_now": inputs.gnn_trained,
                               "n_sessions": int(len(inputs.session_keys)), "n_videos": int(dataset.n_videos)},
                   client)
        _log_data_quality(client, parent_id, dataset)
        if w_star is not None:
            _log_weights(client, parent_id, "w_star_", w_star)
        t_est = time.time()
        for obj_name, objective in inputs.objectives.items():
            for method in optimizer_names:
                results.append(_estimate_pair(client, parent_id, obj_name, objective, method, config, inputs,
                                              optimize, start_child_run, StepLogger, log_final, plots))
        _log_parent_summary(client, parent_id, results, w_star, plots)
        timings["estimation_s"] = time.time() - t_est  # optimizers, bootstrap, landscapes, MLflow logging
        timings["total_s"] = time.time() - t_start
        for k, v in timings.items():
            client.log_metric(parent_id, f"time_{k}", v)
        status = "FINISHED"
    except BaseException as e:  # Ctrl-C / SIGTERM: KILLED, not FAILED
        status = end_status(e)
        note_killed(e, parent_id)
        raise
    finally:
        client.set_terminated(parent_id, status=status)
    return {"parent_run_id": parent_id, "gnn_run_id": inputs.gnn_run, "results": results, "w_star": w_star,
            "tracking_uri": uri, "dataset_id": dataset.dataset_id, "timings": timings,
            "n_sessions": int(len(inputs.session_keys)), "heads": inputs.head_source}


def _log_weights(client, run_id: str, prefix: str, w) -> None:
    for k, v in zip(WEIGHT_KEYS, np.asarray(w, dtype=np.float64)):
        client.log_metric(run_id, prefix + k, float(v))


def _log_data_quality(client, run_id: str, dataset) -> None:
    """Every repair the reader and the dataset builder made, as metrics of the run that used the data."""
    from mlflow.entities import Metric

    repairs = dataset.manifest.get("repairs", {}) or {}
    ts = int(time.time() * 1000)
    metrics = [Metric(f"dq.{k}".replace(":", "_"), float(v), ts, 0) for k, v in repairs.items()
               if isinstance(v, (int, float))]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])


def _estimate_pair(client, parent_id, obj_name, objective, method, config, inputs: Inputs, optimize,
                   start_child_run, StepLogger, log_final, plots) -> PairResult:
    space = space_for(config, obj_name)
    w_star = inputs.w_star
    child = start_child_run(parent_id, f"{obj_name}/{method}", tags={"objective": obj_name, "optimizer": method,
                                                                     "space": space.name,
                                                                     "heads": inputs.head_source}, client=client)
    status = "FAILED"
    try:
        client.log_param(child, "objective", obj_name)
        client.log_param(child, "optimizer", method)
        client.log_param(child, "space", space.name)
        client.log_param(child, "heads", inputs.head_source)
        t = time.time()
        with StepLogger(child, client) as step_log:
            res = optimize(method, objective, space, None, step_log, **optimizer_options(config, method))
        seconds = time.time() - t
        log_final(child, res.w, res.loss, res.n_evals, client)
        client.log_metric(child, "seconds", seconds)
        l1 = None
        if w_star is not None and np.isfinite(res.w).all():
            l1 = float(np.abs(res.w - w_star).sum())
            client.log_metric(child, "l1_error", l1)
            _log_weights(client, child, "w_star_", w_star)
        losses = np.asarray(res.history.loss, dtype=np.float64)
        with tempfile.TemporaryDirectory() as tmp:
            plots.loss_curve(losses, title=f"{obj_name} / {method}", path=Path(tmp) / "loss_curve.png")
            client.log_artifact(child, str(Path(tmp) / "loss_curve.png"), "figures")
        figures = ["figures/loss_curve.png"]
        found = np.isfinite(res.w).all() and math.isfinite(res.loss)
        unc = None
        if config.bootstrap > 0 and found:
            unc = _bootstrap_child(client, child, objective, space, res.w, config, inputs)
        if config.landscape and found:
            from estimation.landscape import log_landscapes, parse_axes

            t = time.time()
            figures += log_landscapes(client, child, objective, res.w, w_star, axes=parse_axes(config.landscape_axes),
                                      resolution=config.landscape_resolution, title=f"{obj_name} / {method}")
            client.log_metric(child, "landscape_s", time.time() - t)
        status = "FINISHED"
        return PairResult(obj_name, method, np.asarray(res.w), float(res.loss), int(res.n_evals), seconds, child,
                          losses, l1, unc, figures)
    except BaseException as e:  # Ctrl-C / SIGTERM: KILLED, not FAILED
        status = end_status(e)
        note_killed(e, child)
        raise
    finally:
        client.set_terminated(child, status=status)


def _bootstrap_child(client, child, objective, space, w_hat, config, inputs: Inputs):
    """Bootstrap over users + m-out-of-n check, logged to the child run (metrics and uncertainty.json)."""
    from mlflow.entities import Metric

    from estimation.uncertainty import bootstrap_objective

    t = time.time()
    n0 = objective.n_computed
    unc = bootstrap_objective(objective, space, w_hat, inputs.session_users, n_boot=config.bootstrap,
                              resolution=config.bootstrap_resolution, m_exponent=config.m_exponent,
                              seed=config.seed)
    metrics = unc.metrics()
    metrics["bootstrap_new_evals"] = float(objective.n_computed - n0)
    if inputs.w_star is not None:
        for which, prefix in (("boot", ""), ("mn", "mn_")):
            if (unc.ci_low if which == "boot" else unc.mn_low) is None:
                continue
            cov = unc.covers(inputs.w_star, which)
            for k, c in zip(WEIGHT_KEYS, cov):
                metrics[f"{prefix}{unc.tag}_covers_{k}"] = float(c)
            metrics[f"{prefix}{unc.tag}_covers_all"] = float(cov.all())
    metrics["bootstrap_s"] = time.time() - t
    ts = int(time.time() * 1000)
    client.log_batch(child, metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "uncertainty.json").write_text(unc.to_json())
        client.log_artifact(child, str(Path(tmp) / "uncertainty.json"))
    return unc


def _log_parent_summary(client, parent_id, results: list[PairResult], w_star, plots) -> None:
    rows = []
    for r in results:
        row = {"objective": r.objective, "optimizer": r.optimizer, "loss": r.loss, "n_evals": r.n_evals,
               "seconds": round(r.seconds, 2), "run_id": r.run_id,
               **{k: float(v) for k, v in zip(WEIGHT_KEYS, r.w)}}
        if w_star is not None:
            row["l1_error"] = r.l1_error
        u = r.uncertainty
        if u is not None:
            for name, arr in (("ci_low", u.ci_low), ("ci_high", u.ci_high), ("mn_ci_low", u.mn_low),
                              ("mn_ci_high", u.mn_high)):
                if arr is not None:
                    row.update({f"{name}_{k}": float(v) for k, v in zip(WEIGHT_KEYS, arr)})
        rows.append(row)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "results.json").write_text(json.dumps(rows, indent=2))
        import pandas as pd

        pd.DataFrame(rows).to_csv(Path(tmp) / "results.csv", index=False)
        plots.runs_overlay({f"{r.objective}/{r.optimizer}": r.losses for r in results},
                           path=Path(tmp) / "objectives_side_by_side.png",
                           title="loss per evaluation, by objective and optimizer")
        client.log_artifact(parent_id, str(Path(tmp) / "results.json"))
        client.log_artifact(parent_id, str(Path(tmp) / "results.csv"))
        client.log_artifact(parent_id, str(Path(tmp) / "objectives_side_by_side.png"), "figures")
    for r in results:
        tag = f"{r.objective}.{r.optimizer}"
        if math.isfinite(r.loss):
            client.log_metric(parent_id, f"{tag}.loss", r.loss)
        if r.l1_error is not None:
            client.log_metric(parent_id, f"{tag}.l1_error", r.l1_error)


def _weights_text(w) -> str:
    """Four weights in columns, rounded first so that no -0.0000 appears."""
    return " ".join(f"{round(float(v), 4) + 0.0:>10.4f}" for v in w)


def format_summary(summary: dict) -> str:
    """The table printed at the end: objective, optimizer, weights, loss, recovery error."""
    w_star = summary["w_star"]
    head = f"{'objective':<14} {'optimizer':<12} " + " ".join(f"{'w_' + h:>10}" for h in HEADS) + \
        f" {'loss':>12} {'evals':>6}" + (f" {'L1 err':>8}" if w_star is not None else "")
    lines = [head, "-" * len(head)]
    for r in summary["results"]:
        line = f"{r.objective:<14} {r.optimizer:<12} " + _weights_text(r.w) + \
            f" {r.loss:>12.5g} {r.n_evals:>6d}"
        if w_star is not None:
            line += f" {r.l1_error:>8.4f}" if r.l1_error is not None else f" {'-':>8}"
        lines.append(line)
        u = r.uncertainty
        if u is not None and u.ci_low is not None:
            line = f"{'':<14} {u.tag + ' boot':<12} " + " ".join(
                f"{f'[{lo:.2f},{hi:.2f}]':>10}".replace("-0.00", "0.00") for lo, hi in zip(u.ci_low, u.ci_high))
            if u.estimate_gap > 1e-12:  # the bootstrap's candidates hold a better point than the optimizer found
                line += f"  (a candidate has loss {u.cand_best_loss:.5g}: " + \
                    ", ".join(f"{v:.3f}" for v in u.cand_best_w) + ")"
            lines.append(line)
    if w_star is not None:
        lines.append(f"{'planted w*':<27} " + _weights_text(w_star))
    return "\n".join(lines)
