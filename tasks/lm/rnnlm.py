"""The recurrent language model shared by AWD-LSTM and the QRNN: embedding, layers, softmax.

Source: salesforce/awd-lstm-lm, model.py (``RNNModel``) and main.py (AR/TAR). The forward pass is

    e   = LockedDropout(embedding_dropout(E, x, dropoute), dropouti)         [T, B, emsize]
    h_l = layer_l(h_{l-1}); between layers LockedDropout(h_l, dropouth)      [T, B, size_l]
    o   = LockedDropout(h_L, dropout)                                        [T, B, size_L]
    nll = softmax(o) at the targets                                          [T, B]

and the regularisers of Merity et al. (2018), "Regularizing and Optimizing LSTM Language Models":
AR = mean(o^2) on the dropped last-layer output, TAR = mean((h_L[t] - h_L[t-1])^2) on the raw one.
They are returned unweighted; the task adds alpha * AR + beta * TAR to the loss. With tying the
decoder's weight is the embedding's Parameter, and the last layer's size is emsize.

A layer is any module with ``forward(x [T, B, in], hidden) -> (out [T, B, out], hidden)`` and
``init_hidden(batch_size)``; the model's hidden state is the list of its layers' states.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tasks.lm.dropout import LockedDropout, embedding_dropout
from tasks.lm.softmax import FullSoftmax, TiedAdaptiveSoftmax

logger = logging.getLogger(__name__)


@dataclass
class LMOutput:
    """Per-token NLL [T, B], the next hidden state, and the unweighted AR and TAR terms."""

    nll: torch.Tensor
    hidden: list[Any]
    ar: torch.Tensor
    tar: torch.Tensor


def layer_sizes(emsize: int, nhid: int, nlayers: int, tie_weights: bool) -> list[int]:
    """[in_0, out_0 = in_1, ..., out_{L-1}]; with tying the last output is emsize."""
    if nlayers < 1:
        raise ValueError(f"nlayers must be >= 1, got {nlayers}")
    last = emsize if tie_weights else nhid
    return [emsize] + [nhid] * (nlayers - 1) + [last]


def repackage_hidden(hidden: Any) -> Any:
    """The hidden state detached from its graph (tensors inside tuples and lists)."""
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    if isinstance(hidden, (list, tuple)):
        return type(hidden)(repackage_hidden(h) for h in hidden)
    return hidden


class RNNLanguageModel(nn.Module):
    """Embedding, recurrent layers and (tied) softmax with AWD-LSTM's dropouts.

    Args:
        num_tokens: vocabulary size V.
        emsize: embedding size.
        rnns: the layers, from input to output (sizes from ``layer_sizes``).
        dropout: locked dropout on the last layer's output.
        dropouth: locked dropout between layers.
        dropouti: locked dropout on the embeddings.
        dropoute: embedding (word) dropout.
        tie_weights: the decoder uses the embedding matrix.
        cutoffs: adaptive-softmax cluster boundaries; used when every cutoff is below V,
            otherwise the full softmax (awd-lstm-lm splits only large vocabularies).
    """

    def __init__(
        self,
        num_tokens: int,
        emsize: int,
        rnns: Sequence[nn.Module],
        *,
        dropout: float,
        dropouth: float,
        dropouti: float,
        dropoute: float,
        tie_weights: bool,
        cutoffs: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.num_tokens, self.emsize, self.tie_weights = num_tokens, emsize, tie_weights
        self.dropout, self.dropouth = dropout, dropouth
        self.dropouti, self.dropoute = dropouti, dropoute
        self.lockdrop = LockedDropout()
        self.encoder = nn.Embedding(num_tokens, emsize)
        self.rnns = nn.ModuleList(rnns)
        out_size = self.rnns[-1].hidden_size
        if tie_weights:
            if out_size != emsize:
                raise ValueError(f"tying needs a last layer of size {emsize}, got {out_size}")
            weight = self.encoder.weight
        else:
            weight = nn.Parameter(torch.empty(num_tokens, out_size))
            nn.init.uniform_(weight, -0.1, 0.1)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        if cutoffs and max(cutoffs) < num_tokens:
            self.decoder: nn.Module = TiedAdaptiveSoftmax(weight, cutoffs)
        else:
            if cutoffs:
                logger.info("full softmax: cutoffs %s exceed %d words", list(cutoffs), num_tokens)
            self.decoder = FullSoftmax(weight)

    def init_hidden(self, batch_size: int) -> list[Any]:
        return [rnn.init_hidden(batch_size) for rnn in self.rnns]

    def forward(self, tokens: torch.Tensor, hidden: list[Any], targets: torch.Tensor) -> LMOutput:
        """tokens [T, B] and targets [T, B] ids; hidden from ``init_hidden`` or the last call."""
        if tokens.dim() != 2 or targets.shape != tokens.shape:
            raise ValueError(
                f"tokens and targets must both be [seq_len, batch], got {tuple(tokens.shape)} "
                f"and {tuple(targets.shape)}"
            )
        seq_len, batch = tokens.shape
        embedded = embedding_dropout(self.encoder.weight, tokens, self.dropoute, self.training)
        x = self.lockdrop(embedded, self.dropouti)  # [T, B, emsize]
        new_hidden = []
        for index, rnn in enumerate(self.rnns):
            raw, state = rnn(x, hidden[index])  # [T, B, size_l]
            new_hidden.append(state)
            x = self.lockdrop(raw, self.dropouth) if index < len(self.rnns) - 1 else raw
        output = self.lockdrop(raw, self.dropout)  # [T, B, d]
        flat = output.reshape(seq_len * batch, output.size(2))  # [T * B, d]
        nll = self.decoder(flat, targets.reshape(-1)).view(seq_len, batch)  # [T, B]
        ar = output.pow(2).mean()
        tar = (raw[1:] - raw[:-1]).pow(2).mean() if seq_len > 1 else raw.new_zeros(())
        return LMOutput(nll, new_hidden, ar, tar)
