"""Where metrics go: a JSON-lines file in the run directory (always) and W&B (optional).

Metric names follow one namespace, `split/metric` (`train/loss`, `valid/auc`, `lexico/lambda_mean`),
each record carrying an explicit `step` (optimizer steps) and `epoch`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _clean(value: Any) -> Any:
    value = float(value) if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlSink:
    """Append-only metrics file; on resume, drops records past the checkpoint's step."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is not None and self.path.is_file():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(f"{line}\n" for line in kept))
        elif resume_step is None and self.path.is_file():
            self.path.unlink()
        self.file = self.path.open("a")

    def log(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self.file.flush()

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        self.file.close()


class WandbSink:
    """Logs to W&B: online when an API key is configured, offline otherwise (`wandb sync`)."""

    def __init__(
        self,
        project: str,
        config: dict[str, Any],
        run_dir: Path,
        group: str | None,
        job_type: str | None,
        tags: list[str],
        name: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        resume_id: str | None = None,
    ) -> None:
        import wandb

        if mode is None:
            has_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
            mode = os.environ.get("WANDB_MODE") or ("online" if has_key else "offline")
        self.run = wandb.init(
            project=project,
            entity=entity,
            config=config,
            dir=str(run_dir),
            group=group,
            job_type=job_type,
            tags=tags,
            name=name,
            mode=mode,
            id=resume_id,
            resume="allow" if resume_id else None,
        )
        log.info("W&B run %s (%s mode)", self.run.id, mode)

    @property
    def run_id(self) -> str:
        return self.run.id

    def log(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        values = {k: _clean(v) for k, v in record.items() if k != "step"}
        self.run.log(values, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.run.summary[key] = _clean(value)

    def close(self) -> None:
        self.run.finish()


def _netrc_has_wandb() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class MetricLogger:
    """Fans one record out to every sink; only rank zero logs."""

    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = sinks

    def log(self, metrics: dict[str, Any], step: int, epoch: int) -> None:
        record = {"step": step, "epoch": epoch, **metrics}
        for sink in self.sinks:
            sink.log(record)

    def summary(self, values: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.summary(values)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
