"""FRAGE: an adversarial discriminator between frequent and rare embedding rows.

Source: Gong, He, Tan, Qin, Wang, Liu (2018), "FRAGE: Frequency-Agnostic Word Representation"
(NeurIPS), Eq. 3-4; the harmless-transfer paper uses it as `l_transfer` for language modelling
(Sec. 5.1) and, as an adversarial network (Tzeng et al., 2017), for CTR prediction (Sec. 5.3).

A discriminator D: R^d -> R (a logit; `nn.Linear(d, 1)`, or Linear-LeakyReLU-Linear when `hidden`
is set) tells source rows s_1..s_m (frequent, label 1) from target rows t_1..t_n (rare, label 0).
With sigma the logistic function and softplus(z) = log(1 + e^z) = -log sigma(-z):

    discriminator loss (class-weighted BCE, each class half, whatever m and n):
        L_D = 1/2 * (1/m) sum_i -log sigma(D(s_i)) + 1/2 * (1/n) sum_j -log(1 - sigma(D(t_j)))
            = 1/2 * mean_i softplus(-D(s_i)) + 1/2 * mean_j softplus(D(t_j))

    embedding loss (`forward`, rare rows should look frequent):
        L_E = (1/n) sum_j -log sigma(D(t_j)) = mean_j softplus(-D(t_j))

Gong et al. write the embedding side as the minimax -L_D; L_E is its non-saturating form
(Goodfellow et al., 2014), restricted to the target rows, which are the only rows the plug-in
differentiates. `auxiliary_step` minimises L_D by one step of the module's own optimizer on
detached rows; `forward` evaluates L_E with detached discriminator weights, so it neither updates
D nor leaves gradients on its parameters, and the gradient reaches `target` only.

The discriminator is initialised (PyTorch's default nn.Linear scheme) from its own generator
seeded by `seed`; the global RNG is left untouched, so runs that differ only in the transfer loss
see the same dropout and batch streams. The optimizer state travels in `state_dict()` through
`get_extra_state`, and loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from harmless.losses.base import TransferLoss, check_rows

logger = logging.getLogger(__name__)

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def build_discriminator(
    dim: int, hidden: int | None, negative_slope: float, generator: torch.Generator
) -> nn.Module:
    """Linear(d, 1), or Linear(d, hidden)-LeakyReLU-Linear(hidden, 1), initialised from `generator`.

    The layers are built inside `fork_rng`, so their default initialisation does not advance the
    global CPU RNG, and then re-initialised with nn.Linear's default scheme from `generator`.
    """
    with torch.random.fork_rng(devices=[]):
        if hidden is None:
            net: nn.Module = nn.Linear(dim, 1)
        else:
            net = nn.Sequential(
                nn.Linear(dim, hidden), nn.LeakyReLU(negative_slope), nn.Linear(hidden, 1)
            )
    for layer in net.modules():
        if isinstance(layer, nn.Linear):
            init_linear(layer, generator)
    return net


def init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """nn.Linear.reset_parameters, drawing from `generator` instead of the global RNG."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        bound = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def balanced_bce(source_logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Class-weighted BCE: source [m] labelled 1, target [n] labelled 0, each class half."""
    return 0.5 * F.softplus(-source_logits).mean() + 0.5 * F.softplus(target_logits).mean()


def balanced_accuracy(source_logits: torch.Tensor, target_logits: torch.Tensor) -> float:
    """Mean of the per-class accuracies; a logit > 0 predicts "source"."""
    source_acc = (source_logits > 0).float().mean()
    target_acc = (target_logits <= 0).float().mean()
    return float(0.5 * (source_acc + target_acc))


class FRAGE(TransferLoss):
    """Gong et al. (2018) adversarial transfer loss with its own discriminator and optimizer.

    Args:
        dim: row width d.
        hidden: None for a linear discriminator, else the MLP's hidden width.
        negative_slope: LeakyReLU slope of the MLP.
        optimizer: "adam" (default), "adamw" or "sgd".
        lr: discriminator learning rate.
        weight_decay: discriminator weight decay.
        seed: seed of the generator that initialises the discriminator.
    """

    def __init__(
        self,
        dim: int,
        hidden: int | None = None,
        negative_slope: float = 0.2,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._check_config(dim, hidden, optimizer, lr, weight_decay)
        self.dim, self.hidden, self.seed = dim, hidden, seed
        self.optimizer_name, self.lr, self.weight_decay = optimizer, lr, weight_decay
        generator = torch.Generator(device="cpu").manual_seed(seed)
        self.discriminator = build_discriminator(dim, hidden, negative_slope, generator)
        self.optimizer = OPTIMIZERS[optimizer](
            self.discriminator.parameters(), lr=lr, weight_decay=weight_decay
        )
        self.steps = 0

    @staticmethod
    def _check_config(dim, hidden, optimizer, lr, weight_decay) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if hidden is not None and hidden < 1:
            raise ValueError(f"hidden must be >= 1 or None, got {hidden}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {lr}, {weight_decay}")

    def _rows(self, name: str, rows: torch.Tensor) -> torch.Tensor:
        """Validated rows [n, d] cast to the discriminator's dtype."""
        check_rows(name, rows, self.dim)
        return rows.to(next(self.discriminator.parameters()).dtype)

    def logits(self, rows: torch.Tensor) -> torch.Tensor:
        """Discriminator logits [n] for `rows` [n, d] (a logit > 0 means "source")."""
        return self.discriminator(rows).squeeze(-1)

    def auxiliary_step(self, source: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """One optimizer step on L_D with detached rows; returns the pre-step loss and accuracy."""
        source = self._rows("source", source).detach()
        target = self._rows("target", target).detach()
        with torch.enable_grad():
            source_logits, target_logits = self.logits(source), self.logits(target)
            loss = balanced_bce(source_logits, target_logits)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # no stale grads for any other optimizer
        self.steps += 1
        stats = {
            "disc_loss": float(loss.detach()),
            "disc_acc": balanced_accuracy(source_logits.detach(), target_logits.detach()),
        }
        logger.debug("FRAGE discriminator step %d: %s", self.steps, stats)
        return stats

    def forward(self, source: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """L_E on `target` [nt, d] with the discriminator frozen; `source` is only validated."""
        if source is not None:
            check_rows("source", source, self.dim)
        target = self._rows("target", target)
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = functional_call(self.discriminator, frozen, (target,)).squeeze(-1)
        return F.softplus(-logits).mean()

    def get_extra_state(self) -> dict:
        """Optimizer state and step count, carried by `state_dict()`."""
        return {"optimizer": self.optimizer.state_dict(), "steps": self.steps}

    def set_extra_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, hidden={self.hidden}, optimizer={self.optimizer_name!r}, "
            f"lr={self.lr}, weight_decay={self.weight_decay}, seed={self.seed}"
        )
