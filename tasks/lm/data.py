"""WikiText in tokenized form, the AWD-LSTM way, and its batching.

Sources:
- salesforce/awd-lstm-lm, data.py: every line is split on whitespace and gets one ``<eos>``;
  utils.py: ``batchify`` (columns are contiguous slices of the stream) and ``get_batch``;
  main.py: variable-length BPTT, ``bptt' = bptt`` with probability 0.95 else ``bptt / 2``,
  ``seq_len = max(5, int(N(bptt', 5)))``, the learning rate scaled by ``seq_len / bptt``; the
  cap ``min(seq_len, bptt + 10)`` is left commented out there as an out-of-memory guard.
- Merity et al. (2016), "Pointer Sentinel Mixture Models": the WikiText corpora.

Unlike awd-lstm-lm, the vocabulary comes from the training file alone and its ids are sorted by
training frequency (descending; ties by first appearance), so id order is frequency rank, which
frequency-based source domains (FRAGE's 80/20 split) and the head/tail metrics rely on. Words of
the valid/test files all occur in training (rare words are ``<unk>`` in every file); one that does
not is an error. Encoded corpora are cached as .npy files (written atomically) under the cache
directory, ``~/.cache/harmless`` by default.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import torch

from harmless.atomic import atomic_open
from tasks.lm.download import (
    EOS,
    SPLITS,
    compare_expected,
    download_wikitext,
    tokens_path,
)

logger = logging.getLogger(__name__)

UNK = "<unk>"
DATA_ENV = "HARMLESS_DATA_DIR"
_CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    return Path("~/.cache/harmless").expanduser()


# ----------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """Types sorted by training frequency: id i is the i-th most frequent training word.

    Attributes:
        itos: the word of each id.
        counts: int64 [V] training counts, non-increasing.
    """

    itos: tuple[str, ...]
    counts: np.ndarray
    stoi: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.itos) != len(self.counts):
            raise ValueError(f"{len(self.itos)} words but {len(self.counts)} counts")
        object.__setattr__(self, "stoi", {word: i for i, word in enumerate(self.itos)})
        if len(self.stoi) != len(self.itos):
            raise ValueError("the vocabulary holds duplicate words")

    def __len__(self) -> int:
        return len(self.itos)


def read_lines(path: str | os.PathLike) -> Iterator[list[str]]:
    """The tokens of each line of ``path``, with ``<eos>`` appended."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield line.split() + [EOS]


def build_vocabulary(lines: Iterable[list[str]]) -> Vocabulary:
    """Vocabulary of tokenized lines, ids by descending count, ties by first appearance."""
    counter: Counter[str] = Counter()
    for words in lines:
        counter.update(words)  # a Counter keeps first-appearance order
    ranked = sorted(counter.items(), key=lambda item: -item[1])  # stable: ties keep that order
    return Vocabulary(
        tuple(word for word, _ in ranked), np.array([c for _, c in ranked], dtype=np.int64)
    )


def encode_file(path: str | os.PathLike, vocab: Vocabulary) -> np.ndarray:
    """int32 [N] ids of ``path``; ValueError on words outside ``vocab`` or on an empty file."""
    ids = array("i")
    unknown: Counter[str] = Counter()
    num_words = 0
    stoi = vocab.stoi
    for words in read_lines(path):
        num_words += len(words) - 1
        try:
            ids.extend([stoi[w] for w in words])
        except KeyError:
            unknown.update(w for w in words if w not in stoi)
    if num_words == 0:
        raise ValueError(f"{path} holds no tokens (empty file?)")
    if unknown:
        raise ValueError(
            f"{path} holds {sum(unknown.values())} tokens of {len(unknown)} types absent from "
            f"the training vocabulary, e.g. {[w for w, _ in unknown.most_common(5)]}; WikiText "
            "maps rare words to <unk> in every split, so these files are not a WikiText release"
        )
    return np.frombuffer(ids, dtype=np.int32).copy()


