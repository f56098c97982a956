"""Draw the paper's figures (and the lexico diagnostics) from finished runs' files.

    # Figure 4: test log loss and AUC every 5 epochs, baseline against ours
    python scripts/plot_figures.py curves --runs runs/figure4/cpu \
        --metric test/logloss --metric test/auc --every 5 --name figure4
    # Figure 5: test AUC against epochs, one panel per optimizer
    python scripts/plot_figures.py curves --runs runs/table8/cpu --metric test/auc \
        --panel-by choices.optimizer --where params.task.budget=10000 --name figure5
    # Algorithm 1's diagnostics against steps (lambda mean/max, active barrier, gradient cosine)
    python scripts/plot_figures.py lexico --runs runs/table6/cpu --where choices.method=ours
    # Figure 2: final transfer loss against test perplexity, fixed-lambda grid and ours
    python scripts/plot_figures.py tradeoff --runs runs/figure2/cpu --metric test/ppl
    # Figure 3: log frequency against rank, from saved count arrays
    python scripts/plot_figures.py frequency --counts MovieLens-1M=ml_counts.npy Criteo=c.npy

Only finished runs (result.json with status "complete") are drawn. Each figure is written as
<out>/<name>.png and .pdf with this command in their metadata, plus <name>.txt listing the runs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from harmless.experiment.figures import (
    LEXICO_KEYS,
    plot_curves,
    plot_frequency,
    plot_lexico,
    plot_tradeoff,
    save_figure,
)
from harmless.experiment.tables import Stamp, collect_runs, parse_where, select_runs

SCRIPT = "scripts/plot_figures.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, runs: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--out", default="results/figures", help="output folder")
        sub.add_argument("--name", default=name, help="file name without extension")
        sub.add_argument("--formats", nargs="+", default=["png", "pdf"], help="png, pdf, svg")
        if runs:
            sub.add_argument("--runs", nargs="+", required=True, help="run roots")
            sub.add_argument("--where", nargs="*", default=[], help="KEY=VALUE run filters")
        return sub

    curves = add("curves", "metrics against epochs (or steps), one line per method")
    curves.add_argument("--metric", action="append", required=True, help="repeatable")
    curves.add_argument("--x", default="epoch", choices=("epoch", "step"))
    curves.add_argument("--every", type=int, help="keep only x values that are multiples of this")
    curves.add_argument("--line-by", default="choices.method")
    curves.add_argument("--panel-by", help="one panel per value of this run field")
    curves.add_argument("--scale", type=float, default=1.0, help="display scale (100 for %%)")

    lexico = add("lexico", "Algorithm 1's diagnostics against steps")
    lexico.add_argument("--key", action="append", help=f"default: {', '.join(LEXICO_KEYS)}")
    lexico.add_argument("--line-by", default="choices.method")

    tradeoff = add("tradeoff", "Figure 2: final transfer loss against the test metric")
    tradeoff.add_argument("--metric", required=True, help="e.g. test/ppl")
    tradeoff.add_argument("--transfer-key", help="default: the sum of the results' transfer/*")
    tradeoff.add_argument("--lam-key", default="params.method.lam")
    tradeoff.add_argument("--panel-by", default="choices.task")
    tradeoff.add_argument("--scale", type=float, default=1.0)

    frequency = add("frequency", "Figure 3: log frequency against rank", runs=False)
    frequency.add_argument("--counts", nargs="+", required=True, help="NAME=PATH.npy pairs")
    return parser


def draw(args) -> tuple:
    """The figure and the sources it was drawn from."""
    if args.command == "frequency":
        pairs = [item.partition("=") for item in args.counts]
        if any(not sep or not name or not path for name, sep, path in pairs):
            raise ValueError(f"--counts takes NAME=PATH.npy pairs, got {args.counts}")
        counts = {name: path for name, _, path in pairs}
        return plot_frequency(counts), list(counts.values())

    runs = select_runs(collect_runs(args.runs).frame, parse_where(args.where))
    if not len(runs):
        raise ValueError(f"no finished run under {', '.join(args.runs)} matches {args.where}")
    if args.command == "curves":
        fig = plot_curves(
            runs,
            args.metric,
            x=args.x,
            every=args.every,
            line_by=args.line_by,
            panel_by=args.panel_by,
            scale=args.scale,
        )
    elif args.command == "lexico":
        fig = plot_lexico(runs, args.key or LEXICO_KEYS, line_by=args.line_by)
    else:
        fig = plot_tradeoff(
            runs,
            args.metric,
            transfer_key=args.transfer_key,
            lam_key=args.lam_key,
            panel_by=args.panel_by,
            scale=args.scale,
        )
    return fig, list(runs["run_dir"])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        fig, sources = draw(args)
    except (OSError, ValueError) as err:
        print(err, file=sys.stderr)
        return 1
    stamp = Stamp.capture([SCRIPT, *argv])
    paths = save_figure(fig, args.out, args.name, stamp, sources, formats=args.formats)
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
