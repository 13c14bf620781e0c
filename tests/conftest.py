"""Shared fixtures: a tiny planted world generated once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest

from datamodules.world import make_world

SIDE_DIR = Path(__file__).resolve().parents[2] / "shared" / "kuairec-side"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """Data folder ('<tmp>/tiny/KuaiRec 2.0/data') of make_world(size='tiny', seed=0); truth in ../../ground_truth."""
    return make_world(tmp_path_factory.mktemp("worlds") / "tiny", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_world_root(tiny_world) -> Path:
    """World root holding 'KuaiRec 2.0/' and 'ground_truth/'."""
    return tiny_world.parents[1]


@pytest.fixture(scope="session")
def side_dir() -> Path:
    """The real KuaiRec 2.0 side files (../shared/kuairec-side); skips where absent."""
    if not (SIDE_DIR / "user_features.csv").is_file():
        pytest.skip(f"real KuaiRec side files not found at {SIDE_DIR}")
    return SIDE_DIR
