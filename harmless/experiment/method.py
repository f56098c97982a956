"""From a method config to the plug-in: frequency split, optional selection, transfer loss, mode.

baseline     mode none                       (main loss only)
fixed        mode fixed, lam = 1e-2          (+T, + FRAGE, + CosReg: Eq. 1)
select       mode fixed on the selected target domain T'
lexico       mode lexico (Algorithm 1) on the frequency-based target domain
ours         select + lexico
scale-only   Algorithm 1 with the transfer gradient set to zero (the rescaling alone)
lexico-global  one lambda for all parameters (Eq. 5-7)
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harmless.cooccur import top_k_anchors
from harmless.domains import Domains, split_by_frequency
from harmless.experiment.task import TableInfo
from harmless.losses.base import TransferLoss
from harmless.plugin import MODES, SCOPES, HarmlessTransfer
from harmless.selection import select_target

log = logging.getLogger(__name__)

SPLIT_RULES = ("top_fraction", "threshold", "top_k")
AGAINST = ("anchors", "source")


@dataclass
class MethodConfig:
    """The method axis. Every field is checked when the method is built."""

    name: str = "baseline"
    mode: str = "none"  # one of harmless.plugin.MODES
    select: bool = False  # restrict the target domain to T' (Eq. 3)
    lam: float = 1e-2  # fixed coefficient of mode "fixed"
    alpha: float = 2.0  # barrier coefficient of Algorithm 1
    scope: str = "batch"  # transfer on the target rows in the batch, or on all target rows
    split_rule: str = "top_fraction"  # how the frequent (source) domain is chosen
    split_value: float = 0.2  # the 80/20 rule by default
    anchors: int = 1000  # top-K frequent items that co-occurrence vectors count against
    quantile: float = 0.2  # share of the rough target domain that selection drops
    # Selection compares with the anchors (the LM's top-1K words, all frequent) or with the whole
    # source domain (CTR: a field's frequent values; the anchors there span every field).
    against: str = "anchors"
    source_sample: int | None = 1024  # source rows drawn per step as the reference sample
    target_sample: int | None = None  # cap on target rows per step

    def __post_init__(self) -> None:
        _check_choice("method.mode", self.mode, MODES)
        _check_choice("method.scope", self.scope, SCOPES)
        _check_choice("method.split_rule", self.split_rule, SPLIT_RULES)
        _check_choice("method.against", self.against, AGAINST)
        if not 0.0 <= self.quantile < 1.0:
            raise ValueError(f"method.quantile must be in [0, 1), got {self.quantile}")
        if self.alpha < 0 or self.lam < 0:
            raise ValueError(
                f"method.alpha and method.lam must be >= 0, got {self.alpha}, {self.lam}"
            )


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def build_domains(
    tables: dict[str, TableInfo], cfg: MethodConfig, out_dir: Path | None = None
) -> tuple[dict[str, Domains], dict[str, Any]]:
    """Split each table's items by frequency and, if asked, keep only the selected targets."""
    domains, report = {}, {}
    for name, info in tables.items():
        # Items never seen in training carry no frequency information: neither domain.
        items = np.arange(len(info.counts)) if info.items is None else np.asarray(info.items)
        items = items[np.asarray(info.counts)[items] > 0]
        dom = split_by_frequency(
            info.counts, cfg.split_rule, cfg.split_value, items=items, exclude=info.exclude
        )
        entry = {"rough": dom.summary()}
        if cfg.select:
            if dom.source.size == 0:
                raise ValueError(
                    f"method.select needs a source domain, but split_rule={cfg.split_rule} "
                    f"split_value={cfg.split_value} leaves table '{name}' without one"
                )
            # Co-occurrence columns: the K most frequent items of the whole table (all fields).
            anchors = top_k_anchors(info.counts, cfg.anchors)
            cooc = info.cooccurrence(anchors)
            selection = select_target(cooc, dom, cfg.quantile, cfg.against, anchors=anchors)
            dom = selection.apply(dom)
            entry["selection"] = selection.summary()
            if out_dir is not None:
                selection.save(out_dir / f"selection_{name}.npz")
        entry["final"] = dom.summary()
        log.info("table %s: %s", name, entry)
        domains[name], report[name] = dom, entry
    return domains, report


def _accepts(factory: Callable[..., Any], argument: str) -> bool:
    func = getattr(factory, "func", factory)  # functools.partial from Hydra's _partial_
    return argument in inspect.signature(func).parameters


def build_plugin(
    tables: dict[str, TableInfo],
    domains: dict[str, Domains],
    cfg: MethodConfig,
    transfer: Callable[..., TransferLoss] | None,
    parameters,
    seed: int,
    device: torch.device,
) -> HarmlessTransfer:
    """The plug-in for these tables; the transfer loss is built per table from its width."""
    needs_loss = cfg.mode in ("fixed", "lexico", "lexico-global")
    if needs_loss and transfer is None:
        raise ValueError(
            f"method '{cfg.name}' (mode {cfg.mode}) needs a transfer loss: set transfer="
        )
    losses = {}
    for i, (name, info) in enumerate(tables.items()):
        if not needs_loss:
            losses[name] = None
            continue
        kwargs = {"seed": seed + i} if _accepts(transfer, "seed") else {}
        losses[name] = transfer(dim=info.weight.shape[1], **kwargs)
    weights = {name: info.weight for name, info in tables.items()}
    plugin = HarmlessTransfer(
        weights,
        losses,
        domains,
        mode=cfg.mode,
        lam=cfg.lam,
        alpha=cfg.alpha,
        scope=cfg.scope,
        source_sample=cfg.source_sample,
        target_sample=cfg.target_sample,
        parameters=parameters if cfg.mode == "lexico-global" else None,
        seed=seed,
        items={name: info.items for name, info in tables.items() if info.items is not None},
    )
    return plugin.to(device)
