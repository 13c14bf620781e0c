"""The reference notebook's GNN: learned node embeddings, three GCN layers, an edge MLP -> 4 head logits.

Parameter names (node_emb, gcn1..3, edge_mlp.0/2/4/6) are the notebook's, so its ``state_dict`` loads as is.
Message passing uses a precomputed, GCN-normalized sparse adjacency (CSR, self loops added) instead of
re-normalizing an edge_index on every call; the result equals ``GCNConv(normalize=True)(x, edge_index)``.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """GCN normalization D^-1/2 (A + I) D^-1/2 as a torch sparse CSR ``adj_t`` (rows = targets)."""
    ei, w = gcn_norm(edge_index, None, num_nodes, improved=False, add_self_loops=True)
    with warnings.catch_warnings():  # "sparse CSR support is in beta" / "invariant checks disabled"
        warnings.simplefilter("ignore", UserWarning)
        # adj_t[target, source]: the layout PyG's spmm expects for flow source_to_target
        adj_t = torch.sparse_coo_tensor(torch.stack([ei[1], ei[0]]), w, (num_nodes, num_nodes),
                                        check_invariants=False).coalesce()
        return adj_t.to_sparse_csr()


class _SymmetricSpmm(torch.autograd.Function):
    """y = A @ x for a SYMMETRIC sparse A: the gradient A^T @ g = A @ g reuses A (no transpose/sort per step)."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.adj @ grad


def is_symmetric(edge_index: torch.Tensor, num_nodes: int) -> bool:
    key = torch.sort(edge_index[0] * num_nodes + edge_index[1]).values
    rev = torch.sort(edge_index[1] * num_nodes + edge_index[0]).values
    return bool(torch.equal(key, rev))


class GNN(nn.Module):
    """Node embeddings -> 3 x (GCNConv + ReLU) -> edge MLP on [h_user, h_video, edge_attr] -> 4 logits."""

    def __init__(self, num_nodes: int, num_edge_features: int, hidden_dim: int = 64,
                 mlp_dims: Sequence[int] = (128, 128, 64), n_heads: int = 4, residual: bool = False,
                 node_bias: bool = False):
        super().__init__()
        self.residual = bool(residual)  # x_{l+1} = relu(conv(x_l)) + x_l: keeps each node's own embedding
        # node_bias: a learned logit offset per node and head, added for the user and for the video of an edge
        # (per-user and per-video propensities, which message passing smooths away)
        self.node_bias = nn.Embedding(num_nodes, n_heads) if node_bias else None
        if self.node_bias is not None:
            nn.init.zeros_(self.node_bias.weight)
        self.num_nodes = int(num_nodes)
        self.hidden_dim = int(hidden_dim)
        self.num_edge_features = int(num_edge_features)
        self.node_emb = nn.Embedding(num_nodes, hidden_dim)
        self.gcn1 = GCNConv(hidden_dim, hidden_dim, normalize=False)
        self.gcn2 = GCNConv(hidden_dim, hidden_dim, normalize=False)
        self.gcn3 = GCNConv(hidden_dim, hidden_dim, normalize=False)
        layers: list[nn.Module] = []
        d_in = 2 * hidden_dim + num_edge_features
        for d in mlp_dims:
            layers += [nn.Linear(d_in, d), nn.ReLU()]
            d_in = d
        layers.append(nn.Linear(d_in, n_heads))
        self.edge_mlp = nn.Sequential(*layers)

    @property
    def first_linear(self) -> nn.Linear:
        """The edge MLP's first layer: its input is [h_user (H), h_video (H), edge_attr (F)]."""
        return self.edge_mlp[0]

    @property
    def mlp_tail(self) -> nn.Sequential:
        """Everything after the first Linear (starts with its ReLU)."""
        return self.edge_mlp[1:]

    def first_linear_parts(self) -> dict[str, torch.Tensor]:
        """The first layer's weight split by input block: {'user': [D, H], 'video': [D, H], 'feat': [D, F],
        'bias': [D]}, so that layer1 = h_u @ user.T + h_v @ video.T + e @ feat.T + bias."""
        w, h = self.first_linear.weight, self.hidden_dim
        return {"user": w[:, :h], "video": w[:, h:2 * h], "feat": w[:, 2 * h:], "bias": self.first_linear.bias}

    def encode_nodes(self, adj_t: torch.Tensor, symmetric: bool = False) -> torch.Tensor:
        """[num_nodes, H] embeddings; ``adj_t`` from :func:`normalized_adjacency`. ``symmetric=True`` (an
        undirected graph) computes each layer as A @ lin(x) + bias with a cheaper backward; same values."""
        x = self.node_emb.weight
        for conv in (self.gcn1, self.gcn2, self.gcn3):
            if symmetric:
                h = F.relu(_SymmetricSpmm.apply(adj_t, conv.lin(x)) + conv.bias)
            else:
                h = F.relu(conv(x, adj_t))
            x = h + x if self.residual else h
        return x

    def score_edges(self, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        """Logits [B, 4] for node pairs (src = user node, dst = video node) and normalized features [B, F]."""
        h_src, h_dst = x[src], x[dst]
        b = max(h_src.shape[0], h_dst.shape[0], edge_attr.shape[0])
        h = torch.cat([h_src.expand(b, -1), h_dst.expand(b, -1), edge_attr.expand(b, -1)], dim=-1)
        logits = self.edge_mlp(h)
        if self.node_bias is not None:
            logits = logits + self.node_bias(src) + self.node_bias(dst)
        return logits
