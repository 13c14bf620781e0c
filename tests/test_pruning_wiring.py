"""The main job's pruning wiring (estimation.runner.prepare_inputs): with the 'constrained' space it ranks on
K-skyband candidates, cached beside the heads cache (keyed by the heads key and exclude-seen, written atomically)
and giving the same losses as ranking the whole catalog; the 'reference' space does not prune. The GNN is a
small random HeadModel patched in for the trained one (no training in this test), behind a real finished run of
the project's MLflow store tagged with the dataset id."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from estimation import pruning, runner
from estimation.runner import EstimationConfig, prepare_inputs
from estimation.search_space import get_space


@pytest.fixture()
def fake_gnn(monkeypatch, tmp_path):
    """Replace 'find or train a GNN and load its checkpoint' by a random HeadModel of the dataset's shape."""
    import lightning_modules.checkpoints as ck
    from lightning_modules.head_model import HeadModel

    ckpt = tmp_path / "fake.ckpt"
    ckpt.write_bytes(b"fake checkpoint 1")
    models = {}

    def load(path):
        return models["m"]

    def find(client, dataset_id, run_id, uri):
        return models["run"]

    monkeypatch.setattr(runner, "find_gnn_run", find)
    monkeypatch.setattr(ck, "checkpoint_artifact", lambda run, which, tracking_uri=None: ckpt)
    monkeypatch.setattr(ck, "load_checkpoint_file", load)
    monkeypatch.setattr(ck, "check_compatible", lambda model, dataset: None)

    def make(dataset, root):
        from mlflow import MlflowClient

        from estimation.tracking import setup_mlflow

        torch.manual_seed(0)
        models["m"] = HeadModel(dataset.feature_names, dataset.n_users, dataset.n_videos, hidden_dim=8).eval()
        client = MlflowClient(setup_mlflow(root))
        run = client.create_run(client.get_experiment_by_name("gnn-training").experiment_id,
                                tags={"dataset_id": str(dataset.dataset_id)})
        client.set_terminated(run.info.run_id)
        models["run"] = run.info.run_id
    return make


def _inputs(root, world, **kw):
    cfg = EstimationConfig(data_dir=str(world), root=str(root), objectives="cat_ce,emb_l2", **kw)
    return prepare_inputs(cfg)


def test_constrained_space_ranks_on_cached_skyband(tmp_path, tiny_world, fake_gnn, monkeypatch):
    from datamodules.dataset import load_dataset, prepare_dataset

    root = tmp_path / "proj"
    fake_gnn(load_dataset(prepare_dataset(tiny_world, cache_root=root / "data" / "processed")), root)
    pruned = _inputs(root, tiny_world)
    cache_dir = root / "data" / "cache" / "heads"
    sky = sorted(p.name for p in cache_dir.glob("skyband-*"))
    heads = sorted(p.name for p in cache_dir.glob("heads-*"))
    assert len(heads) == 1 and len(sky) == 1 and sky[0].endswith(f"-seen-{pruning.PRUNING_VERSION}.npz")
    assert sky[0].startswith("skyband-" + heads[0][len("heads-"):-len(".npy")])      # keyed by the heads key
    assert not list(cache_dir.glob("*.tmp*"))
    ranker = pruned.objectives["cat_ce"].objective.ranker
    assert ranker.candidates is not None and ranker.signs == pruning.SIGNS
    assert len(ranker.candidates[1]) < ranker.n_sessions * ranker.n_videos                # something pruned

    full = _inputs(root, tiny_world, prune=False)
    assert full.objectives["cat_ce"].objective.ranker.candidates is None
    W = get_space("constrained").to_w(np.random.default_rng(0).normal(size=(40, 3)))
    for name in ("cat_ce", "emb_l2"):
        np.testing.assert_array_equal(pruned.objectives[name].objective.per_session(W),
                                      full.objectives[name].objective.per_session(W))

    # a second run reads the cache: the skyband is not recomputed
    def boom(*a, **k):
        raise AssertionError("skyband recomputed despite the cache")

    monkeypatch.setattr(pruning, "skyband", boom)
    again = _inputs(root, tiny_world)
    np.testing.assert_array_equal(again.objectives["cat_ce"].objective.ranker.candidates[1], ranker.candidates[1])
    monkeypatch.undo()


