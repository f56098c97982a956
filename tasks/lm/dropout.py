"""The dropouts of AWD-LSTM: variational (locked) dropout and embedding (word) dropout.

Sources:
- Gal & Ghahramani (2016), "A Theoretically Grounded Application of Dropout in Recurrent Neural
  Networks": one mask per sequence, shared by all time steps (locked dropout), and dropping whole
  words, i.e. rows of the embedding matrix (embedding dropout).
- salesforce/awd-lstm-lm, locked_dropout.py and embed_regularize.py (``embedded_dropout``).

Both draw their masks from the global torch RNG, like every torch dropout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence: x [T, B, H] is multiplied by m [1, B, H] / (1 - p)."""

    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"x must be [seq_len, batch, features], got shape {tuple(x.shape)}")
        if not self.training or p == 0.0:
            return x
        _, batch, features = x.shape
        mask = x.new_empty(1, batch, features).bernoulli_(1.0 - p).div_(1.0 - p)  # [1, B, H]
        return x * mask


def embedding_dropout(
    weight: torch.Tensor, tokens: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """Embeddings [*, d] of ``tokens`` [*] with whole rows of ``weight`` [V, d] dropped.

    One Bernoulli(1 - p) draw per vocabulary row, scaled by 1 / (1 - p), as awd-lstm-lm's
    ``embedded_dropout``; a dropped word is zero at every position of the batch. Only the looked-up
    rows are scaled, which gives the same values and gradients as scaling the whole matrix.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be [num_tokens, dim], got shape {tuple(weight.shape)}")
    embedded = F.embedding(tokens, weight)  # [*, d]
    if not training or p == 0.0:
        return embedded
    keep = weight.new_empty(weight.size(0)).bernoulli_(1.0 - p).div_(1.0 - p)  # [V]
    return embedded * keep[tokens].unsqueeze(-1)