# ----------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    """An encoded corpus: vocabulary and int32 id streams of the three splits."""

    name: str
    vocab: Vocabulary
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def split(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        return getattr(self, split)

    def summary(self) -> dict[str, int]:
        return {
            "vocab_size": len(self.vocab),
            **{f"{split}_tokens": int(self.split(split).size) for split in SPLITS},
        }


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir``, else $HARMLESS_DATA_DIR; the folder that holds one folder per corpus."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV)
    if not data_dir:
        raise FileNotFoundError(
            f"no data directory: pass data_dir or set {DATA_ENV} to the folder that holds "
            "'wikitext-2/' (or 'wikitext-103/')"
        )
    return Path(data_dir).expanduser()


def _missing_files(folder: Path) -> list[Path]:
    return [tokens_path(folder, s) for s in SPLITS if not tokens_path(folder, s).is_file()]


def _cache_key(name: str, folder: Path) -> str:
    stats = [(s, os.stat(tokens_path(folder, s))) for s in SPLITS]
    fingerprint = [
        _CACHE_FORMAT,
        name,
        str(folder.resolve()),
        [(s, st.st_size, st.st_mtime_ns) for s, st in stats],
    ]
    return hashlib.sha1(json.dumps(fingerprint).encode()).hexdigest()[:16]


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file in the same folder and an atomic rename."""
    with atomic_open(path, "wb") as f:
        write(f)


def _save_cache(directory: Path, corpus: Corpus) -> None:
    arrays = {"counts": corpus.vocab.counts, **{s: corpus.split(s) for s in SPLITS}}
    for key, value in arrays.items():
        _atomic_write(directory / f"{key}.npy", lambda f, v=value: np.save(f, v))
    vocab = json.dumps(list(corpus.vocab.itos), ensure_ascii=False).encode("utf-8")
    _atomic_write(directory / "vocab.json", lambda f: f.write(vocab))
    meta = json.dumps({"name": corpus.name, **corpus.summary()}, indent=1).encode()
    _atomic_write(directory / "meta.json", lambda f: f.write(meta))  # last: marks completeness


def _load_cache(directory: Path, name: str) -> Corpus | None:
    try:
        meta = json.loads((directory / "meta.json").read_text())
        itos = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        counts = np.load(directory / "counts.npy")
        splits = {s: np.load(directory / f"{s}.npy") for s in SPLITS}
    except (OSError, ValueError) as err:
        if (directory / "meta.json").exists():
            logger.warning("ignoring unreadable cache %s: %s", directory, err)
        return None
    corpus = Corpus(name, Vocabulary(tuple(itos), counts), **splits)
    if corpus.summary() != {k: v for k, v in meta.items() if k != "name"}:
        logger.warning("ignoring inconsistent cache %s", directory)
        return None
    return corpus


def encode_corpus(name: str, folder: Path) -> Corpus:
    """Read and encode the three files of ``folder`` (vocabulary from the training file)."""
    missing = _missing_files(folder)
    if missing:
        raise FileNotFoundError(f"missing {[str(p) for p in missing]}")
    vocab = build_vocabulary(read_lines(tokens_path(folder, "train")))
    splits = {s: encode_file(tokens_path(folder, s), vocab) for s in SPLITS}
    return Corpus(name, vocab, **splits)


def load_corpus(
    name: str = "wikitext-2",
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Corpus:
    """The encoded corpus in ``data_dir/name/wiki.{train,valid,test}.tokens``, cached as .npy.

    Args:
        name: the corpus folder, e.g. "wikitext-2" or "wikitext-103".
        data_dir: the folder that holds ``name/``; default $HARMLESS_DATA_DIR.
        cache_dir: where encoded corpora are kept; default ``~/.cache/harmless``.
        download: fetch a missing "wikitext-2"/"wikitext-103" with HF `datasets`.

    Raises:
        FileNotFoundError: the files are missing (and not downloaded); says where it looked.
    """
    folder = resolve_data_dir(data_dir) / name
    missing = _missing_files(folder)
    if missing and download:
        download_wikitext(name, folder.parent)
        missing = _missing_files(folder)
    if missing:
        raise FileNotFoundError(
            f"{name}: missing {', '.join(p.name for p in missing)} in {folder}. Put the tokenized "
            f"release there (wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens), point "
            f"data_dir or ${DATA_ENV} at the folder holding '{name}/', or pass download=True "
            "(needs `pip install datasets`)"
        )
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    directory = cache / "lm" / f"{name}-{_cache_key(name, folder)}"
    corpus = _load_cache(directory, name)
    if corpus is None:
        corpus = encode_corpus(name, folder)
        _save_cache(directory, corpus)
        logger.info("encoded %s from %s into %s", name, folder, directory)
    summary = corpus.summary()
    logger.info("%s: %s", name, summary)
    problems = compare_expected(
        name, summary["vocab_size"], {s: summary[f"{s}_tokens"] for s in SPLITS}
    )
    if problems:
        logger.warning("%s differs from the published corpus: %s", name, "; ".join(problems))
    return corpus


# ----------------------------------------------------------------------------- batching


def batchify(data: np.ndarray | torch.Tensor, batch_size: int) -> torch.Tensor:
    """Stream [N] -> int64 [N // batch_size, batch_size]; column b is the b-th contiguous slice.

    The last ``N % batch_size`` tokens are dropped, as in awd-lstm-lm.
    """
    data = torch.as_tensor(data)
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D stream [N], got shape {tuple(data.shape)}")
    if batch_size < 1 or data.numel() < batch_size:
        raise ValueError(f"cannot split {data.numel()} tokens into {batch_size} columns")
    steps = data.numel() // batch_size
    columns = data[: steps * batch_size].long().view(batch_size, steps)  # [B, N // B]
    return columns.t().contiguous()  # [N // B, B]


def get_batch(source: torch.Tensor, i: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``i : i + L`` of ``source`` [S, B] and the next-token targets, L <= seq_len.

    L = min(seq_len, S - 1 - i); returns (input [L, B], target [L, B]).
    """
    if source.dim() != 2:
        raise ValueError(f"source must be batchified [steps, batch], got {tuple(source.shape)}")
    length = min(seq_len, source.size(0) - 1 - i)
    if length < 1:
        raise ValueError(f"no target left at row {i} of {source.size(0)}")
    return source[i : i + length], source[i + 1 : i + 1 + length]


def sample_seq_len(
    bptt: int,
    generator: torch.Generator,
    *,
    p_full: float = 0.95,
    std: float = 5.0,
    min_len: int = 5,
    max_len: int | None = None,
) -> int:
    """AWD-LSTM's random BPTT length, drawn from ``generator`` only.

    base = bptt with probability ``p_full``, else bptt / 2; seq_len = max(min_len,
    int(base + std * N(0, 1))) (truncation, as ``int(np.random.normal(base, std))``), then at most
    ``max_len``. Always draws one uniform and one normal, so the stream of draws does not depend
    on the parameters.
    """
    uniform = torch.rand((), generator=generator).item()
    normal = torch.randn((), generator=generator).item()
    base = bptt if uniform < p_full else bptt / 2.0
    seq_len = max(min_len, int(base + std * normal))
    return seq_len if max_len is None else min(seq_len, max_len)


def bptt_batches(
    source: torch.Tensor,
    bptt: int,
    generator: torch.Generator,
    **sampling,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """One training epoch over ``source`` [S, B] with variable-length BPTT.

    Yields (input [L, B], target [L, B], seq_len), where seq_len is the sampled length that sets
    the learning-rate scale seq_len / bptt and L = seq_len except possibly at the end. ``sampling``
    goes to ``sample_seq_len``.
    """
    i = 0
    while i < source.size(0) - 2:  # awd-lstm-lm: while i < train_data.size(0) - 1 - 1
        seq_len = sample_seq_len(bptt, generator, **sampling)
        inputs, targets = get_batch(source, i, seq_len)
        yield inputs, targets, seq_len
        i += seq_len


def eval_batches(source: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive fixed-length chunks of ``source`` [S, B]: (input [L, B], target [L, B])."""
    for i in range(0, source.size(0) - 1, bptt):
        yield get_batch(source, i, bptt)