def test_exclude_seen_and_reference_space(tmp_path, tiny_world, fake_gnn):
    from datamodules.dataset import load_dataset, prepare_dataset

    root = tmp_path / "proj"
    fake_gnn(load_dataset(prepare_dataset(tiny_world, cache_root=root / "data" / "processed")), root)
    cache_dir = root / "data" / "cache" / "heads"
    _inputs(root, tiny_world, exclude_seen=False)
    assert [p.name.split("-")[2] for p in cache_dir.glob("skyband-*")] == ["all"]
    ref = _inputs(root, tiny_world, space="reference")
    assert ref.objectives["cat_ce"].objective.ranker.candidates is None                  # no pruning there
    assert len(list(cache_dir.glob("skyband-*"))) == 1


def test_skyband_cache_is_atomic_and_validated(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    probs = rng.random((6, 50, 4)).astype(np.float16)
    k = rng.integers(2, 8, size=6)
    path = pruning.skyband_cache_path(tmp_path, "abc", True)
    real = pruning.save_candidates

    def crash(p, cand):          # dies after writing part of the temporary file
        tmp = p.with_name(f"{p.stem}.tmp1.npz")
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(pruning, "save_candidates", crash)
    with pytest.raises(KeyboardInterrupt):
        pruning.cached_skyband(probs, k, cache_path=path)
    assert not path.exists()
    monkeypatch.setattr(pruning, "save_candidates", real)
    a = pruning.cached_skyband(probs, k, cache_path=path)
    b = pruning.cached_skyband(probs, k, cache_path=path)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.probs, b.probs)
    # a file for other sessions is recomputed, not trusted
    c = pruning.cached_skyband(probs[:4], k[:4], cache_path=path)
    assert len(c.indptr) == 5


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_skyband_cache_is_recomputed(tmp_path, caplog, damage):
    """A cache file cut short (full disk, half a copy) or overwritten is recomputed with a warning, not an error."""
    rng = np.random.default_rng(1)
    probs = rng.random((6, 50, 4)).astype(np.float16)
    k = rng.integers(2, 8, size=6)
    path = pruning.skyband_cache_path(tmp_path, "dmg", True)
    good = pruning.cached_skyband(probs, k, cache_path=path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00" * 100)
    again = pruning.cached_skyband(probs, k, cache_path=path)
    np.testing.assert_array_equal(again.values, good.values)
    np.testing.assert_array_equal(again.indptr, good.indptr)
    assert "unreadable" in caplog.text and path.read_bytes() == data            # rewritten whole


def test_torch_paths_used_on_gpu_match_the_numpy_paths(monkeypatch):
    """The device-agnostic torch code (what runs on CUDA) gives the same top-K sets and losses as the numpy
    shortcuts used on CPU; with ties, exclusions and pruned candidates."""
    from estimation import ranking
    from estimation.objectives import CategoryCrossEntropy, EmbeddingL2
    from estimation.ranking import Ranker

    rng = np.random.default_rng(3)
    S, V = 15, 60
    probs = (rng.integers(0, 5, size=(S, V, 4)) / 4).astype(np.float16)   # coarse: many ties
    k = rng.integers(1, 12, size=S)
    n_seen = rng.integers(0, 6, size=S)
    seen = (np.concatenate([[0], np.cumsum(n_seen)]), np.concatenate([rng.choice(V, n, replace=False) for n in n_seen]))
    obs_n = rng.integers(0, 6, size=S)
    obs = (np.concatenate([[0], np.cumsum(obs_n)]), rng.integers(0, V, obs_n.sum()))
    codes, emb = rng.integers(0, 6, V), rng.normal(size=(V, 5))
    W = get_space("constrained").to_w(rng.normal(size=(25, 3)))
    cand = pruning.skyband(probs, k, seen=seen)
    out = {}
    for numpy_on in (True, False):
        monkeypatch.setattr(ranking, "NUMPY_ON_CPU", numpy_on)
        vals = []
        for r in (Ranker(probs, k, seen=seen, chunk_elems=300), Ranker(probs, k, candidates=cand, chunk_elems=200)):
            vals += [CategoryCrossEntropy(r, obs, codes).per_session(W), EmbeddingL2(r, obs, emb).per_session(W)]
        out[numpy_on] = vals
    for a, b in zip(out[True], out[False]):
        np.testing.assert_array_equal(a, b)
