"""Head prediction (estimation/heads.py): the split first layer against the straightforward full-MLP path, split
bf16 against fp32 (top-K sets and probabilities), the float16 cache (hit returns equal values, a crash mid-write
leaves no cache file), worker processes, precision resolution. Small random models and feature tables."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from synth import random_head_model, synth_feature_dataset  # noqa: E402

from estimation import heads as H  # noqa: E402
from estimation.ranking import Ranker  # noqa: E402
from estimation.search_space import get_space  # noqa: E402

torch.set_num_threads(1)


def _world(S=40, V=300, U=50, seed=0, scale=1.0):
    ds = synth_feature_dataset(U, V, S, seed=seed)
    m = random_head_model(ds, hidden=16, n_edges=600, seed=seed)
    if scale != 1.0:  # larger weights: logits spread like a trained model's (probabilities over ~0.05..0.95)
        with torch.no_grad():
            for layer in m.gnn.edge_mlp:
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.mul_(scale)
    return ds, m


def test_split_first_layer_matches_full_mlp():
    ds, m = _world(S=6)
    keys = np.arange(6)
    got = H.predict_session_heads(m, ds, keys).probs
    users = ds.sessions["user_id"].to_numpy()
    ref = np.stack([H.predict_pairs_reference(m, ds, int(users[s]), int(s), np.arange(300)) for s in keys])
    assert got.dtype == np.float32 and got.shape == (6, 300, 4)
    np.testing.assert_allclose(got, ref, atol=2e-6)


def test_node_biases_are_added_per_user_and_per_video():
    """A model with per-node logit offsets: the fast path equals the full-MLP path, and the offsets matter."""
    ds, m = _world(S=5, V=80)
    assert m.gnn.node_bias is not None and float(m.gnn.node_bias.weight.abs().max()) > 0.5
    keys = np.arange(5)
    users = ds.sessions["user_id"].to_numpy()
    got = H.predict_session_heads(m, ds, keys).probs
    ref = np.stack([H.predict_pairs_reference(m, ds, int(users[s]), int(s), np.arange(80)) for s in keys])
    np.testing.assert_allclose(got, ref, atol=2e-6)
    with torch.no_grad():
        m.gnn.node_bias.weight.zero_()
    assert np.abs(H.predict_session_heads(m, ds, keys).probs - got).max() > 0.05


def test_small_blocks_and_session_grouping_give_the_same_values():
    ds, m = _world(S=12, V=50)
    pred = H.HeadPredictor(m, ds)
    keys = np.arange(12)
    users = ds.sessions.loc[keys, "user_id"].to_numpy()
    sp = pred.session_part(users, keys)
    outs = []
    for block in (7, 50, 2048):  # video blocks inside a session; several sessions per block
        out = np.empty((12, 50, 4), np.float32)
        H.PairKernel(pred.video_part, pred.layers, torch.float32, "cpu", block, pred.video_bias).run(
            sp, out, session_bias=pred.session_bias(users))
        outs.append(out)
    np.testing.assert_allclose(outs[0], outs[2], atol=1e-6)
    np.testing.assert_allclose(outs[1], outs[2], atol=1e-6)


def test_bf16_top_k_sets_match_fp32():
    """Split bf16 (the 'bf16' precision): top-K sets identical to fp32 on >= 99% of sessions for every weight
    vector tried, probabilities within 0.01 (measured: ~1e-4)."""
    S, V = 200, 600
    ds, m = _world(S=S, V=V, seed=1, scale=3.0)
    keys = np.arange(S)
    p32 = H.predict_session_heads(m, ds, keys, dtype="fp32").probs
    p16 = H.predict_session_heads(m, ds, keys, dtype="bf16").probs
    assert 0.02 < p32.std() and p32.min() < 0.1 and p32.max() > 0.9   # a spread like real heads, not all ~0.5
    assert np.abs(p16 - p32).max() <= 0.01
    k = ds.sessions.loc[keys, "sess_len"].to_numpy()
    W = get_space("constrained").to_w(np.random.default_rng(0).normal(size=(12, 3)))
    a, b = Ranker(p32, k).topk(W), Ranker(p16, k).topk(W)
    for i in range(len(W)):
        same = np.mean([set(a.session(s, i)) == set(b.session(s, i)) for s in range(S)])
        assert same >= 0.99, (W[i], same)


def test_precision_resolution():
    assert H.resolve_precision("fp32") == "fp32"
    assert H.resolve_precision("auto", "cpu") == ("bf16" if H.bf16_is_fast("cpu") else "fp32")
    # auto picks split bf16 on a CPU only where it was measured faster than fp32 here (not from CPU flags: on
    # AVX512-BF16 the three bf16 passes are ~3x slower than one fp32 pass)
    speedup = H._cpu_split_speedup()
    assert speedup >= 0.0 and np.isfinite(speedup)
    assert H.bf16_is_fast("cpu") == (speedup >= H.SPLIT_MIN_SPEEDUP)
    with pytest.raises(ValueError):
        H.resolve_precision("fp8")


def test_cache_hit_returns_equal_values(tmp_path):
    ds, m = _world(S=20, V=80)
    keys = np.arange(20)
    first = H.predict_session_heads(m, ds, keys, cache_dir=tmp_path, cache_key="k1")
    assert isinstance(first.probs, np.memmap) and first.probs.dtype == np.float16
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["heads-k1.npy"]
    mtime = (tmp_path / "heads-k1.npy").stat().st_mtime_ns
    second = H.predict_session_heads(m, ds, keys, cache_dir=tmp_path, cache_key="k1")
    assert (tmp_path / "heads-k1.npy").stat().st_mtime_ns == mtime            # read, not rewritten
    np.testing.assert_array_equal(np.asarray(second.probs), np.asarray(first.probs))
    fresh = H.predict_session_heads(m, ds, keys).probs                      # float32, no cache
    np.testing.assert_array_equal(np.asarray(second.probs), fresh.astype(np.float16))
    np.testing.assert_array_equal(second.k, ds.sessions.loc[keys, "sess_len"].to_numpy())
    f32 = H.predict_session_heads(m, ds, keys, cache_dir=tmp_path, cache_key="k1", cache_dtype=np.float32)
    assert f32.probs.dtype == np.float32 and (tmp_path / "heads-k1-f32.npy").exists()
    np.testing.assert_array_equal(np.asarray(f32.probs), fresh)


def test_a_truncated_cache_file_is_recomputed(tmp_path, caplog):
    """A heads cache cut short (a full disk, half a copy) raised `mmap length is greater than file size` on every
    later run (review 3, #3); now it is recomputed with a warning."""
    ds, m = _world(S=20, V=80)
    keys = np.arange(20)
    first = np.asarray(H.predict_session_heads(m, ds, keys, cache_dir=tmp_path, cache_key="cut").probs).copy()
    path = tmp_path / "heads-cut.npy"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    again = H.predict_session_heads(m, ds, keys, cache_dir=tmp_path, cache_key="cut")
    np.testing.assert_array_equal(np.asarray(again.probs), first)
    assert path.stat().st_size == size and "unreadable" in caplog.text
    path.write_bytes(b"not a numpy file")
    np.testing.assert_array_equal(np.asarray(H.predict_session_heads(m, ds, keys, cache_dir=tmp_path,
                                                                      cache_key="cut").probs), first)


def test_crash_mid_write_leaves_no_cache_file(tmp_path, monkeypatch):
    ds, m = _world(S=20, V=80)
    keys = np.arange(20)
    real_run = H.PairKernel.run

    def crash(self, session_part, out, progress=None, session_bias=None):
        real_run(self, session_part[:5], out[:5], session_bias=session_bias[:5])          # some rows written, then the process "dies"
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(H.PairKernel, "run", crash)
    with pytest.raises(KeyboardInterrupt):
        H.predict_session_heads(m, ds, keys, cache_dir=tmp_path, cache_key="k2")
    assert list(tmp_path.iterdir()) == []                   # no cache file, no temporary file
    monkeypatch.setattr(H.PairKernel, "run", real_run)
    # a process killed outright leaves its temporary file (never the cache file): the next run removes it
    stale = tmp_path / "heads-k2.tmp999999999.npy"
    stale.write_bytes(b"partial")
    heads = H.predict_session_heads(m, ds, keys, cache_dir=tmp_path, cache_key="k2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heads-k2.npy"]
    assert heads.probs.shape == (20, 80, 4)


def test_worker_processes_fill_the_same_file(tmp_path):
    ds, m = _world(S=16, V=60)
    keys = np.arange(16)
    one = H.predict_session_heads(m, ds, keys, cache_dir=tmp_path / "a", cache_key="w", workers=1)
    two = H.predict_session_heads(m, ds, keys, cache_dir=tmp_path / "b", cache_key="w", workers=2)
    np.testing.assert_array_equal(np.asarray(one.probs), np.asarray(two.probs))
