"""DeepFM and AutoInt+ over one embedding table shared by all fields, as in PEP.

Both models read records of global value ids [B, F] (see :mod:`tasks.ctr.data`) through ONE
table `self.embedding` ([num_items, embed_dim], Xavier-uniform as PEP). The table may carry PEP's
fixed pruning `mask` (a bool buffer [num_items, embed_dim] on `self.embedding`): the embedding a
model uses is then weight * mask. During PEP's search stage a reparameterisation (the soft
threshold of :mod:`tasks.ctr.pep`) is set as `self.reparam`, and the model uses
reparam(weight) instead.

- DeepFM (Guo et al. 2017): first-order linear term (its own [num_items, 1] table + bias) + FM
  second-order term + an MLP on the concatenated embeddings, summed into one logit.
- AutoInt+ (Song et al. 2019, the "+" adds the MLP): embeddings projected to the attention
  width, a stack of multi-head self-attention layers over the fields, a residual projection of
  the embeddings, ReLU, a linear read-out; plus the MLP. NOTE: this follows PEP's AutoInt (the one
  the paper ran): torch's MultiheadAttention (with its output projection; `FieldAttention`
  computes the same function with the same parameters, faster on CPU for a handful of
  fields: `python benchmarks/bench_ctr.py --attention`), one residual added
  after the whole stack, and no linear term by default (`linear=True` adds DeepFM's); Song et
  al. add a residual and a ReLU in every layer.

MLPs follow torchfm (used by PEP): Linear -> BatchNorm1d -> ReLU -> Dropout per hidden layer, then
Linear(-> 1). PEP's hyperparameters: MovieLens-1M dim 32, MLP [100, 100]; Criteo dim 24, MLP
[400, 400, 400]; MLP dropout 0.2; AutoInt attention width 64, 2 heads, 3 layers, attention
dropout 0.4 (MovieLens-1M) / 0 (Criteo).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def mlp_layers(in_dim: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    """torchfm's MLP: (Linear, BatchNorm1d, ReLU, Dropout) per hidden width, then Linear(-> 1)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.BatchNorm1d(width), nn.ReLU()]
        layers.append(nn.Dropout(dropout))
        in_dim = width
    layers.append(nn.Linear(in_dim, 1))
    return nn.Sequential(*layers)


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class FieldAttention(nn.Module):
    """Multi-head self-attention over a few fields: nn.MultiheadAttention(batch_first=True)'s
    function and parameters (in_proj_weight/bias, out_proj; its state dict loads here), through
    the fused F.scaled_dot_product_attention. With F ~ 6-40 fields, nn.MultiheadAttention's
    [B*H] tiny matrix products (and einsums over them, this class's earlier form) cost more than
    the projections: `python benchmarks/bench_ctr.py --attention` times both."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.dropout = num_heads, float(dropout)
        reference = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.in_proj_weight = nn.Parameter(reference.in_proj_weight.detach().clone())
        self.in_proj_bias = nn.Parameter(reference.in_proj_bias.detach().clone())
        self.out_proj = nn.Linear(dim, dim)
        self.out_proj.load_state_dict(
            {"weight": reference.out_proj.weight, "bias": reference.out_proj.bias}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, F, A] -> [B, F, A]
        batch, fields, width = x.shape
        heads = self.num_heads
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # [B, F, 3A]
        qkv = qkv.view(batch, fields, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, H, F, A/H] each
        if self.training and self.dropout > 0:
            out = attend_with_dropout(q, k, v, self.dropout)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # [B, H, F, A/H]
        return self.out_proj(out.transpose(1, 2).reshape(batch, fields, width))


def attend_with_dropout(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) with dropout p on the weights, times v; q, k, v [B, H, F, d].

    Broadcast products instead of F.scaled_dot_product_attention: with dropout, torch's CPU SDPA
    falls back to a path ~2x slower than this for a handful of fields (measured on AutoInt's
    [1024, 2, 6, 16], forward and backward)."""
    scores = (q.unsqueeze(3) * k.unsqueeze(2)).sum(-1) * (1.0 / math.sqrt(q.shape[-1]))
    weights = F.dropout(scores.softmax(dim=-1), p, training=True)  # [B, H, Fq, Fk]
    return (weights.unsqueeze(-1) * v.unsqueeze(2)).sum(3)


