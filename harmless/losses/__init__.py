"""Transfer losses `l_transfer(source rows, target rows)` and a factory that builds them by name."""

from __future__ import annotations

from typing import Any

from harmless.losses.base import TransferLoss, check_rows
from harmless.losses.cosreg import CosReg
from harmless.losses.frage import FRAGE
from harmless.losses.mmd import MMD
from harmless.losses.moments import MomentMatching

TRANSFER_LOSSES: dict[str, type[TransferLoss]] = {
    "frage": FRAGE,
    "adversarial": FRAGE,
    "cosreg": CosReg,
    "mmd": MMD,
    "moments": MomentMatching,
}


def build_transfer_loss(name: str, dim: int, **kwargs: Any) -> TransferLoss:
    """The transfer loss called `name` for rows of width `dim`; `kwargs` go to its constructor.

    Names: "frage" (alias "adversarial"), "cosreg", "mmd", "moments"; matched case-insensitively.
    """
    key = name.lower()
    if key not in TRANSFER_LOSSES:
        raise ValueError(f"unknown transfer loss {name!r}; allowed: {sorted(TRANSFER_LOSSES)}")
    return TRANSFER_LOSSES[key](dim, **kwargs)


__all__ = [
    "CosReg",
    "FRAGE",
    "MMD",
    "MomentMatching",
    "TRANSFER_LOSSES",
    "TransferLoss",
    "build_transfer_loss",
    "check_rows",
]
