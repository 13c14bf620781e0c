"""Graph tensors, the datamodule's batches and the GNN's message passing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv

from datamodules.datamodule import KuaiRecDataModule
from datamodules.graph import GraphError, build_graph, feature_stats, normalize_features
from datamodules.schema import LABEL_COLUMNS
from fake_dataset import make_fake_dataset
from lightning_modules.gnn import GNN, is_symmetric, normalized_adjacency

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ds():
    return make_fake_dataset(n_users=30, n_videos=50, per_user=25, seed=1)


@pytest.fixture(scope="module")
def graph(ds):
    return build_graph(ds)


def _pairs(users, videos):
    return set(zip(np.asarray(users).tolist(), np.asarray(videos).tolist()))


def test_message_passing_uses_training_edges_only(ds, graph):
    df = ds.interactions
    nu = ds.n_users
    ei = graph.edge_index
    assert ei.dtype == torch.int64 and ei.shape[0] == 2
    user_to_video = ei[:, ei[0] < nu]
    got = _pairs(user_to_video[0], user_to_video[1] - nu)
    train = df[df.split == 0]
    assert got == _pairs(train.user_id, train.video_id)
    only_eval = _pairs(df[df.split > 0].user_id, df[df.split > 0].video_id) - got
    assert only_eval, "fixture should have val/test pairs never seen in training"
    assert not (only_eval & got)


def test_edge_index_undirected_coalesced_offsets(ds, graph):
    ei = graph.edge_index
    nu, nv = ds.n_users, ds.n_videos
    src, dst = ei[0], ei[1]
    # bipartite with offsets: every edge joins a user (< nu) and a video node (nu .. nu+nv-1)
    assert bool(((src < nu) ^ (dst < nu)).all())
    assert int(ei.min()) >= 0 and int(ei.max()) < nu + nv
    fwd = set(zip(src.tolist(), dst.tolist()))
    assert fwd == set(zip(dst.tolist(), src.tolist()))            # undirected
    assert len(fwd) == ei.shape[1]                                # no duplicate pairs
    key = src * (nu + nv) + dst
    assert bool((key[1:] > key[:-1]).all())                       # sorted (coalesced order)
    n_train_rows = int((ds.interactions.split == 0).sum())
    assert ei.shape[1] < 2 * n_train_rows                         # fixture has repeat views to coalesce


def test_normalization_statistics_from_training_split(ds, graph):
    df = ds.interactions
    x = df.loc[df.split == 0, ds.feature_names].to_numpy(np.float64)
    mu = np.nanmean(x, axis=0)
    sd = np.nanstd(x, axis=0, ddof=1)
    sd[sd < 1e-6] = 1.0
    np.testing.assert_allclose(graph.mu.numpy(), mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(graph.std.numpy(), sd, rtol=1e-5, atol=1e-6)
    const = 12  # the fixture's constant column
    assert graph.std[const] == 1.0
    z = normalize_features(graph.edge_attr, graph.mu, graph.std)
    assert torch.isfinite(z).all()
    nan_mask = torch.isnan(graph.edge_attr)
    assert nan_mask.any() and bool((z[nan_mask] == 0).all())      # NaN -> 0 after normalization
    # per-split supervision edges keep raw features and labels
    val = graph.split_index["val"]
    np.testing.assert_array_equal(graph.y[val].numpy(), df.loc[df.split == 1, list(LABEL_COLUMNS)].to_numpy())
    np.testing.assert_array_equal(graph.video[val].numpy(), df.loc[df.split == 1, "video_id"].to_numpy())


def test_feature_stats_edge_cases():
    x = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, 5.0], [np.nan, np.nan, 5.0]], dtype=np.float32)
    mu, std = feature_stats(x)
    assert mu.tolist() == [2.0, 0.0, 5.0]
    assert std[0].item() == pytest.approx(np.sqrt(2.0)) and std[1] == 1.0 and std[2] == 1.0


def test_range_validation(ds):
    bad = make_fake_dataset(n_users=5, n_videos=6, per_user=4)
    bad.interactions.loc[0, "video_id"] = bad.n_videos  # one past the catalog
    with pytest.raises(GraphError, match="video_id out of range"):
        build_graph(bad)
    bad = make_fake_dataset(n_users=5, n_videos=6, per_user=4)
    bad.interactions.loc[1, "user_id"] = -1
    with pytest.raises(GraphError, match="user_id out of range"):
        build_graph(bad)


def test_datamodule_batches_cover_splits(ds):
    dm = KuaiRecDataModule(ds, batch_size=64, eval_batch_size=50)
    dm.setup("fit")
    seen = torch.cat([b["row"] for b in dm.train_dataloader()])
    assert sorted(seen.tolist()) == dm.split_rows("train").tolist()
    b = next(iter(dm.val_dataloader()))
    assert set(b) == {"user", "video", "x", "y", "row"}
    assert b["x"].shape == (50, 64) and b["y"].shape == (50, 4) and b["x"].dtype == torch.float32
    assert int(sum(len(b["row"]) for b in dm.predict_dataloader())) == len(ds.interactions)
    assert (dm.valid_test_sessions()["split"] == 2).all()


def test_gnn_equals_notebook_gcn_on_edge_index(graph):
    """Precomputed sparse normalization == the notebook's GCNConv(normalize=True) on the edge_index."""
    torch.manual_seed(0)
    n = graph.num_nodes
    gnn = GNN(n, 64, hidden_dim=8)
    ref = [GCNConv(8, 8) for _ in range(3)]
    for r, c in zip(ref, (gnn.gcn1, gnn.gcn2, gnn.gcn3)):
        r.load_state_dict(c.state_dict())
    x = gnn.node_emb.weight
    for r in ref:
        x = F.relu(r(x, graph.edge_index))
    adj = normalized_adjacency(graph.edge_index, n)
    got = gnn.encode_nodes(adj)
    torch.testing.assert_close(got, x, rtol=1e-5, atol=1e-6)
    # the symmetric fast path: same values and same gradients
    assert is_symmetric(graph.edge_index, n)
    fast = gnn.encode_nodes(adj, symmetric=True)
    torch.testing.assert_close(fast, x, rtol=1e-5, atol=1e-6)
    w = torch.randn_like(x)
    g_ref = torch.autograd.grad((x * w).sum(), gnn.node_emb.weight)[0]
    g_fast = torch.autograd.grad((fast * w).sum(), gnn.node_emb.weight)[0]
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-6)
    # the notebook's parameter names, so its state_dict loads unchanged
    assert {"node_emb.weight", "gcn1.lin.weight", "gcn1.bias", "edge_mlp.0.weight", "edge_mlp.6.bias"} <= set(
        gnn.state_dict())
    parts = gnn.first_linear_parts()
    assert parts["user"].shape == (128, 8) and parts["video"].shape == (128, 8) and parts["feat"].shape == (128, 64)


