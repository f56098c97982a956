"""Start awd-lstm-lm's finetune stage from every finished LM run: the second half of Table 1.

    python scripts/finetune_runs.py --runs runs/table1/paper            # one job per finished run
    python scripts/finetune_runs.py --runs runs/table1/paper --dry-run  # print the commands
    python scripts/finetune_runs.py --runs runs/table1/paper -- hydra/launcher=slurm

For each finished run (result.json with status "complete") under the given roots, the job is
started again with the run's own overrides plus `task.finetune=true` (ASGD from the first step,
until validation stops improving: awd-lstm-lm's finetune.py) and `task.init_checkpoint` = the
run's checkpoints/best.pt (the averaged weights that won model selection). The finetune job
writes to `<root>-finetune/<job>/` (same job name, same experiment), so
`scripts/make_table.py --runs <root>-finetune` builds the table from the finetuned models, and a
rerun skips finished finetune jobs and resumes killed ones like any sweep. Training code is the
same Trainer: the finetune stage is a task option, not a second loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

log = logging.getLogger("finetune_runs")
DROP = ("resume=", "force=", "run_dir=", "task.finetune=", "task.init_checkpoint=")


def finished_runs(roots: list[str]) -> list[Path]:
    """Run folders under `roots` whose result.json says complete, sorted."""
    found = []
    for root in roots:
        for result in sorted(Path(root).glob("*/result.json")):
            if json.loads(result.read_text()).get("status") == "complete":
                found.append(result.parent)
    return found


def quoted(path: Path) -> str:
    """A path as a Hydra override value: quoted, since job names hold '=' and ','."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def finetune_command(run: Path, extra: list[str]) -> list[str]:
    """The harmless-train command that finetunes `run`."""
    overrides_file = run / ".hydra" / "overrides.yaml"
    best = run / "checkpoints" / "best.pt"
    for needed in (overrides_file, best):
        if not needed.is_file():
            raise FileNotFoundError(f"{run}: {needed.name} is missing, so it cannot be finetuned")
    overrides = [
        o for o in yaml.safe_load(overrides_file.read_text()) or [] if not o.startswith(DROP)
    ]
    out_dir = run.parent.with_name(run.parent.name + "-finetune") / run.name
    return [
        sys.executable,
        "-m",
        "harmless.experiment.train",
        "-m",  # a one-job multirun, so that hydra/launcher=... (SLURM) applies
        *overrides,
        "task.finetune=true",
        f"task.init_checkpoint={quoted(best.resolve())}",
        f"run_dir={quoted(out_dir.resolve())}",
        "resume=true",
        *extra,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", nargs="+", required=True, help="run roots, e.g. runs/table1/paper"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("extra", nargs="*", help="more overrides for every finetune job (after --)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    runs = finished_runs(args.runs)
    if not runs:
        print(f"no finished run under {', '.join(args.runs)}", file=sys.stderr)
        return 1
    failed = []
    for run in runs:
        try:
            command = finetune_command(run, args.extra)
        except FileNotFoundError as err:
            print(err, file=sys.stderr)
            failed.append(run)
            continue
        print(shlex.join(command), flush=True)
        if not args.dry_run and subprocess.run(command).returncode != 0:
            failed.append(run)
    if failed:
        print(f"{len(failed)} of {len(runs)} finetune jobs failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
