"""AWD-LSTM: a 3-layer LSTM language model with weight-dropped recurrent weights.

Sources:
- Merity, Keskar, Socher (2018), "Regularizing and Optimizing LSTM Language Models" (ICLR);
  code: salesforce/awd-lstm-lm (model.py, weight_drop.py, main.py).
- Wan et al. (2013), "Regularization of Neural Networks using DropConnect".

The weight drop (DropConnect on the hidden-to-hidden matrix W_hh, one mask per forward pass,
shared over time steps) is computed functionally: every forward draws ``dropout(W_hh)`` and runs
the wrapped ``nn.LSTM`` through ``torch.func.functional_call`` with that tensor in place of its
parameter. Nothing is patched in place, so the Parameter the optimizer sees is never replaced and
gradients reach it through the dropout. torch's RNN modules support this: they rebuild their flat
weight list when ``functional_call`` swaps a weight (on CUDA, with a cuDNN re-flattening per call).

Defaults are the WikiText-2 profile of the paper's baseline (awd-lstm-lm README, "WT2":
``--dropouth 0.2`` plus main.py defaults): emsize 400, nhid 1150, 3 layers, dropout 0.4,
dropouth 0.2, dropouti 0.65, dropoute 0.1, wdrop 0.5, tied weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from tasks.lm.dropout import LockedDropout, embedding_dropout
from tasks.lm.rnnlm import LMOutput, RNNLanguageModel, layer_sizes

__all__ = ["AWDLSTM", "LMOutput", "LockedDropout", "WeightDropLSTM", "embedding_dropout"]

LSTMState = tuple[torch.Tensor, torch.Tensor]


class WeightDropLSTM(nn.Module):
    """One LSTM layer with DropConnect of rate ``wdrop`` on its hidden-to-hidden weights.

    With ``wdrop`` = 0 (or in eval mode) it computes exactly what the wrapped ``nn.LSTM`` does.
    """

    def __init__(self, input_size: int, hidden_size: int, wdrop: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= wdrop < 1.0:
            raise ValueError(f"wdrop must be in [0, 1), got {wdrop}")
        self.input_size, self.hidden_size, self.wdrop = input_size, hidden_size, wdrop
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=1)

    def init_hidden(self, batch_size: int) -> LSTMState:
        zeros = self.lstm.weight_hh_l0.new_zeros(1, batch_size, self.hidden_size)  # [1, B, H]
        return zeros, zeros.clone()

    def forward(self, x: torch.Tensor, hidden: LSTMState | None = None):
        """x [T, B, input_size], hidden (h, c) [1, B, H] each -> (out [T, B, H], (h, c))."""
        if x.dim() != 3:
            raise ValueError(f"x must be [seq_len, batch, input_size], got {tuple(x.shape)}")
        w_hh = F.dropout(self.lstm.weight_hh_l0, self.wdrop, self.training)  # [4H, H]
        args = (x,) if hidden is None else (x, hidden)
        return functional_call(self.lstm, {"weight_hh_l0": w_hh}, args)


class AWDLSTM(RNNLanguageModel):
    """The AWD-LSTM language model (``num_tokens`` is the vocabulary size)."""

    def __init__(
        self,
        num_tokens: int,
        emsize: int = 400,
        nhid: int = 1150,
        nlayers: int = 3,
        dropout: float = 0.4,
        dropouth: float = 0.2,
        dropouti: float = 0.65,
        dropoute: float = 0.1,
        wdrop: float = 0.5,
        tie_weights: bool = True,
        cutoffs: Sequence[int] | None = None,
    ) -> None:
        sizes = layer_sizes(emsize, nhid, nlayers, tie_weights)
        rnns = [WeightDropLSTM(sizes[i], sizes[i + 1], wdrop) for i in range(nlayers)]
        super().__init__(
            num_tokens,
            emsize,
            rnns,
            dropout=dropout,
            dropouth=dropouth,
            dropouti=dropouti,
            dropoute=dropoute,
            tie_weights=tie_weights,
            cutoffs=cutoffs,
        )
