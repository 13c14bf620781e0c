"""Oracle AUC on planted worlds (evaluation code only: the estimator never reads the ground truth).

The world's ``ground_truth/heads.parquet`` gives the TRUE head probabilities of every event written to the
matrices. Ranked against the same labels on the same edges, they give the best AUC any model can reach on
those edges (the labels are Bernoulli draws from them). We report, per head, the oracle AUC and the model's
share of the oracle's lift over chance: (auc - 0.5) / (oracle - 0.5).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from datamodules.schema import HEADS

TRUE_COLUMNS = [f"p_{h}" for h in HEADS]


def _ms(ts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(ts, dtype=np.float64) * 1000.0).astype(np.int64)


def true_head_probs(interactions: pd.DataFrame, truth_dir, matrix: str = "big") -> np.ndarray:
    """float64 [N, 4] true probabilities aligned with ``interactions`` rows (NaN where the truth has no row)."""
    truth = pd.read_parquet(Path(truth_dir) / "heads.parquet")
    if "matrix" in truth.columns:
        truth = truth[truth["matrix"] == matrix]
    truth = truth.dropna(subset=["timestamp"])
    key = pd.DataFrame({"user_id": truth["user_id"].to_numpy(np.int64), "video_id": truth["video_id"].to_numpy(np.int64),
                        "ms": _ms(truth["timestamp"].to_numpy())})
    for c in TRUE_COLUMNS:
        key[c] = truth[c].to_numpy(np.float64)
    key = key.drop_duplicates(["user_id", "video_id", "ms"])
    left = pd.DataFrame({"user_id": interactions["user_id"].to_numpy(np.int64),
                         "video_id": interactions["video_id"].to_numpy(np.int64),
                         "ms": _ms(interactions["timestamp"].to_numpy())})
    merged = left.merge(key, on=["user_id", "video_id", "ms"], how="left", sort=False)
    return merged[TRUE_COLUMNS].to_numpy(np.float64)


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def oracle_report(y: np.ndarray, model_probs: np.ndarray, true_probs: np.ndarray,
                  min_coverage: float = 0.99) -> dict[str, Any]:
    """Per head: auc (model), oracle_auc (true probabilities), share = (auc-0.5)/(oracle-0.5), on the rows that
    have a true probability. Undefined values (single-class labels, oracle at chance) are None."""
    have = ~np.isnan(true_probs).any(axis=1)
    coverage = float(have.mean()) if len(have) else 0.0
    if coverage < min_coverage:
        raise ValueError(f"ground truth covers only {coverage:.1%} of the edges; is this the world's data folder?")
    out: dict[str, Any] = {"coverage": coverage, "n": int(have.sum())}
    shares = []
    for j, h in enumerate(HEADS):
        yj = y[have, j]
        auc, oracle = _auc(yj, model_probs[have, j]), _auc(yj, true_probs[have, j])
        share = None if auc is None or oracle is None or oracle <= 0.5 + 1e-9 else (auc - 0.5) / (oracle - 0.5)
        out[h] = {"auc": auc, "oracle_auc": oracle, "share": share}
        if share is not None:
            shares.append(share)
    out["share_mean"] = float(np.mean(shares)) if shares else None
    return out


def flat_metrics(report: dict[str, Any], prefix: str = "test/") -> dict[str, float]:
    """MLflow metric dict: <prefix>oracle_auc_<head>, <prefix>oracle_share_<head>, <prefix>oracle_share_mean."""
    m: dict[str, float] = {}
    for h in HEADS:
        r = report[h]
        if r["oracle_auc"] is not None:
            m[f"{prefix}oracle_auc_{h}"] = r["oracle_auc"]
        if r["share"] is not None:
            m[f"{prefix}oracle_share_{h}"] = r["share"]
    if report["share_mean"] is not None:
        m[f"{prefix}oracle_share_mean"] = report["share_mean"]
    m[f"{prefix}oracle_coverage"] = report["coverage"]
    return m
