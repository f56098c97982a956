"""Copy the record of finished runs (no checkpoints) into results/, so tables can be rebuilt.

    python scripts/archive_runs.py runs/table6/cpu runs/table7/cpu     # -> results/runs/...
    python scripts/make_table.py --spec results/paper/table6.yaml --runs results/runs/table6/cpu

For each job folder holding a result.json, its result.json, config.yaml, meta.json and
metrics.jsonl are copied to `<dest>/<experiment>/<profile>/<job>/` (a few tens of KB a job);
checkpoints, logs and W&B folders stay behind. Unfinished jobs are skipped and named.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

log = logging.getLogger("archive_runs")
RECORD = ("result.json", "config.yaml", "meta.json", "metrics.jsonl")


def archive(root: Path, dest: Path) -> list[Path]:
    """Copy the record files of every finished job under `root` (runs/<exp>/<profile>)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of runs (runs/<experiment>/<profile>)")
    target = dest / root.parent.name / root.name
    copied = []
    for job in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (job / "result.json").is_file():
            log.warning("skipping %s: no result.json (unfinished)", job)
            continue
        out = target / job.name
        out.mkdir(parents=True, exist_ok=True)
        for name in RECORD:
            if (job / name).is_file():
                shutil.copy2(job / name, out / name)
        copied.append(out)
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="runs/<experiment>/<profile> folders")
    parser.add_argument("--dest", type=Path, default=Path("results/runs"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for root in args.roots:
        jobs = archive(root, args.dest)
        log.info("%s: %d finished jobs -> %s", root, len(jobs), args.dest / root.parent.name)


if __name__ == "__main__":
    main()
