"""Run directories: what every job leaves behind, written so that nothing half-written is read.

<run_dir>/config.yaml      the resolved config
<run_dir>/meta.json        git commit and dirty flag, versions, device, host, command
<run_dir>/metrics.jsonl    one JSON object per line: {"step", "epoch", "split/metric": value}
<run_dir>/checkpoints/     last.pt (every N steps and at the end), best.pt (model selection)
<run_dir>/result.json      written once, atomically, when the job has finished
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from harmless.atomic import atomic_open, atomic_path

RESULT = "result.json"
METRICS = "metrics.jsonl"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (harmless.atomic)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through a temporary file, so a killed job never leaves a torn checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def git_info(cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """The commit of the code that ran and whether the work tree had uncommitted changes."""
    cwd = cwd or Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        if out.returncode:
            raise RuntimeError(out.stderr.strip())
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def environment_info(device: torch.device | str) -> dict[str, Any]:
    import numpy

    import harmless

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "harmless": harmless.__version__,
        "device": str(device),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "command": " ".join(sys.argv),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class RunDir:
    """Paths and writers of one job's directory."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints = self.path / "checkpoints"

    @property
    def result_path(self) -> Path:
        return self.path / RESULT

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    def has_result(self) -> bool:
        return self.result_path.is_file()

    def read_result(self) -> dict[str, Any]:
        return json.loads(self.result_path.read_text())

    def write_config(self, yaml_text: str) -> None:
        atomic_write_bytes(self.path / "config.yaml", yaml_text.encode())

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_json(self.path / "meta.json", meta)

    def write_result(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.result_path, result)

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)
