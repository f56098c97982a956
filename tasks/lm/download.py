"""WikiText files: their names, their published sizes, and a download through HF `datasets`.

The tokenized release ("wikitext-2-v1" / "wikitext-103-v1") ships three files per corpus,
``wiki.{train,valid,test}.tokens``. Counts follow the AWD-LSTM convention (whitespace split of each
line plus one ``<eos>`` per line), under which they equal the published figures:

- Merity, Xiong, Bradbury, Socher (2016), "Pointer Sentinel Mixture Models", Table 1:
  WikiText-2 has 2,088,628 / 217,646 / 245,569 train / valid / test tokens and 33,278 types;
  WikiText-103 has 103,227,021 / 217,646 / 245,569 tokens and 267,735 types.
- The WikiText-2 sha256 sums are those of the standard release files, checked on the copy staged
  for this project (see its SOURCE.md). No sums are recorded for WikiText-103: its download is
  checked by token counts only.

A download writes each HF row back as one line. HF keeps the text of non-blank rows verbatim
(trailing newline included) and turns the blank lines, " \\n" in the release, into "", which is
written back as " \\n"; the sha256 check after a download therefore only warns on a mismatch,
while a wrong token count is an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harmless.atomic import atomic_open

logger = logging.getLogger(__name__)

EOS = "<eos>"
SPLITS = ("train", "valid", "test")
HF_CONFIGS = {"wikitext-2": "wikitext-2-v1", "wikitext-103": "wikitext-103-v1"}
_HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


@dataclass(frozen=True)
class Expected:
    """Published sizes of one corpus: vocabulary (with <eos>) and tokens per split (with <eos>)."""

    vocab_size: int
    tokens: dict[str, int]


EXPECTED = {
    "wikitext-2": Expected(33_278, {"train": 2_088_628, "valid": 217_646, "test": 245_569}),
    "wikitext-103": Expected(267_735, {"train": 103_227_021, "valid": 217_646, "test": 245_569}),
}

KNOWN_SHA256 = {
    "wikitext-2": {
        "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
        "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
        "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
    },
}


def tokens_path(folder: str | os.PathLike, split: str) -> Path:
    """The file of one split: ``folder/wiki.<split>.tokens``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return Path(folder) / f"wiki.{split}.tokens"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def count_tokens_in_file(path: str | os.PathLike) -> int:
    """Tokens of one file, AWD-LSTM style: whitespace-split words plus one <eos> per line."""
    with open(path, encoding="utf-8") as f:
        return sum(len(line.split()) + 1 for line in f)


def compare_expected(name: str, vocab_size: int | None, tokens: dict[str, int]) -> list[str]:
    """Differences from the published sizes of ``name`` (empty when it matches or is unknown)."""
    expected = EXPECTED.get(name)
    if expected is None:
        return []
    problems = []
    if vocab_size is not None and vocab_size != expected.vocab_size:
        problems.append(f"vocabulary has {vocab_size:,} types, expected {expected.vocab_size:,}")
    for split, count in tokens.items():
        if count != expected.tokens[split]:
            problems.append(f"{split} has {count:,} tokens, expected {expected.tokens[split]:,}")
    return problems


def _write_lines_atomically(path: Path, lines: Iterable[str]) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.writelines(lines)


def _release_lines(texts: Iterable[str]) -> Iterator[str]:
    """HF rows back to release lines: blank rows become " \\n", others keep their newline."""
    for text in texts:
        if not text:
            yield " \n"
        else:
            yield text if text.endswith("\n") else text + "\n"


def download_wikitext(name: str, data_dir: str | os.PathLike) -> Path:
    """Fetch ``name`` with HF `datasets` into ``data_dir/name/wiki.*.tokens`` and check it.

    Returns the corpus folder. Raises ImportError without `datasets`, ValueError when the token
    counts differ from the published ones.
    """
    if name not in HF_CONFIGS:
        raise ValueError(f"no download for {name!r}; known: {', '.join(HF_CONFIGS)}")
    try:
        import datasets  # lazy: an optional dependency (pip install 'harmless[lm]')
    except ImportError as err:
        raise ImportError(
            f"downloading {name} needs the `datasets` package: pip install 'harmless[lm]' "
            "(or pip install datasets), or place the wiki.*.tokens files yourself"
        ) from err
    folder = Path(data_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s (HF wikitext/%s) into %s", name, HF_CONFIGS[name], folder)
    dataset = datasets.load_dataset("wikitext", HF_CONFIGS[name])
    for split in SPLITS:
        _write_lines_atomically(
            tokens_path(folder, split), _release_lines(dataset[_HF_SPLITS[split]]["text"])
        )
    counts = {split: count_tokens_in_file(tokens_path(folder, split)) for split in SPLITS}
    problems = compare_expected(name, None, counts)
    if problems:
        raise ValueError(f"downloaded {name} in {folder} does not match: {'; '.join(problems)}")
    for split, digest in KNOWN_SHA256.get(name, {}).items():
        actual = sha256_file(tokens_path(folder, split))
        if actual != digest:
            logger.warning(
                "%s: sha256 %s differs from the release's %s (token counts match; HF rows may "
                "differ from the release in whitespace only)",
                tokens_path(folder, split),
                actual,
                digest,
            )
    logger.info("downloaded %s: %s tokens", name, counts)
    return folder
