"""HeadModel: the GNN head model as a LightningModule (CONTRACTS section 4).

It owns everything scoring needs, so a checkpoint alone can score any (user, video, raw features) triple:
hparams (plain types only, so ``torch.load(weights_only=True)`` works): feature_names, n_users, n_videos,
hidden_dim, mlp_dims, lr, weight_decay, n_mp_edges, dataset_id; buffers: mu, std (training-split feature
statistics) and edge_index (message passing over training interactions, undirected, coalesced).

Batches (from ``KuaiRecDataModule``) are dicts: user [B] (user ids), video [B] (video ids, not offset),
x [B, F] raw features (NaN allowed), y [B, 4] labels, row [B] interaction row positions.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.classification import BinaryAUROC

from datamodules.schema import HEADS
from lightning_modules.gnn import GNN, is_symmetric, normalized_adjacency

STAGES = ("val", "test")


class ClassCounts(Metric):
    """Positives and totals per head (synced across processes), to tell whether a head's AUC is defined."""

    full_state_update = False

    def __init__(self, n_heads: int = len(HEADS)):
        super().__init__()
        self.add_state("pos", default=torch.zeros(n_heads, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, y: torch.Tensor) -> None:
        self.pos += (y > 0.5).sum(dim=0).long()
        self.total += y.shape[0]

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pos, self.total


class HeadModel(pl.LightningModule):
    def __init__(self, feature_names: Sequence[str], n_users: int, n_videos: int, hidden_dim: int = 64,
                 mlp_dims: Sequence[int] = (128, 128, 64), lr: float = 1e-3, weight_decay: float = 0.0,
                 n_mp_edges: int = 0, dataset_id: str = "", emb_lr_mult: float = 10.0, emb_init_std: float = 0.1,
                 residual: bool = False, node_bias: bool = False,
                 mu: torch.Tensor | None = None, std: torch.Tensor | None = None,
                 edge_index: torch.Tensor | None = None):
        super().__init__()
        feature_names = [str(f) for f in feature_names]
        if edge_index is not None:
            n_mp_edges = int(edge_index.shape[1])
        self.save_hyperparameters({
            "feature_names": feature_names, "n_users": int(n_users), "n_videos": int(n_videos),
            "hidden_dim": int(hidden_dim), "mlp_dims": [int(d) for d in mlp_dims], "lr": float(lr),
            "weight_decay": float(weight_decay), "n_mp_edges": int(n_mp_edges), "dataset_id": str(dataset_id),
            "emb_lr_mult": float(emb_lr_mult), "emb_init_std": float(emb_init_std), "residual": bool(residual),
            "node_bias": bool(node_bias),
        })
        n_feat = len(feature_names)
        self.feature_names = feature_names
        self.n_users, self.n_videos = int(n_users), int(n_videos)
        self.gnn = GNN(self.n_users + self.n_videos, n_feat, int(hidden_dim), tuple(mlp_dims), len(HEADS),
                       residual=bool(residual), node_bias=bool(node_bias))
        if emb_init_std > 0:  # nn.Embedding's N(0, 1) start is far from anything Adam reaches in a few hundred
            torch.nn.init.normal_(self.gnn.node_emb.weight, std=float(emb_init_std))  # steps: start small
        self.register_buffer("mu", torch.zeros(n_feat) if mu is None else mu.detach().float().reshape(n_feat).clone())
        self.register_buffer("std", torch.ones(n_feat) if std is None else std.detach().float().reshape(n_feat).clone())
        if edge_index is None:
            edge_index = torch.zeros(2, int(n_mp_edges), dtype=torch.long)
        self._check_edge_index(edge_index)
        self.register_buffer("edge_index", edge_index.detach().long().clone())
        self.auroc = torch.nn.ModuleDict({
            f"{s}_{h}": BinaryAUROC(thresholds=None, validate_args=False) for s in STAGES for h in HEADS})
        self.counts = torch.nn.ModuleDict({s: ClassCounts() for s in STAGES})
        self._adj: tuple[Any, torch.Tensor, bool] | None = None
        self._eval_x: torch.Tensor | None = None

    @classmethod
    def from_graph(cls, graph, dataset_id: str = "", **kwargs) -> "HeadModel":
        return cls(feature_names=graph.feature_names, n_users=graph.n_users, n_videos=graph.n_videos,
                   mu=graph.mu, std=graph.std, edge_index=graph.edge_index, dataset_id=dataset_id, **kwargs)

    def _check_edge_index(self, edge_index: torch.Tensor) -> None:
        n = self.n_users + self.n_videos
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
            raise ValueError(f"edge_index has node ids outside [0, {n})")

    # ----------------------------------------------------------------------------------------- scoring API
    def adjacency(self) -> torch.Tensor:
        """The GCN-normalized sparse adjacency of the message-passing graph, cached per device and buffer."""
        key = (self.edge_index.device, self.edge_index.data_ptr(), self.edge_index._version)
        if self._adj is None or self._adj[0] != key:
            n = self.n_users + self.n_videos
            self._adj = (key, normalized_adjacency(self.edge_index, n), is_symmetric(self.edge_index, n))
        return self._adj[1]

    def node_embeddings(self) -> torch.Tensor:
        """[n_users + n_videos, H]: users first, then videos (node n_users + video_id)."""
        adj = self.adjacency()
        return self.gnn.encode_nodes(adj, symmetric=self._adj[2])

    def normalize(self, edge_attr_raw: torch.Tensor) -> torch.Tensor:
        z = (edge_attr_raw.to(self.mu.dtype) - self.mu) / self.std
        return torch.nan_to_num(z, nan=0.0)

    def head_logits(self, x: torch.Tensor, user_idx: torch.Tensor, video_idx: torch.Tensor,
                    edge_attr_raw: torch.Tensor) -> torch.Tensor:
        """Logits [B, 4] (HEADS order). user_idx: user ids; video_idx: video ids (offset by n_users here);
        edge_attr_raw: unnormalized features [B, F] in ``feature_names`` order. Size-1 inputs broadcast."""
        if edge_attr_raw.shape[-1] != len(self.feature_names):
            raise ValueError(f"edge_attr_raw has {edge_attr_raw.shape[-1]} columns, model expects "
                             f"{len(self.feature_names)} ({self.feature_names[:2]}...)")
        user_idx = torch.as_tensor(user_idx, dtype=torch.long, device=x.device).reshape(-1)
        video_idx = torch.as_tensor(video_idx, dtype=torch.long, device=x.device).reshape(-1)
        z = self.normalize(edge_attr_raw.to(x.device)).reshape(-1, len(self.feature_names))
        return self.gnn.score_edges(x, user_idx, video_idx + self.n_users, z)

    def forward(self, user_idx: torch.Tensor, video_idx: torch.Tensor, edge_attr_raw: torch.Tensor) -> torch.Tensor:
        """Head probabilities [B, 4] (propagates the full graph; use node_embeddings + head_logits in loops)."""
        return torch.sigmoid(self.head_logits(self.node_embeddings(), user_idx, video_idx, edge_attr_raw))

    # ------------------------------------------------------------------------------------------- training
    def _logits(self, batch: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return self.head_logits(x, batch["user"], batch["video"], batch["x"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self._logits(batch, self.node_embeddings())
        y = batch["y"].to(logits.dtype)
        per_head = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=0)
        loss = per_head.mean()
        bs = int(y.shape[0])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        for j, h in enumerate(HEADS):
            self.log(f"train/loss_{h}", per_head[j], on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def _eval_embeddings(self) -> torch.Tensor:
        if self._eval_x is None:  # the graph is fixed and eval has no dropout: propagate once per epoch
            with torch.no_grad():
                self._eval_x = self.node_embeddings()
        return self._eval_x

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        logits = self._logits(batch, self._eval_embeddings())
        y = batch["y"].to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=int(y.shape[0]), sync_dist=True)
        probs = torch.sigmoid(logits)
        for j, h in enumerate(HEADS):
            self.auroc[f"{stage}_{h}"].update(probs[:, j], y[:, j].long())
        self.counts[stage].update(y)

    def head_aucs(self, stage: str) -> dict[str, float | None]:
        """AUC per head for the accumulated epoch; None where the labels have a single class."""
        pos, total = self.counts[stage].compute()
        out: dict[str, float | None] = {}
        for j, h in enumerate(HEADS):
            p = int(pos[j])
            out[h] = float(self.auroc[f"{stage}_{h}"].compute()) if 0 < p < int(total) else None
        return out

    def _eval_epoch_end(self, stage: str) -> None:
        self._eval_x = None
        aucs = self.head_aucs(stage)
        undefined = [h for h, a in aucs.items() if a is None]
        for h, a in aucs.items():
            if a is not None:
                self.log(f"{stage}/auc_{h}", a, sync_dist=True)
        defined = [a for a in aucs.values() if a is not None]
        # auc_mean over defined heads; NaN (undefined) if no head has both classes in this split
        self.log(f"{stage}/auc_mean", sum(defined) / len(defined) if defined else math.nan, sync_dist=True)
        self.log(f"{stage}/auc_undefined", float(len(undefined)), sync_dist=True)
        if undefined and self.trainer is not None and not self.trainer.sanity_checking:
            warnings.warn(f"{stage} AUC undefined for heads {undefined}: their labels have a single class "
                          f"in this split; excluded from {stage}/auc_mean", stacklevel=2)
        for h in HEADS:
            self.auroc[f"{stage}_{h}"].reset()
        self.counts[stage].reset()

    def on_validation_epoch_start(self) -> None:
        self._eval_x = None

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_start(self) -> None:
        self._eval_x = None

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def on_predict_epoch_start(self) -> None:
        self._eval_x = None

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return torch.sigmoid(self._logits(batch, self._eval_embeddings()))

    def on_predict_epoch_end(self) -> None:
        self._eval_x = None

    def on_train_epoch_start(self) -> None:
        self._eval_x = None

    def configure_optimizers(self):
        """Adam; the node embeddings (each row sees only its node's edges) learn emb_lr_mult times faster."""
        per_node = [self.gnn.node_emb.weight] + ([self.gnn.node_bias.weight] if self.gnn.node_bias is not None else [])
        rest = [p for p in self.parameters() if all(p is not q for q in per_node)]
        lr = self.hparams.lr
        return torch.optim.Adam([{"params": per_node, "lr": lr * self.hparams.emb_lr_mult}, {"params": rest}],
                                lr=lr, weight_decay=self.hparams.weight_decay)
