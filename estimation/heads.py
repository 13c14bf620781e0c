"""Head probabilities for every (valid test session, catalog video): the input of every objective.

A candidate's edge features are counterfactual, as in the notebook: the session's first-row session features
(author history set to defaults), the user's features and the candidate video's features. The edge MLP's first
layer is linear in [h_user, h_video, features], and the features split into a session+user part and a video
part, so we compute that layer once per session and once per video and only run the rest of the MLP per pair:
relu(a_s + c_v), then the 128->128->64->4 tail as large 2-D matmuls (addmm into preallocated buffers, blocks of
~2k pairs that stay in cache). That halves the FLOPs per pair (24.8k MACs instead of 49.4k) and removes all
per-session feature frames.

Precision: "bf16" is split bf16 (bf16x3, see `PairKernel`): bf16 matmul units at close to fp32 accuracy, at 3x
the inner dimension, so it pays only where bf16 matmuls are more than ~3x faster than fp32 (CUDA tensor cores,
AMX). "auto" (default) picks it on CUDA with bf16 and, on a CPU, only where a short measurement of the split
matmul against the fp32 one at the kernel's shape says it is faster (`bf16_is_fast`): on an AVX2 CPU bf16 is
emulated, and on an AVX512-BF16 CPU (measured: plain bf16 2.2x fp32, split bf16 3x slower than fp32) it does not
pay either. Plain single-pass bf16 is not offered: it changes too many top-K sets.

Device: `device=None` = CUDA when available, else CPU. On CPU, `workers` processes (default: the number of
cores, for predictions of more than ~20M pairs) each fill a range of sessions of the memory-mapped output.

Results go to a float16 .npy file, memory-mapped, keyed by checkpoint, dataset, sessions and precision, written
atomically (a temporary file renamed into place: a crash never leaves a cache file behind).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from datamodules.dataset import _pid_alive  # one liveness check for every atomic cache

from datamodules.schema import FEATURE_NAMES, I_COLUMNS, SESSION_COLUMNS, U_COLUMNS

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16")
PARALLEL_MIN_PAIRS = 20_000_000   # below this, worker start-up (torch import, ~5-20 s) is not worth it


@dataclass
class SessionHeads:
    """probs[s, v, h]: head h of video v for session session_keys[s]; k[s] = the session's length."""

    probs: np.ndarray  # [S, V, 4] float16 (memory-mapped) or float32
    session_keys: np.ndarray  # int64 [S]
    user_ids: np.ndarray  # int64 [S]
    k: np.ndarray  # int64 [S]


def default_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_is_fast(device=None) -> bool:
    """Whether split bf16 beats fp32 on `device`: CUDA with bf16 support; on a CPU, measured once per process
    (`_cpu_split_speedup`, ~0.1 s) because CPU flags do not tell it: AVX512-BF16 has bf16 units that are too
    slow for three passes, AMX has fast ones."""
    device = default_device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return _cpu_split_speedup() >= SPLIT_MIN_SPEEDUP
    return False


SPLIT_MIN_SPEEDUP = 1.25   # split bf16 must be this much faster than fp32 to be picked by "auto" on a CPU


