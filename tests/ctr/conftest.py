"""Fixtures of the CTR tests: a hand-made MovieLens folder, the real data, one thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.ctr.files import write_movielens


@pytest.fixture
def ml_dir(tmp_path: Path) -> Path:
    return write_movielens(tmp_path / "data")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """$HARMLESS_DATA_DIR when it holds the MovieLens-1M and Criteo sample copies; else skip."""
    root = os.environ.get("HARMLESS_DATA_DIR")
    if not root:
        pytest.skip(
            "real data: HARMLESS_DATA_DIR is not set (the folder holding movielens-1m/ and "
            "criteo-sample/)"
        )
    root = Path(root)
    needed = [
        root / "movielens-1m" / "users.dat",
        root / "movielens-1m" / "ratings_no_timestamp.dat",
        root / "criteo-sample" / "criteo_head10000_train.tsv",
    ]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"real data: missing {missing} under HARMLESS_DATA_DIR={root}")
    return root


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory) -> Path:
    """One cache folder shared by the real-data tests of a session."""
    return tmp_path_factory.mktemp("ctr-cache")


@pytest.fixture
def one_thread():
    """Train on one intra-op thread: on a shared 2-core machine this is several times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
