"""HeadModel: scoring API, AUC reporting (single-class heads), determinism, compatibility checks."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from sklearn.metrics import roc_auc_score

from datamodules.datamodule import KuaiRecDataModule
from datamodules.schema import HEADS
from fake_dataset import make_fake_dataset
from lightning_modules.checkpoints import IncompatibleCheckpointError, check_compatible
from lightning_modules.head_model import HeadModel

torch.set_num_threads(1)


def _trainer(**kw) -> pl.Trainer:
    base = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, deterministic=True, num_sanity_val_steps=0)
    return pl.Trainer(**{**base, **kw})


@pytest.fixture(scope="module")
def ds():
    return make_fake_dataset(n_users=30, n_videos=40, per_user=20, seed=2)


def _model(dm, seed=0, **kw):
    pl.seed_everything(seed, verbose=False)
    return HeadModel.from_graph(dm.graph, dataset_id="fake", hidden_dim=8, lr=1e-2, **kw)


def test_head_logits_normalizes_raw_features(ds):
    dm = KuaiRecDataModule(ds, batch_size=64)
    dm.setup()
    m = _model(dm).eval()
    g = dm.graph
    rows = torch.arange(20)
    with torch.no_grad():
        x = m.node_embeddings()
        assert x.shape == (ds.n_users + ds.n_videos, 8)
        got = m.head_logits(x, g.user[rows], g.video[rows], g.edge_attr[rows])
        z = torch.nan_to_num((g.edge_attr[rows] - g.mu) / g.std, nan=0.0)
        want = m.gnn.score_edges(x, g.user[rows], g.video[rows] + ds.n_users, z)
        torch.testing.assert_close(got, want)
        # a missing raw value scores like the training mean
        raw = g.edge_attr[rows].clone()
        raw[:, 5] = float("nan")
        at_mean = raw.clone()
        at_mean[:, 5] = g.mu[5]
        torch.testing.assert_close(m.head_logits(x, g.user[rows], g.video[rows], raw),
                                   m.head_logits(x, g.user[rows], g.video[rows], at_mean))
        # one user against many videos broadcasts
        one = m.head_logits(x, g.user[:1], g.video[rows], g.edge_attr[rows])
        assert one.shape == (20, 4)
    assert m.mu.shape == (64,) and m.edge_index.shape == g.edge_index.shape
    assert list(m.hparams.feature_names) == ds.feature_names and m.hparams.n_videos == ds.n_videos


def test_predict_step_returns_probabilities(ds):
    dm = KuaiRecDataModule(ds, batch_size=64, eval_batch_size=128)
    dm.setup()
    m = _model(dm)
    preds = torch.cat(_trainer().predict(m, datamodule=dm))
    assert preds.shape == (len(ds.interactions), 4)
    assert bool(((preds > 0) & (preds < 1)).all())
    g = dm.graph
    with torch.no_grad():
        direct = m(g.user, g.video, g.edge_attr)
    torch.testing.assert_close(preds, direct)


def test_single_class_head_auc_is_undefined(ds):
    single = make_fake_dataset(n_users=30, n_videos=40, per_user=20, seed=2)
    single.interactions.loc[single.interactions.split == 1, "y_rewatch"] = 0  # val: rewatch never happens
    dm = KuaiRecDataModule(single, batch_size=64, eval_batch_size=50)
    dm.setup()
    m = _model(dm)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _trainer().validate(m, datamodule=dm, verbose=False)[0]
    assert "val/auc_rewatch" not in out
    assert out["val/auc_undefined"] == 1.0
    assert any("rewatch" in str(w.message) and "single class" in str(w.message) for w in caught)
    # the others equal sklearn's AUC on the same predictions; the mean excludes the undefined head
    preds = torch.cat(_trainer().predict(m, datamodule=KuaiRecDataModule(single, predict_split="val")))
    y = dm.graph.y[dm.split_rows("val")].numpy()
    aucs = {h: roc_auc_score(y[:, j], preds[:, j].numpy()) for j, h in enumerate(HEADS) if h != "rewatch"}
    for h, a in aucs.items():
        assert out[f"val/auc_{h}"] == pytest.approx(a, abs=1e-5)
    assert out["val/auc_mean"] == pytest.approx(np.mean(list(aucs.values())), abs=1e-5)


def test_fixed_seed_gives_identical_training(ds):
    def run(seed):
        dm = KuaiRecDataModule(ds, batch_size=64)
        dm.setup()
        m = _model(dm, seed=seed)
        _trainer(max_epochs=2, limit_val_batches=0).fit(m, datamodule=dm)
        return {k: v.clone() for k, v in m.state_dict().items()}

    a, b = run(7), run(7)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["gnn.node_emb.weight"], run(8)["gnn.node_emb.weight"])


def test_check_compatible_errors(ds):
    dm = KuaiRecDataModule(ds)
    dm.setup()
    m = _model(dm)
    check_compatible(m, ds)  # same dataset: fine
    other = make_fake_dataset(n_users=30, n_videos=41, per_user=5, seed=3)
    with pytest.raises(IncompatibleCheckpointError, match=r"n_videos 40 != dataset 41"):
        check_compatible(m, other)
    swapped = make_fake_dataset(n_users=30, n_videos=40, per_user=5, seed=3)
    names = list(swapped.feature_names)
    names[2], names[3] = names[3], names[2]
    swapped.feature_names = names
    with pytest.raises(IncompatibleCheckpointError, match="feature order differs at position 2") as e:
        check_compatible(m, swapped)
    assert "\n" not in str(e.value)
    fewer = make_fake_dataset(n_users=30, n_videos=40, per_user=5, seed=3)
    fewer.feature_names = names[:-1]
    with pytest.raises(IncompatibleCheckpointError, match="features differ"):
        check_compatible(m, fewer)