class CTRModel(nn.Module):
    """The shared embedding table, its optional mask and reparameterisation, the input checks."""

    def __init__(self, num_items: int, num_fields: int, embed_dim: int) -> None:
        super().__init__()
        self.num_items = _positive_int(num_items, "num_items")
        self.num_fields = _positive_int(num_fields, "num_fields")
        self.embed_dim = _positive_int(embed_dim, "embed_dim")
        self.embedding = nn.Embedding(num_items, embed_dim)
        nn.init.xavier_uniform_(self.embedding.weight)
        self.embedding.register_buffer("mask", None)
        self.register_module("reparam", None)

    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Fix PEP's mask (bool [num_items, embed_dim]) and zero the weights it prunes."""
        if mask is None:
            self.embedding.mask = None
            return
        shape = tuple(self.embedding.weight.shape)
        if tuple(mask.shape) != shape:
            raise ValueError(f"mask must have shape {shape}, got {tuple(mask.shape)}")
        mask = mask.to(device=self.embedding.weight.device, dtype=torch.bool)
        self.embedding.mask = mask
        with torch.no_grad():
            self.embedding.weight.mul_(mask)

    def embedding_weight(self) -> torch.Tensor:
        """The table the model uses: reparam(weight) and/or weight * mask. [num_items, dim]"""
        weight = self.embedding.weight
        if self.reparam is not None:
            weight = self.reparam(weight)
        if self.embedding.mask is not None:
            weight = weight * self.embedding.mask
        return weight

    @torch.no_grad()
    def nonzero_embedding_params(self) -> int:
        """Non-zero entries of the table the model uses (PEP's parameter count)."""
        return int(torch.count_nonzero(self.embedding_weight()))

    def check_ids(self, ids: torch.Tensor) -> None:
        if ids.dim() != 2 or ids.shape[1] != self.num_fields:
            raise ValueError(
                f"ids must have shape [batch, {self.num_fields}] (one global id per field), "
                f"got shape {tuple(ids.shape)}"
            )

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, F] ids -> [B, F, d] embeddings."""
        self.check_ids(ids)
        if self.reparam is not None:
            return F.embedding(ids, self.embedding_weight())
        emb = self.embedding(ids)  # [B, F, d]
        if self.embedding.mask is not None:
            emb = emb * self.embedding.mask[ids]  # gathering the mask is cheaper than the table
        return emb


class DeepFM(CTRModel):
    """DeepFM: linear + FM + MLP logits over one shared embedding table."""

    def __init__(
        self,
        num_items: int,
        num_fields: int,
        embed_dim: int,
        mlp: Sequence[int],
        dropout: float = 0.0,
    ) -> None:
        super().__init__(num_items, num_fields, embed_dim)
        self.linear = nn.Embedding(num_items, 1)  # first-order weights (torchfm's N(0, 1) init)
        self.bias = nn.Parameter(torch.zeros(1))
        self.mlp = mlp_layers(num_fields * embed_dim, list(mlp), dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ids: [B, F] global ids -> logits [B]
        emb = self.embed(ids)  # [B, F, d]
        batch = emb.shape[0]
        first = self.linear(ids).sum(dim=(1, 2)) + self.bias  # [B]
        square_of_sum = emb.sum(dim=1).square()  # [B, d]
        sum_of_square = emb.square().sum(dim=1)  # [B, d]
        second = 0.5 * (square_of_sum - sum_of_square).sum(dim=1)  # [B]
        deep = self.mlp(emb.reshape(batch, -1)).squeeze(1)  # [B, F * d] -> [B]
        return first + second + deep


class AutoInt(CTRModel):
    """AutoInt+: multi-head self-attention over fields with a residual, plus an MLP."""

    def __init__(
        self,
        num_items: int,
        num_fields: int,
        embed_dim: int,
        mlp: Sequence[int],
        dropout: float = 0.0,
        attn_dim: int = 64,
        num_heads: int = 2,
        num_layers: int = 3,
        attn_dropout: float = 0.0,
        linear: bool = False,
    ) -> None:
        super().__init__(num_items, num_fields, embed_dim)
        if attn_dim % num_heads:
            raise ValueError(f"attn_dim {attn_dim} must be divisible by num_heads {num_heads}")
        self.attn_in = nn.Linear(embed_dim, attn_dim)
        self.attn_layers = nn.ModuleList(
            FieldAttention(attn_dim, num_heads, dropout=attn_dropout) for _ in range(num_layers)
        )
        self.residual = nn.Linear(embed_dim, attn_dim)
        self.attn_out = nn.Linear(num_fields * attn_dim, 1)
        self.mlp = mlp_layers(num_fields * embed_dim, list(mlp), dropout)
        self.linear = nn.Embedding(num_items, 1) if linear else None
        self.bias = nn.Parameter(torch.zeros(1)) if linear else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ids: [B, F] global ids -> logits [B]
        emb = self.embed(ids)  # [B, F, d]
        batch = emb.shape[0]
        hidden = self.attn_in(emb)  # [B, F, A]
        for layer in self.attn_layers:
            hidden = layer(hidden)  # [B, F, A]
        hidden = F.relu(hidden + self.residual(emb))  # [B, F, A]
        logits = self.attn_out(hidden.reshape(batch, -1)).squeeze(1)  # [B, F * A] -> [B]
        logits = logits + self.mlp(emb.reshape(batch, -1)).squeeze(1)  # [B, F * d] -> [B]
        if self.linear is not None:
            logits = logits + self.linear(ids).sum(dim=(1, 2)) + self.bias  # [B]
        return logits
