"""Fixtures of the language-modelling tests: WikiText-2 (skipped when absent) and a toy corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.lm.data import load_corpus

TOY_FILES = {
    "train": " = A = \n \n the cat sat on the mat . \n the dog sat on the <unk> . \n \n",
    "valid": " the cat sat . \n the dog <unk> . \n",
    "test": " on the mat the dog sat . \n",
}


@pytest.fixture(scope="session")
def wt2_data_dir() -> Path:
    """The folder holding wikitext-2/ ($HARMLESS_DATA_DIR), or skip."""
    root = os.environ.get("HARMLESS_DATA_DIR")
    if not root:
        pytest.skip("HARMLESS_DATA_DIR is not set (it names the folder holding wikitext-2/)")
    folder = Path(root) / "wikitext-2"
    if not all((folder / f"wiki.{s}.tokens").is_file() for s in ("train", "valid", "test")):
        pytest.skip(f"WikiText-2 (wiki.{{train,valid,test}}.tokens) not found in {folder}")
    return Path(root)


@pytest.fixture(scope="session")
def lm_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lm-cache")


@pytest.fixture(scope="session")
def wt2_corpus(wt2_data_dir, lm_cache_dir):
    return load_corpus("wikitext-2", wt2_data_dir, lm_cache_dir)


@pytest.fixture
def toy_data_dir(tmp_path) -> Path:
    """tmp/toy/wiki.*.tokens: a small corpus in the release's format."""
    folder = tmp_path / "data" / "toy"
    folder.mkdir(parents=True)
    for split, text in TOY_FILES.items():
        (folder / f"wiki.{split}.tokens").write_text(text, encoding="utf-8")
    return folder.parent
