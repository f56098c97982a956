"""Checkpoints as state_dicts: model, optimizer, scheduler, plug-in, task, RNG states, step.

Everything loads back with `torch.load(weights_only=True)`: no pickled objects, only tensors and
plain containers (the numpy RNG state is stored as a tensor and a few ints).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harmless.experiment.rundir import atomic_torch_save


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU (and CUDA) generator states, in weights_only-safe form."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (legacy state)
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002 (restores the legacy global state)
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """random.setstate needs tuples where a round trip may have produced lists."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (plus the RNG states) atomically."""
    atomic_torch_save({**state, "rng": rng_state()}, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`; does not restore the RNG states."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)