def test_real_tiny_world_graph(tiny_world, tmp_path):
    """The same invariants on the real pipeline's output (prepare_dataset on the tiny planted world)."""
    from datamodules.dataset import load_dataset, prepare_dataset

    real = load_dataset(prepare_dataset(tiny_world, cache_root=tmp_path / "processed"))
    g = build_graph(real)
    df = real.interactions
    nu = real.n_users
    fwd = g.edge_index[:, g.edge_index[0] < nu]
    train = df[df.split == 0]
    assert _pairs(fwd[0], fwd[1] - nu) == _pairs(train.user_id, train.video_id)
    assert g.edge_index.shape[1] == 2 * fwd.shape[1]
    assert g.edge_attr.shape == (len(df), 64) and g.y.shape == (len(df), 4)
    assert torch.isfinite(normalize_features(g.edge_attr, g.mu, g.std)).all()


def test_residual_option_same_on_both_paths(graph):
    torch.manual_seed(1)
    gnn = GNN(graph.num_nodes, 64, hidden_dim=8, residual=True)
    adj = normalized_adjacency(graph.edge_index, graph.num_nodes)
    x0 = gnn.node_emb.weight
    x = x0
    for conv in (gnn.gcn1, gnn.gcn2, gnn.gcn3):
        x = F.relu(conv(x, adj)) + x
    torch.testing.assert_close(gnn.encode_nodes(adj, symmetric=True), x, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gnn.encode_nodes(adj), x)
