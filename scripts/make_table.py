"""Build one of the paper's tables from finished runs and set it beside the paper's numbers.

    python scripts/make_table.py --spec results/paper/table6.yaml --runs runs/table6/cpu
    python scripts/make_table.py --spec results/paper/table6.yaml --runs runs/table6/cpu \
        --seeds 1 2 3 --where profile=cpu --out results/table6_cpu
    python scripts/make_table.py --spec results/paper/table6.yaml --wandb-project ENTITY/PROJECT

Run files are the default source (W&B offline runs cannot be read through its API). Writes
<out>.md, <out>.tex and <out>.csv (default <out>: results/<experiment>_<last folder of --runs>),
each stamped with this command and the git commit, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from harmless.experiment.paper import load_spec
from harmless.experiment.tables import (
    RunCollection,
    SourceUnavailable,
    Stamp,
    build_table,
    collect_runs,
    collect_wandb,
    parse_where,
    to_markdown,
    write_table,
)

SCRIPT = "scripts/make_table.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--spec", required=True, help="a table spec, e.g. results/paper/table6.yaml"
    )
    parser.add_argument("--runs", nargs="+", help="run roots searched recursively for result.json")
    parser.add_argument("--seeds", nargs="+", type=int, help="expected seeds (default: all found)")
    parser.add_argument(
        "--where", nargs="*", default=[], help="KEY=VALUE filters, e.g. profile=cpu"
    )
    parser.add_argument("--out", help="output prefix (default results/<experiment>_<runs name>)")
    parser.add_argument(
        "--wandb-project", help="read finished runs from this W&B project instead of run files"
    )
    return parser


def load_runs(args, spec) -> tuple[RunCollection, str] | None:
    """The runs and the default output suffix, or None (after saying why) when there are none."""
    if args.wandb_project:
        try:
            return collect_wandb(args.wandb_project), "wandb"
        except SourceUnavailable as err:
            print(
                f"cannot read runs from W&B project {args.wandb_project!r}: {err}\nRun files are "
                "the default source (W&B offline runs cannot be read through the API): use --runs",
                file=sys.stderr,
            )
            return None
    absent = [root for root in args.runs or [] if not Path(root).is_dir()]
    if spec.no_task and (absent or not args.runs):
        print(
            f"{spec.name}: no task/runs: {spec.no_task}; the table holds the paper's numbers only"
        )
        return RunCollection.empty(), "paper"
    if not args.runs:
        print("no runs: give --runs (run directories) or --wandb-project", file=sys.stderr)
        return None
    if absent:
        print(
            f"no runs: {', '.join(absent)} does not exist; run the sweep first "
            f"(harmless-train -m +experiment={spec.experiment})",
            file=sys.stderr,
        )
        return None
    return collect_runs(args.runs), Path(args.runs[0]).name


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        spec = load_spec(args.spec)
        where = parse_where(args.where)
    except (OSError, ValueError) as err:
        print(err, file=sys.stderr)
        return 2
    loaded = load_runs(args, spec)
    if loaded is None:
        return 1
    runs, suffix = loaded
    try:
        result = build_table(spec, runs, seeds=args.seeds, where=where)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    if runs.sources and not result.used:
        print(f"no runs: no finished run under {', '.join(runs.sources)} fills {spec.name}")

    stamp = Stamp.capture([SCRIPT, *argv])
    out = args.out or f"results/{spec.experiment}_{suffix}"
    paths = write_table(result, out, stamp)
    print(to_markdown(result, stamp))
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
