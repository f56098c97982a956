"""Word-level language modelling on WikiText (paper Section 5.1, Tables 1-3).

WikiText-2 with AWD-LSTM and WikiText-103 with a QRNN, trained the AWD-LSTM way (Merity et al.,
2018; salesforce/awd-lstm-lm main.py/finetune.py): variable-length BPTT with the lr scaled by
seq_len / bptt, the hidden state carried across batches (detached), AR/TAR regularisation,
NT-ASGD with evaluation on the averaged weights, perplexity overall and for head/tail words.

The transfer acts on the embedding table; with tying it is also the softmax's output matrix, so
its main gradient holds both roles. ``tables()`` gives the training counts, the window-3
co-occurrence of the training stream (pairs may straddle the ``<eos>`` of a line end, like any
other pair of the stream) and ``exclude``: by default the id of ``<eos>``, which is a line marker
inserted by the preprocessing (its count is the number of lines), not a word of the text, so it
belongs to neither domain. ``<unk>`` stays in: it is a token of the released text, frequent, and
the model embeds it like a word.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from harmless.cooccur import window_cooccurrence
from harmless.experiment.task import StepOutput, TableInfo, Task
from tasks.lm.awd_lstm import AWDLSTM
from tasks.lm.data import batchify, bptt_batches, eval_batches, load_corpus
from tasks.lm.metrics import PerplexityMeter, head_mask
from tasks.lm.ntasgd import NTASGD
from tasks.lm.qrnn import QRNNLM
from tasks.lm.rnnlm import repackage_hidden

logger = logging.getLogger(__name__)

MODELS: dict[str, Callable[..., nn.Module]] = {"awd_lstm": AWDLSTM, "qrnn": QRNNLM}
EVAL_SPLITS = ("valid", "test")


class LMBatch(NamedTuple):
    """One training batch: input [T, B], target [T, B] and the sampled BPTT length."""

    input: torch.Tensor
    target: torch.Tensor
    seq_len: int


class LMTask(Task):
    """WikiText language modelling.

    Args:
        model: ``callable(num_tokens=V) -> model`` (e.g. a Hydra partial of ``AWDLSTM`` or
            ``QRNNLM``), or "awd_lstm" / "qrnn" for their default (paper) profiles.
        dataset: "wikitext-2" or "wikitext-103" (the folder name under ``data_dir``).
        data_dir: folder holding ``<dataset>/wiki.*.tokens``; default $HARMLESS_DATA_DIR.
        cache_dir: where the encoded corpus is cached; default ``~/.cache/harmless``.
        download: fetch a missing corpus with HF `datasets`.
        batch_size, eval_batch_size, test_batch_size: columns of the batchified streams.
        bptt: the mean BPTT length (and the evaluation chunk length).
        bptt_cap: training lengths are capped at bptt + bptt_cap (the memory guard left
            commented out in awd-lstm-lm's main.py); None: uncapped, as the released main.py.
        min_seq_len: the least training length (5 in awd-lstm-lm).
        alpha, beta: weights of AR and TAR.
        nt_asgd: switch SGD to ASGD by the non-monotone rule; nonmono: its interval.
        finetune: ASGD from the start (awd-lstm-lm's finetune.py), from ``init_checkpoint``.
        init_checkpoint: model weights to start from (a state dict, or a dict with "model").
        max_train_tokens, max_eval_tokens: use only the first tokens of the train / eval
            streams (smoke and CPU profiles); the vocabulary stays that of the whole file.
        cooc_window: co-occurrence window (3: the paper's tri-gram counts).
        head_fraction: the share of the vocabulary that counts as head words in the metrics.
        exclude_tokens: words in neither transfer domain.
    """

    monitor = "ppl"
    monitor_mode = "min"

    def __init__(
        self,
        model: Callable[..., nn.Module] | str = "awd_lstm",
        dataset: str = "wikitext-2",
        data_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        download: bool = False,
        batch_size: int = 80,
        eval_batch_size: int = 10,
        test_batch_size: int = 1,
        bptt: int = 70,
        bptt_cap: int | None = 10,
        min_seq_len: int = 5,
        alpha: float = 2.0,
        beta: float = 1.0,
        nt_asgd: bool = True,
        nonmono: int = 5,
        finetune: bool = False,
        init_checkpoint: str | os.PathLike | None = None,
        max_train_tokens: int | None = None,
        max_eval_tokens: int | None = None,
        cooc_window: int = 3,
        head_fraction: float = 0.2,
        exclude_tokens: Sequence[str] = ("<eos>",),
    ) -> None:
        if isinstance(model, str):
            if model not in MODELS:
                raise ValueError(f"unknown model {model!r}; allowed: {', '.join(MODELS)}")
            model = MODELS[model]
        self.model_factory = model
        self.dataset, self.data_dir, self.cache_dir = dataset, data_dir, cache_dir
        self.download = download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.test_batch_size = test_batch_size
        self.bptt, self.bptt_cap, self.min_seq_len = bptt, bptt_cap, min_seq_len
        self.alpha, self.beta = alpha, beta
        self.nt_asgd, self.nonmono, self.finetune = nt_asgd, nonmono, finetune
        self.init_checkpoint = init_checkpoint
        self.max_train_tokens, self.max_eval_tokens = max_train_tokens, max_eval_tokens
        self.cooc_window, self.head_fraction = cooc_window, head_fraction
        self.exclude_tokens = tuple(exclude_tokens)
        self._hidden: Any = None
        self._keep_hidden = False  # set by load_state_dict: the resumed epoch continues its state
        self._last_valid_loss: float | None = None
        self._ready = False

    # ------------------------------------------------------------------ setup

    def setup(self, device: torch.device, seed: int) -> None:
        self.device = torch.device(device)
        corpus = load_corpus(self.dataset, self.data_dir, self.cache_dir, self.download)
        self.corpus, self.num_tokens = corpus, len(corpus.vocab)
        train = corpus.train[: self.max_train_tokens]
        self._train_stream = train
        self._counts = np.bincount(train, minlength=self.num_tokens).astype(np.int64)
        self._train = batchify(train, self.batch_size)  # [S, B] on the CPU
        self._eval = {
            "valid": batchify(corpus.valid[: self.max_eval_tokens], self.eval_batch_size),
            "test": batchify(corpus.test[: self.max_eval_tokens], self.test_batch_size),
        }
        self._is_head = head_mask(corpus.vocab.counts, self.head_fraction)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.model_factory(num_tokens=self.num_tokens)
        for attribute in ("encoder", "init_hidden"):
            if not hasattr(model, attribute):
                raise TypeError(f"the model ({type(model).__name__}) has no {attribute!r}")
        self.model = model.to(self.device)
        if self.init_checkpoint is not None:
            self._load_weights(self.init_checkpoint)
        elif self.finetune:
            logger.warning("finetune without init_checkpoint: starting from the loop's weights")
        self.ntasgd = NTASGD(
            self.parameters(), self.nonmono, enabled=self.nt_asgd, finetune=self.finetune
        )
        self._ready = True
        logger.info("LMTask: %s", self.describe())

    def _load_weights(self, path: str | os.PathLike) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        self.model.load_state_dict(state)
        logger.info("loaded model weights from %s", path)

    def _check_ready(self) -> None:
        if not self._ready:
            raise RuntimeError("call setup(device, seed) first")

    def tables(self) -> dict[str, TableInfo]:
        self._check_ready()
        stoi, stream = self.corpus.vocab.stoi, self._train_stream
        num_tokens, window = self.num_tokens, self.cooc_window
        missing = [t for t in self.exclude_tokens if t not in stoi]
        if missing:
            logger.warning("exclude_tokens %s are not in the vocabulary", missing)
        return {
            "embedding": TableInfo(
                weight=self.model.encoder.weight,
                counts=self._counts,
                cooccurrence=lambda anchors: window_cooccurrence(
                    stream, anchors, num_tokens, window=window
                ),
                exclude=tuple(stoi[t] for t in self.exclude_tokens if t in stoi),
            )
        }

    # ------------------------------------------------------------------ training

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[LMBatch]:
        """The epoch's batches in stream order; lengths drawn from ``generator`` only."""
        self._check_ready()
        if not self._keep_hidden:
            self._hidden = None  # a fresh state at the start of every epoch, as awd-lstm-lm
        self._keep_hidden = False
        max_len = None if self.bptt_cap is None else self.bptt + self.bptt_cap
        for inputs, targets, seq_len in bptt_batches(
            self._train, self.bptt, generator, min_len=self.min_seq_len, max_len=max_len
        ):
            yield LMBatch(
                inputs.to(self.device, non_blocking=True),
                targets.to(self.device, non_blocking=True),
                seq_len,
            )
        self._hidden = None  # the epoch is over: a checkpoint now carries no state into the next

    def train_loss(self, batch: LMBatch) -> StepOutput:
        """The full training objective mean NLL + alpha AR + beta TAR.

        This whole objective is the "main loss" the plug-in sees, so the lexico barrier of
        Algorithm 1 compares the transfer gradient with the gradient of NLL + AR + TAR (AR/TAR
        reach the embedding only through the network). ``metrics["nll"]`` is the raw NLL.
        """
        self.model.train()
        if self._hidden is None:
            self._hidden = self.model.init_hidden(batch.input.size(1))
        out = self.model(batch.input, self._hidden, batch.target)
        self._hidden = repackage_hidden(out.hidden)
        nll = out.nll.mean()
        loss = nll + self.alpha * out.ar + self.beta * out.tar
        return StepOutput(
            loss=loss,
            ids={"embedding": batch.input},
            metrics={"nll": float(nll.detach())},
            num_examples=batch.input.numel(),
            lr_scale=batch.seq_len / self.bptt,
        )

    def after_step(self) -> None:
        self.ntasgd.after_step()

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], loop: Any) -> None:
        loss = metrics.get("loss", metrics.get("valid/loss", self._last_valid_loss))
        if loss is None:
            raise ValueError(f"no validation loss in {sorted(metrics)}; evaluate('valid') first")
        self.ntasgd.epoch_end(epoch, float(loss), loop)

    def on_resume(self, loop: Any) -> None:
        """A run that had switched to ASGD continues with ASGD (its state comes from the loop)."""
        self.ntasgd.resume(loop)

    @contextlib.contextmanager
    def eval_weights(self) -> Iterator[None]:
        """ASGD's averaged weights once NT-ASGD has switched (or while finetuning)."""
        with self.ntasgd.averaged_weights():
            yield

    @property
    def finished(self) -> bool:
        """True once finetuning has stopped improving (awd-lstm-lm's finetune.py exits then)."""
        return self._ready and self.ntasgd.finished

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """loss (mean NLL), ppl, ppl_head and ppl_tail on ``split``, hidden state reset first."""
        self._check_ready()
        if split not in EVAL_SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(EVAL_SPLITS)}")
        source = self._eval[split]
        self.model.eval()
        meter = PerplexityMeter(self._is_head)
        hidden = self.model.init_hidden(source.size(1))
        for inputs, targets in eval_batches(source, self.bptt):
            targets = targets.to(self.device)
            out = self.model(inputs.to(self.device), hidden, targets)
            hidden = out.hidden
            meter.update(out.nll, targets)
        result = meter.result()
        if split == "valid":
            self._last_valid_loss = result["loss"]
        return {key: result[key] for key in ("loss", "ppl", "ppl_head", "ppl_tail")}

    # ------------------------------------------------------------------ bookkeeping

    def state_dict(self) -> dict[str, Any]:
        """NT-ASGD's state, and the recurrent state carried between batches of this epoch."""
        if not self._ready:
            return {}
        return {"ntasgd": self.ntasgd.state_dict(), "hidden": self._hidden}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; a checkpoint taken mid-epoch continues that epoch from its hidden state."""
        self._check_ready()
        if "ntasgd" in state:
            self.ntasgd.load_state_dict(state["ntasgd"])
        self._hidden = state.get("hidden")
        self._keep_hidden = self._hidden is not None

    def describe(self) -> dict[str, Any]:
        self._check_ready()
        return {
            "dataset": self.dataset,
            **self.corpus.summary(),
            "train_tokens_used": int(self._train_stream.size),
            "valid_tokens_used": int(self._eval["valid"].numel()),
            "test_tokens_used": int(self._eval["test"].numel()),
            "model": type(self.model).__name__,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "head_words": int(self._is_head.sum()),
            "excluded": [t for t in self.exclude_tokens if t in self.corpus.vocab.stoi],
        }
