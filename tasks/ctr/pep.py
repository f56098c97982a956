"""PEP: learnable embedding sizes by soft-threshold pruning (Liu et al. 2021, ICLR).

Stage 1 (search) reparameterises the embedding table V as

    S(V, s) = sign(V) * relu(|V| - sigmoid(s))

with a learnable threshold s, and trains the model on S(V, s) with Adam until the number of
non-zero entries of S(V, s) falls to the parameter budget (10k / 20k / 30k on MovieLens-1M,
20k / 50k on Criteo in the paper's Tables 6-7). The mask is the pattern of non-zeros at the first
step the count is at or below the budget. Stage 2 (retrain) starts again from the SAME
initialisation (the lottery-ticket choice PEP reports as best) with the mask fixed:
`model.set_mask(mask)` on the freshly initialised model, then ordinary training.

Threshold granularity: PEP's released settings use one threshold per feature value and
dimension ("feature_dim", s of shape [num_items, dim]) for both datasets; "global" ([1]),
"dimension" ([dim]) and "feature" ([num_items, 1]) are the coarser options of the paper.
PEP's other settings, used as defaults here: s initialised at -15 (MovieLens-1M) or -150
(Criteo), Adam lr 1e-3 with L2 weight decay 1e-5 on every parameter (s included: with Adam this
decay, not the loss, is what moves a threshold deep in the sigmoid's flat tail), gradient-norm
clipping at 100, batches of 1024.

NOTE: PEP counts the non-zeros after every step and saves one budget per step; here every budget
the count has reached at a step gets that step's mask (they differ only if one step crosses
several budgets).

Measured here (MovieLens-1M without timestamp, 3,851 values x 32 = 123,232 entries, DeepFM, PEP's
settings, seed 0): the count stays near 123k for ~10 epochs while the thresholds climb out of the
sigmoid's tail, reaches 30k after 30 epochs, 20k after 48 and 18.4k after 60; below 20k it falls
by only ~100-300 per epoch, so the 10k budget needs a long search (hence max_epochs = 500).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tasks.ctr.cache import atomic_file, digest, resolve_cache_dir

log = logging.getLogger(__name__)

GRANULARITIES = ("global", "dimension", "feature", "feature_dim")
PEP_BUDGETS = {"movielens1m": (10_000, 20_000, 30_000), "criteo": (20_000, 50_000)}
THRESHOLD_INIT = {"movielens1m": -15.0, "criteo": -150.0}


def soft_threshold(v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """S(v, s) = sign(v) * relu(|v| - sigmoid(s)), s broadcast against v."""
    return torch.sign(v) * F.relu(v.abs() - torch.sigmoid(s))


class SoftThreshold(nn.Module):
    """The learnable threshold s of one [num_items, dim] table, at the chosen granularity."""

    def __init__(
        self, num_items: int, dim: int, granularity: str = "feature_dim", init: float = -15.0
    ) -> None:
        super().__init__()
        shapes = {
            "global": (1,),
            "dimension": (dim,),
            "feature": (num_items, 1),
            "feature_dim": (num_items, dim),
        }
        if granularity not in shapes:
            raise ValueError(f"unknown granularity {granularity!r}; allowed: {GRANULARITIES}")
        self.granularity = granularity
        self.s = nn.Parameter(torch.full(shapes[granularity], float(init)))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return soft_threshold(weight, self.s)


class BudgetNotReached(RuntimeError):
    """The search ran out of epochs; `found` holds the budgets it did reach."""

    def __init__(self, message: str, found: dict[int, PEPMask]) -> None:
        super().__init__(message)
        self.found = found


@dataclass
class PEPMask:
    """A searched mask: bool [num_items, dim], its non-zero count, where the search took it
    (optimizer step, and the 1-based epoch under way then; 0 and 0 before any training)."""

    mask: torch.Tensor = field(repr=False)
    count: int
    budget: int
    step: int
    epoch: int


def search_masks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    budgets: Sequence[int],
    *,
    seed: int,
    batch_size: int = 1024,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    granularity: str = "feature_dim",
    threshold_init: float = -15.0,
    threshold_lr: float | None = None,
    grad_clip: float | None = 100.0,
    max_epochs: int = 500,
) -> dict[int, PEPMask]:
    """Run PEP's search stage on a copy of `model` until every budget is reached.

    Args:
        model: a freshly initialised CTR model (tasks.ctr.models); it is not modified.
        x: int [N, F] training ids and y: float [N] labels, on the device to train on.
        budgets: numbers of non-zero embedding parameters to stop at.
        seed: seeds batch order and dropout (the global RNG state is restored afterwards).
        threshold_lr: Adam's learning rate for the thresholds s (default: `lr`, as PEP). A larger
            one shortens the search (the CPU profile's choice, see the module docstring).
        max_epochs: BudgetNotReached (a RuntimeError) if some budget is still above the count
            after this many epochs (the module docstring has measured search lengths).

    Returns:
        budget -> PEPMask (mask on the CPU).
    """
    if x.dim() != 2 or y.shape != x.shape[:1]:
        raise ValueError(f"x must be [N, F] and y [N], got {tuple(x.shape)} and {tuple(y.shape)}")
    left = sorted({int(b) for b in budgets}, reverse=True)
    search = copy.deepcopy(model).train()
    search.set_mask(None)
    table = search.embedding.weight
    search.reparam = SoftThreshold(table.shape[0], table.shape[1], granularity, threshold_init)
    search.reparam.to(table.device)
    thresholds = list(search.reparam.parameters())
    others = [p for n, p in search.named_parameters() if not n.startswith("reparam.")]
    optimizer = torch.optim.Adam(
        [{"params": others}, {"params": thresholds, "lr": threshold_lr or lr}],
        lr=lr,
        weight_decay=weight_decay,
    )
    generator = torch.Generator().manual_seed(seed)
    found: dict[int, PEPMask] = {}
    step, epoch, loss = 0, 0, torch.tensor(float("nan"))

    @torch.no_grad()
    def record() -> int:
        pruned = search.embedding_weight()
        count = int(torch.count_nonzero(pruned))
        while left and count <= left[0]:
            budget = left.pop(0)
            found[budget] = PEPMask((pruned != 0).cpu(), count, budget, step, epoch)
            log.info("PEP: budget %d reached at step %d (epoch %d): %d", budget, step, epoch, count)
        return count

    count = record()
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        bar = tqdm(total=max_epochs, desc="PEP search", unit="epoch", disable=None)
        for index in range(max_epochs):
            if not left:
                break
            epoch = index + 1  # record() reads it: the epoch under way, 1-based
            order = torch.randperm(x.shape[0], generator=generator).to(x.device)
            for start in range(0, x.shape[0], batch_size):
                if not left:
                    break
                rows = order[start : start + batch_size]
                logits = search(x[rows].long())
                loss = F.binary_cross_entropy_with_logits(logits, y[rows].float())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(search.parameters(), grad_clip)
                optimizer.step()
                step += 1
                count = record()
            bar.update(1)
            bar.set_postfix(nonzero=count, loss=f"{loss.item():.4f}")
            level = logging.INFO if epoch % 10 == 0 else logging.DEBUG
            log.log(level, "PEP epoch %d: %d non-zero embedding parameters", epoch, count)
        bar.close()
    if left:
        raise BudgetNotReached(
            f"PEP search stopped after {max_epochs} epochs at {count} non-zero embedding "
            f"parameters, above the budget(s) {left}; raise max_epochs",
            found,
        )
    return found


def mask_path(cache_dir: str | Path | None, key: dict[str, Any], budget: int) -> Path:
    """Where the mask of (key, budget) is cached."""
    name = f"pep-{digest({**key, 'budget': int(budget)})}.npz"
    return resolve_cache_dir(cache_dir) / "ctr" / "masks" / name


def save_mask(path: Path, found: PEPMask) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            mask=found.mask.numpy(),
            meta=np.array([found.count, found.budget, found.step, found.epoch], dtype=np.int64),
        )


def load_mask(path: Path) -> PEPMask:
    with np.load(path) as archive:
        count, budget, step, epoch = (int(v) for v in archive["meta"])
        return PEPMask(torch.from_numpy(archive["mask"]), count, budget, step, epoch)


def search_mask(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    budget: int,
    *,
    seed: int,
    cache_dir: str | Path | None = None,
    cache_key: dict[str, Any] | None = None,
    also: Sequence[int] = (),
    **options: Any,
) -> PEPMask:
    """PEP's mask for `budget`, from the disk cache or from a search (then cached).

    With `cache_key` (what identifies the run: dataset, fields, model, dim, split seed, seed...),
    the mask is looked up under `cache_dir` first. The search also saves the masks of the
    budgets in `also` it passes on the way (the larger ones are on the same trajectory), so the
    other cells of a table reuse them. `options` go to :func:`search_masks`.
    """
    key = None if cache_key is None else {**cache_key, "seed": seed, "search": options}
    if key is not None:
        path = mask_path(cache_dir, key, budget)
        if path.is_file():
            cached = load_mask(path)
            log.info("PEP mask for budget %d from %s (count %d)", budget, path, cached.count)
            return cached
    wanted = {int(budget)}
    if key is not None:
        wanted |= {
            int(b) for b in also if b > budget and not mask_path(cache_dir, key, b).is_file()
        }
    found: dict[int, PEPMask] = {}
    try:
        found = search_masks(model, x, y, sorted(wanted), seed=seed, **options)
    except BudgetNotReached as error:
        found = error.found
        raise
    finally:
        if key is not None:
            for b, result in found.items():
                save_mask(mask_path(cache_dir, key, b), result)
    return found[int(budget)]
