"""Quasi-recurrent neural network (QRNN) language model in pure PyTorch.

Sources:
- Bradbury, Merity, Xiong, Socher (2017), "Quasi-Recurrent Neural Networks" (ICLR): gates from a
  width-k convolution over time, Z = tanh(W_z * X), F = sigmoid(W_f * X), O = sigmoid(W_o * X);
  "fo-pooling" c_t = f_t * c_{t-1} + (1 - f_t) * z_t, h_t = o_t * c_t; zoneout on the forget
  gate, F = 1 - dropout(1 - F) without rescaling (its expectation at evaluation).
- salesforce/pytorch-qrnn (QRNNLayer) and awd-lstm-lm model.py: window 2 on the first layer and 1
  on the others, the previous batch's last input carried across batches (``save_prev_x``), weight
  drop on the gate matrix; WikiText-103 run of awd-lstm-lm's README: 4 layers, emsize 400,
  nhid 2500, dropout/dropouth/dropouti 0.1, dropoute 0, wdrop 0, split softmax at
  [2800, 20000, 76000].

The recurrence is a first-order linear scan, computed here by a log-depth parallel
(Hillis-Steele) scan over time: ceil(log2 T) steps of element-wise ops on [T, B, H] tensors
instead of T sequential steps, with only products of gates in (0, 1) and sums (no division, so no
underflow trouble). ``forget_mult(..., method="loop")`` is the plain sequential reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tasks.lm.rnnlm import RNNLanguageModel, layer_sizes

QRNNState = tuple[torch.Tensor, torch.Tensor]


def forget_mult(
    f: torch.Tensor, z: torch.Tensor, h0: torch.Tensor | None = None, method: str = "scan"
) -> torch.Tensor:
    """All states of c_t = f_t * c_{t-1} + (1 - f_t) * z_t for f, z [T, B, H], c_0 = h0 [B, H]."""
    if f.dim() != 3 or f.shape != z.shape:
        raise ValueError(f"f and z must be [T, B, H] alike, got {tuple(f.shape)}, {tuple(z.shape)}")
    if h0 is None:
        h0 = f.new_zeros(f.shape[1:])
    if method == "loop":
        state, states = h0, []
        for t in range(f.size(0)):
            state = f[t] * state + (1.0 - f[t]) * z[t]  # [B, H]
            states.append(state)
        return torch.stack(states)  # [T, B, H]
    if method != "scan":
        raise ValueError(f"unknown method {method!r}; allowed: scan, loop")
    # c_t = a_t c_{t-1} + b_t; an element (a, b) composed after (a', b') is (a a', a b' + b).
    a = f
    b = (1.0 - f) * z
    b = torch.cat([b[:1] + a[:1] * h0.unsqueeze(0), b[1:]])  # fold c_0 into the first step
    steps, shift = f.size(0), 1
    while shift < steps:
        b = torch.cat([b[:shift], b[shift:] + a[shift:] * b[:-shift]])  # [T, B, H]
        if 2 * shift < steps:
            a = torch.cat([a[:shift], a[shift:] * a[:-shift]])  # [T, B, H]
        shift *= 2
    return b


class QRNNLayer(nn.Module):
    """One QRNN layer with output gate.

    Args:
        input_size, hidden_size: feature sizes.
        window: convolution width k over time (the previous k - 1 inputs are carried over).
        zoneout: probability of keeping c_{t-1} (forcing f_t = 1) per unit and step.
        wdrop: DropConnect rate on the gate matrix (awd-lstm-lm's WeightDrop on ``linear``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        window: int = 2,
        zoneout: float = 0.0,
        wdrop: float = 0.0,
    ) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.input_size, self.hidden_size, self.window = input_size, hidden_size, window
        self.zoneout, self.wdrop = zoneout, wdrop
        self.linear = nn.Linear(window * input_size, 3 * hidden_size)

    def init_hidden(self, batch_size: int) -> QRNNState:
        """(c [B, H], the last window - 1 inputs [window - 1, B, input_size]), all zero."""
        weight = self.linear.weight
        return (
            weight.new_zeros(batch_size, self.hidden_size),
            weight.new_zeros(self.window - 1, batch_size, self.input_size),
        )

    def forward(
        self, x: torch.Tensor, hidden: QRNNState, method: str = "scan"
    ) -> tuple[torch.Tensor, QRNNState]:
        """x [T, B, input_size] -> (h [T, B, H], (c_T [B, H], last inputs [k - 1, B, in]))."""
        if x.dim() != 3:
            raise ValueError(f"x must be [seq_len, batch, input_size], got {tuple(x.shape)}")
        steps = x.size(0)
        c0, previous = hidden
        padded = torch.cat([previous, x])  # [k - 1 + T, B, in]
        last = self.window - 1
        # Column block j holds x_{t-j}: the current input first, as pytorch-qrnn.
        source = torch.cat([padded[last - j : last - j + steps] for j in range(self.window)], 2)
        weight = F.dropout(self.linear.weight, self.wdrop, self.training)  # [3H, k * in]
        gates = F.linear(source, weight, self.linear.bias)  # [T, B, 3H]
        z, f, o = gates.chunk(3, dim=2)  # [T, B, H] each
        z, f = torch.tanh(z), torch.sigmoid(f)
        if self.zoneout:
            if self.training:
                keep = torch.empty_like(f).bernoulli_(1.0 - self.zoneout)  # 0: zone out
                f = 1.0 - keep * (1.0 - f)
            else:
                f = 1.0 - (1.0 - self.zoneout) * (1.0 - f)
        c = forget_mult(f, z, c0, method)  # [T, B, H]
        h = torch.sigmoid(o) * c
        return h, (c[-1], padded[padded.size(0) - last :])


class QRNNLM(RNNLanguageModel):
    """QRNN language model with AWD-LSTM's dropouts, tying and (for large V) adaptive softmax.

    Defaults are the WikiText-103 profile; ``windows`` gives each layer's convolution width
    (default 2 for the first layer, 1 for the others, as awd-lstm-lm).
    """

    def __init__(
        self,
        num_tokens: int,
        emsize: int = 400,
        nhid: int = 2500,
        nlayers: int = 4,
        dropout: float = 0.1,
        dropouth: float = 0.1,
        dropouti: float = 0.1,
        dropoute: float = 0.0,
        wdrop: float = 0.0,
        zoneout: float = 0.0,
        windows: Sequence[int] | None = None,
        tie_weights: bool = True,
        cutoffs: Sequence[int] | None = (2800, 20000, 76000),
    ) -> None:
        windows = list(windows) if windows is not None else [2] + [1] * (nlayers - 1)
        if len(windows) != nlayers:
            raise ValueError(f"{len(windows)} windows for {nlayers} layers")
        sizes = layer_sizes(emsize, nhid, nlayers, tie_weights)
        rnns = [
            QRNNLayer(sizes[i], sizes[i + 1], windows[i], zoneout, wdrop) for i in range(nlayers)
        ]
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