@functools.lru_cache(maxsize=1)
def _cpu_split_speedup(m: int = 2048, d: int = 128, reps: int = 6) -> float:
    """fp32 time / split-bf16 time of one [m, d] x [d, d] hidden-layer matmul of the kernel, single thread,
    best of `reps` (the margin between CPUs is large: ~0.3x on AVX2 and AVX512-BF16, several x on AMX)."""
    import time

    cpu = torch.cpu
    flags = [getattr(cpu, f, lambda: False)() for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if not (torch.backends.mkldnn.is_available() and any(flags)):
        return 0.0                                   # no bf16 unit at all: emulated, never faster
    g = torch.Generator().manual_seed(0)
    h, w, b = torch.randn(m, d, generator=g), torch.randn(d, d, generator=g), torch.zeros(d)
    hs = torch.cat([h, h, h], 1).bfloat16().float()  # bf16-exact operands, as the split kernel has them
    ws = torch.cat([w, w, w], 0).bfloat16().float()
    o = torch.empty(m, d)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def best(fn):
            fn()
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            return min(ts)

        t32 = best(lambda: torch.addmm(b, h, w, out=o))
        with _bf16_fp32_math():
            tsplit = best(lambda: torch.addmm(b, hs, ws, out=o))
    finally:
        torch.set_num_threads(old_threads)
    ratio = t32 / max(tsplit, 1e-9)
    log.info("split bf16 vs fp32 on this CPU: %.2fx (auto picks split bf16 at >= %.2fx)", ratio, SPLIT_MIN_SPEEDUP)
    return ratio


def resolve_precision(precision: str = "auto", device=None) -> str:
    """'fp32' or 'bf16': 'auto' picks bf16 only where it is fast (see `bf16_is_fast`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if precision == "bf16" and not bf16_is_fast(device):
        log.warning("bf16 requested on %s, where split bf16 is slower than fp32 (no AMX or tensor cores): expect "
                    "it to be ~3x slower",
                    default_device(device))
    return precision


def _dtype(precision, device=None) -> torch.dtype:
    """torch dtype of a precision name ('auto' resolved for `device`) or of a torch dtype."""
    if isinstance(precision, torch.dtype):
        return precision
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[resolve_precision(precision, device)]


def _feature_positions(feature_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = {n: i for i, n in enumerate(feature_names)}
    missing = [n for n in FEATURE_NAMES if n not in pos]
    if missing:
        raise ValueError(f"model features lack {missing[:3]}: retrain the GNN on this dataset")
    return (
        np.array([pos[c] for c in SESSION_COLUMNS]),
        np.array([pos[c] for c in U_COLUMNS]),
        np.array([pos[c] for c in I_COLUMNS]),
    )


def _normalize(raw: torch.Tensor, mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num((raw - mu) / std, nan=0.0)


def _tail_layers(mlp_tail) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """The edge MLP after its first Linear, which must be ReLU, (Linear, ReLU)*, Linear: [(W.T, b, relu)]."""
    mods = list(mlp_tail)
    if not mods or not isinstance(mods[0], torch.nn.ReLU):
        raise ValueError("the edge MLP must continue with a ReLU after its first Linear")
    layers = []
    for m in mods[1:]:
        if isinstance(m, torch.nn.Linear):
            layers.append([m.weight.detach().float().T.contiguous(), m.bias.detach().float().clone(), False])
        elif isinstance(m, torch.nn.ReLU) and layers:
            layers[-1][2] = True
        else:
            raise ValueError(f"unsupported edge MLP layer {m!r}")
    return [tuple(x) for x in layers]


class HeadPredictor:
    """Scores sessions x catalog with a trained HeadModel, reusing the per-session and per-video parts.

    dtype: torch.float32 / torch.bfloat16 or 'auto' / 'fp32' / 'bf16'. device: None = CUDA if available.
    block: pairs per step (CPU: ~2k keeps the activations in cache; GPU: large).
    """

    def __init__(self, model, dataset, dtype=torch.float32, device=None, block: int | None = None):
        self.model = model.eval()
        self.dataset = dataset
        self.device = default_device(device)
        self.dtype = _dtype(dtype, self.device)
        self.block = block or (2048 if self.device.type == "cpu" else 1 << 20)
        self.sess_pos, self.user_pos, self.item_pos = _feature_positions(list(model.feature_names))
        mlp = model.gnn.edge_mlp
        first = mlp[0]
        hidden = (first.in_features - len(model.feature_names)) // 2
        mu, std = model.mu.reshape(-1).float().cpu(), model.std.reshape(-1).float().cpu()
        w = first.weight.detach().float().cpu()
        w_user, w_video, w_feat = w[:, :hidden], w[:, hidden : 2 * hidden], w[:, 2 * hidden :]
        with torch.no_grad():
            x = model.node_embeddings().float().cpu()
        self.n_users = int(model.n_users)
        self.h_user = x[: self.n_users]
        items = torch.tensor(dataset.item_features[I_COLUMNS].to_numpy(np.float32))
        e_item = _normalize(items, mu[self.item_pos], std[self.item_pos])
        with torch.no_grad():
            # per-video part of the first layer: [V, D1]
            self.video_part = x[self.n_users :] @ w_video.T + e_item @ w_feat[:, self.item_pos].T
        self.w_user = w_user
        self.w_sess = w_feat[:, self.sess_pos]
        self.w_ufeat = w_feat[:, self.user_pos]
        self.bias = first.bias.detach().float().cpu()
        self.mu, self.std = mu, std
        users = torch.tensor(dataset.user_features[U_COLUMNS].to_numpy(np.float32))
        self.e_user = _normalize(users, mu[self.user_pos], std[self.user_pos])
        self.layers = _tail_layers(mlp[1:])
        # per-node logit offsets (HeadModel node_bias): added after the MLP, per user and per video
        nb = getattr(model.gnn, "node_bias", None)
        self.node_bias = None if nb is None else nb.weight.detach().float().cpu()
        self.video_bias = None if nb is None else self.node_bias[self.n_users :].contiguous()

    @property
    def n_videos(self) -> int:
        return int(self.video_part.shape[0])

    @torch.no_grad()
    def session_part(self, user_ids: np.ndarray, session_keys: np.ndarray) -> torch.Tensor:
        """The first layer's per-session part [n, D1]: user embedding, user features and session features."""
        sess = self.dataset.sessions.loc[session_keys, SESSION_COLUMNS].to_numpy(np.float32)
        e_sess = _normalize(torch.tensor(sess), self.mu[self.sess_pos], self.std[self.sess_pos])
        u = torch.from_numpy(np.array(user_ids, dtype=np.int64))
        return self.h_user[u] @ self.w_user.T + self.e_user[u] @ self.w_ufeat.T + e_sess @ self.w_sess.T + self.bias

    def session_bias(self, user_ids: np.ndarray) -> torch.Tensor | None:
        """The users' logit offsets [n, 4], or None for a model without node biases."""
        if self.node_bias is None:
            return None
        return self.node_bias[torch.from_numpy(np.array(user_ids, dtype=np.int64))].contiguous()

    def kernel(self) -> "PairKernel":
        return PairKernel(self.video_part, self.layers, self.dtype, self.device, self.block, self.video_bias)

    @torch.no_grad()
    def predict(self, user_ids: np.ndarray, session_keys: np.ndarray, out: np.ndarray, chunk: int | None = None) -> None:
        """Fill out[s, v, :] with head probabilities for the given sessions."""
        sp = self.session_part(user_ids, session_keys)
        self.kernel().run(sp, out, session_bias=self.session_bias(user_ids))


class PairKernel:
    """relu(a_s + c_v) -> MLP tail -> sigmoid for every (session, video) pair: the hot loop, free of the model
    and dataset (so worker processes get only these tensors).

    dtype float32: plain fp32 addmm. dtype bfloat16: "split bf16" (bf16x3): every hidden-layer input h and weight
    W is split into a bf16 head and a bf16 tail (h = hh + hl + O(2^-17 h)), and h @ W ~ hh@Wh + hl@Wh + hh@Wl is ONE
    bf16 matmul with a 3x longer inner dimension, [hh | hl | hh] @ [Wh; Wh; Wl], accumulated and returned in fp32
    (CUDA: out_dtype=float32; CPU: fp32 operands that are exact bf16 values under oneDNN's bf16 fp32-math mode,
    which runs them on AMX / AVX512-BF16 without rounding). Single-pass bf16 rounds every activation to 8 bits and
    changed the top-K sets of 20-30% of the sessions in our tests (probabilities off by up to 0.1); split bf16
    stays within ~1e-5..1e-4 of fp32. The last layer (64 -> 4) and everything elementwise run in fp32.
    """

    def __init__(self, video_part, layers, dtype=torch.float32, device="cpu", block: int = 2048, video_bias=None):
        self.device = torch.device(device)
        self.video_bias = None if video_bias is None else video_bias.to(self.device, torch.float32)  # [V, 4] logits
        self.split = dtype == torch.bfloat16
        self.dtype = dtype
        self.block = int(block)
        self.vp = video_part.to(self.device, torch.float32)
        mm_dtype = torch.bfloat16 if (self.split and self.device.type == "cuda") else torch.float32
        self.layers = []
        for i, (w, b, relu) in enumerate(layers):
            w = w.to(self.device, torch.float32)
            if self.split and i < len(layers) - 1:
                wh = w.to(torch.bfloat16)
                wl = (w - wh.float()).to(torch.bfloat16)
                w = torch.cat([wh, wh, wl], 0).to(mm_dtype).contiguous()   # [3 * in, out]
            self.layers.append((w, b.to(self.device, torch.float32), relu))
        # a narrow last layer (64 -> 4) is ~2x faster as W @ h.T (output [4, m]) than as h @ W.T on MKL
        w_last, b_last, relu_last = self.layers[-1]
        self.narrow_last = w_last.shape[1] < 16 and not relu_last
        self.last_t = (w_last.T.contiguous(), b_last[:, None].contiguous())

    def _split_into(self, h: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        """[hh | hl | hh] of h (fp32 [m, d]) into buf [m, 3d] (bf16 on CUDA, bf16-exact fp32 on CPU)."""
        d = h.shape[1]
        hh = h.to(torch.bfloat16)
        buf[:, :d] = hh
        buf[:, d : 2 * d] = (h - hh.float()).to(torch.bfloat16)
        buf[:, 2 * d :] = buf[:, :d]
        return buf

    def _split_mm(self, xs: torch.Tensor, w: torch.Tensor, b: torch.Tensor, o: torch.Tensor) -> None:
        """o = b + xs @ w with fp32 accumulation and output (xs, w: split operands)."""
        if self.device.type == "cuda":
            try:
                torch.add(torch.mm(xs, w, out_dtype=torch.float32), b, out=o)
                return
            except (TypeError, RuntimeError):  # no bf16 -> fp32 mm here: exact fp32 products of the bf16 parts
                torch.addmm(b, xs.float(), w.float(), out=o)
                return
        with _bf16_fp32_math():
            torch.addmm(b, xs, w, out=o)

    @torch.no_grad()
    def run(self, session_part: torch.Tensor, out: np.ndarray, progress=None, session_bias=None) -> None:
        """out[s, v, :] = probabilities for session part row s and every video (out: [n, V, 4] numpy, any float
        dtype, may be a memmap). session_bias [n, 4] (and the kernel's video_bias) are added to the logits."""
        V, D1 = self.vp.shape
        n = session_part.shape[0]
        sp = session_part.to(self.device, torch.float32)
        sb = None if session_bias is None else session_bias.to(self.device, torch.float32)
        ns = max(1, self.block // V)                           # sessions per step (small catalogs)
        vb = min(V, self.block)                                # videos per step
        m_max = ns * vb
        widths = [D1] + [w.shape[1] for w, _, _ in self.layers]
        bufs = [torch.empty((m_max, d), dtype=torch.float32, device=self.device) for d in widths]
        if self.narrow_last:
            bufs[-1] = torch.empty((widths[-1], m_max), dtype=torch.float32, device=self.device)  # transposed
        split_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        sbufs = [torch.empty((m_max, 3 * d), dtype=split_dtype, device=self.device) if self.split else None
                 for d in widths]
        rows = max(ns, min(n, max(1, (1 << 22) // (V * 4))))  # sessions per output write (~16 MB float32)
        res = torch.empty((rows, V, widths[-1]), dtype=torch.float32, device=self.device)
        # the narrow last layer's [4, m] output goes to res_t[s, :, v] as contiguous rows; one transpose per
        # write-out instead of a strided [m, 4] copy per block (measured ~10% of the kernel on CPU)
        res_t = (torch.empty((rows, widths[-1], V), dtype=torch.float32, device=self.device)
                 if self.narrow_last else None)
        last = len(self.layers) - 1
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            for s0 in range(r0, r1, ns):
                s1 = min(r1, s0 + ns)
                for v0 in range(0, V, vb):
                    v1 = min(V, v0 + vb)
                    m = (s1 - s0) * (v1 - v0)
                    x = bufs[0][:m]
                    torch.add(self.vp[v0:v1][None], sp[s0:s1, None], out=x.view(s1 - s0, v1 - v0, D1))
                    h = x.relu_()
                    for i, (w, b, relu) in enumerate(self.layers):
                        if i == last and self.narrow_last:
                            o = bufs[i + 1][:, :m]
                            torch.addmm(self.last_t[1], self.last_t[0], h.T, out=o)
                            res_t[s0 - r0 : s1 - r0, :, v0:v1] = o.view(-1, s1 - s0, v1 - v0).transpose(0, 1)
                            h = None
                            continue
                        o = bufs[i + 1][:m]
                        if self.split and i < last:
                            self._split_mm(self._split_into(h, sbufs[i][:m]), w, b, o)
                        else:
                            torch.addmm(b, h, w, out=o)
                        h = o.relu_() if relu else o
                    if h is not None:
                        res[s0 - r0 : s1 - r0, v0:v1] = h.reshape(s1 - s0, v1 - v0, -1)
            if res_t is not None:
                res[: r1 - r0].copy_(res_t[: r1 - r0].transpose(1, 2))
            if self.video_bias is not None:
                res[: r1 - r0] += self.video_bias[None]
            if sb is not None:
                res[: r1 - r0] += sb[r0:r1, None]
            block = torch.sigmoid_(res[: r1 - r0])
            if out.dtype == np.float16:
                block = block.half()
            out[r0:r1] = block.cpu().numpy()
            if progress is not None:
                progress(r1, n)


class _bf16_fp32_math:
    """oneDNN fp32 matmuls in bf16 math (AMX / AVX512-BF16) for a block; exact for operands that are bf16
    values, accumulation and output in fp32. Where the CPU has no bf16 unit the setting has no effect."""

    def __enter__(self):
        mm = getattr(torch.backends.mkldnn, "matmul", None)
        self.old = getattr(mm, "fp32_precision", None)
        if self.old is not None:
            mm.fp32_precision = "bf16"

    def __exit__(self, *exc):
        if self.old is not None:
            torch.backends.mkldnn.matmul.fp32_precision = self.old


def _kernel_job(job) -> int:
    """Worker process: fill rows [lo, hi) of the memory-mapped output .npy at `path`."""
    torch.set_num_threads(1)
    kernel = PairKernel(job["video_part"], job["layers"], job["dtype"], "cpu", job["block"], job.get("video_bias"))
    out = np.load(job["path"], mmap_mode="r+")
    kernel.run(job["session_part"], out[job["lo"]:job["hi"]], session_bias=job.get("session_bias"))
    out.flush()
    return job["hi"] - job["lo"]


@torch.no_grad()
def predict_pairs_reference(model, dataset, user_id: int, session_key: int, video_ids: np.ndarray) -> np.ndarray:
    """Straightforward path (full 64-column feature rows through the whole MLP): the check for HeadPredictor."""
    sess = dataset.sessions.loc[session_key]
    frame = dataset.item_features.loc[video_ids, I_COLUMNS].copy()
    for c in U_COLUMNS:
        frame[c] = dataset.user_features.loc[user_id, c]
    for c in SESSION_COLUMNS:
        frame[c] = sess[c]
    raw = torch.tensor(frame[list(model.feature_names)].to_numpy(np.float32))
    x = model.node_embeddings()
    users = torch.full((len(video_ids),), int(user_id), dtype=torch.long)
    videos = torch.as_tensor(video_ids, dtype=torch.long)
    return torch.sigmoid(model.head_logits(x, users, videos, raw)).numpy()


def heads_cache_key(checkpoint_path: Path, dataset_id: str, session_keys: np.ndarray, dtype: str) -> str:
    """Cache key of a heads file: checkpoint bytes, dataset id, the sessions and the (resolved) precision."""
    h = hashlib.sha256()
    with open(checkpoint_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(dataset_id.encode())
    h.update(np.ascontiguousarray(session_keys, dtype=np.int64).tobytes())
    h.update(dtype.encode())
    return h.hexdigest()[:16]


def _remove_stale_tmp(path: Path) -> None:
    """Temporary files of this cache entry left by a killed process (its pid no longer runs)."""
    for tmp in path.parent.glob(f"{path.stem}.tmp*.npy"):
        pid = tmp.suffixes[-2][4:] if len(tmp.suffixes) >= 2 else ""
        if pid.isdigit() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def predict_session_heads(
    model,
    dataset,
    session_keys: np.ndarray,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
    dtype=torch.float32,
    progress=None,
    device=None,
    workers: int | None = None,
    cache_dtype=np.float16,
) -> SessionHeads:
    """Head probabilities of every catalog video for each session; cached as float16 when cache_dir is given.

    dtype: torch dtype or 'auto' / 'fp32' / 'bf16'; device: None = CUDA if available; workers: CPU processes
    (None: all cores when the prediction has more than PARALLEL_MIN_PAIRS pairs and is cached to disk).
    cache_dtype: float16 (default, 5.7 GB at KuaiRec size) or float32 (twice that). Note: rounding to float16
    alone changed the top-K set of ~3% of sessions (worst weight vector 6%) against float32 on KuaiRec-like
    synthetic heads, more than split bf16 does (0.1%)."""
    session_keys = np.asarray(session_keys, dtype=np.int64)
    sessions = dataset.sessions.loc[session_keys]
    user_ids = sessions["user_id"].to_numpy().astype(np.int64)
    k = sessions["sess_len"].to_numpy().astype(np.int64)
    shape = (len(session_keys), int(dataset.n_videos), 4)
    if cache_dir is not None and cache_key is not None:
        cache_dtype = np.dtype(cache_dtype)
        if cache_dtype not in (np.float16, np.float32):
            raise ValueError(f"cache_dtype must be float16 or float32, got {cache_dtype}")
        suffix = "" if cache_dtype == np.float16 else "-f32"
        path = Path(cache_dir) / f"heads-{cache_key}{suffix}.npy"
        if path.exists():
            try:  # a file cut short (full disk, copied half) does not open: recompute it instead of failing
                probs = np.load(path, mmap_mode="r")
            except (OSError, ValueError, EOFError) as e:
                log.warning("warning: heads cache %s is unreadable (%s): recomputing it", path, e)
                probs = None
            if probs is not None and probs.shape == shape and probs.dtype == cache_dtype:
                return SessionHeads(probs, session_keys, user_ids, k)
            del probs  # os.replace below swaps the file under this map; it is not used again
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(path)
        tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=cache_dtype, shape=shape)
        try:
            _fill(model, dataset, user_ids, session_keys, out, dtype, progress, device, workers, tmp)
            out.flush()
            del out
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return SessionHeads(np.load(path, mmap_mode="r"), session_keys, user_ids, k)
    out = np.empty(shape, dtype=np.float32)
    _fill(model, dataset, user_ids, session_keys, out, dtype, progress, device, 1, None)
    return SessionHeads(out, session_keys, user_ids, k)


def _fill(model, dataset, user_ids, session_keys, out, dtype, progress, device=None, workers=None,
          path: Path | None = None) -> None:
    predictor = HeadPredictor(model, dataset, dtype=dtype, device=device)
    sp = predictor.session_part(user_ids, session_keys)
    sb = predictor.session_bias(user_ids)
    S, V = len(session_keys), predictor.n_videos
    if workers is None:
        workers = (os.cpu_count() or 1) if S * V >= PARALLEL_MIN_PAIRS else 1
    if predictor.device.type == "cpu" and workers > 1 and path is not None and S >= 2 * workers:
        from estimation.parallel import run_jobs

        if hasattr(out, "flush"):
            out.flush()
        bounds = np.linspace(0, S, workers + 1).astype(np.int64)
        jobs = [dict(video_part=predictor.video_part, layers=predictor.layers, dtype=predictor.dtype,
                     block=predictor.block, path=str(path), lo=int(lo), hi=int(hi), session_part=sp[lo:hi].clone(),
                     video_bias=predictor.video_bias, session_bias=None if sb is None else sb[lo:hi].clone())
                for lo, hi in zip(bounds[:-1], bounds[1:])]
        run_jobs("estimation.heads", "_kernel_job", jobs, workers)
        if progress is not None:
            progress(S, S)
        return
    predictor.kernel().run(sp, out, progress, session_bias=sb)


def video_embeddings(model) -> np.ndarray:
    """The GNN's video node embeddings [n_videos, H], used by the embedding objective."""
    with torch.no_grad():
        x = model.node_embeddings().float()
    return x[int(model.n_users) :].numpy()


def sessions_frame(heads: SessionHeads) -> pd.DataFrame:
    return pd.DataFrame({"session_key": heads.session_keys, "user_id": heads.user_ids, "k": heads.k})
