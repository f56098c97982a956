"""Training diagnostics of finished runs, late in training, grouped by cell and method.

    python scripts/run_diagnostics.py --runs results/runs/table6/cpu \
        --by choices.model params.task.budget choices.method --out results/table6_diagnostics_cpu

For each finished run (a job folder with result.json) and each metric (default: the plug-in's
discriminator accuracy, lambda, barrier activity and transfer loss), the mean over the last
`--last` training records of metrics.jsonl that hold the metric; then, per group of `--by` keys,
the mean and std over runs (seeds) and n. A discriminator accuracy near 0.5 means the adversarial
transfer loss carries no signal. Writes <out>.md (atomically) and prints it.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import pandas as pd

from harmless.experiment.figures import read_metrics
from harmless.experiment.tables import Stamp, atomic_write_text, collect_runs

log = logging.getLogger("run_diagnostics")
METRICS = (
    "lexico/disc_acc",
    "lexico/lambda_mean",
    "lexico/barrier_active",
    "lexico/rescaled_only",
    "lexico/transfer_loss",
)


def late_means(run_dir: str | Path, metrics: list[str], last: int) -> dict[str, float]:
    """Per metric, the mean of its last `last` values in a run's metrics.jsonl (NaN if never)."""
    logged = read_metrics(run_dir)
    out = {}
    for m in metrics:
        values = logged[m].dropna().astype(float) if m in logged.columns else pd.Series([])
        out[m] = float(values.iloc[-last:].mean()) if len(values) else math.nan
    return out


def diagnostics(roots: list[Path], by: list[str], metrics: list[str], last: int) -> pd.DataFrame:
    """One row per group of `by`: mean and std over its runs of each metric's late mean, and n."""
    frame = collect_runs(roots).frame
    if frame.empty:
        raise ValueError(f"no finished runs under {', '.join(map(str, roots))}")
    missing = [key for key in by if key not in frame.columns]
    if missing:
        raise ValueError(f"--by keys {missing} are not run fields; some are {list(frame)[:12]}")
    late = [late_means(d, metrics, last) for d in frame["run_dir"]]
    frame = pd.concat([frame[by].reset_index(drop=True), pd.DataFrame(late)], axis=1)
    grouped = frame.groupby(by, dropna=False, sort=True)
    out = grouped[metrics].agg(["mean", "std"])
    out.columns = [f"{m} {stat}" for m, stat in out.columns]
    out["n"] = grouped.size()
    return out.reset_index()


def to_markdown(table: pd.DataFrame, by: list[str], metrics: list[str], last: int) -> str:
    header = by + metrics + ["n"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [str(row[k]) for k in by]
        for m in metrics:
            mean, std = row[f"{m} mean"], row[f"{m} std"]
            cells.append(
                "—"
                if math.isnan(mean)
                else f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")
            )
        cells.append(str(int(row["n"])))
        rows.append("| " + " | ".join(cells) + " |")
    intro = f"Mean over the last {last} training records of each run; mean ± std over runs."
    return intro + "\n\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True)
    parser.add_argument("--by", nargs="+", default=["choices.method"])
    parser.add_argument("--metric", nargs="+", default=list(METRICS))
    parser.add_argument("--last", type=int, default=5, help="training records averaged per run")
    parser.add_argument("--out", type=Path, help="write <out>.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.last < 1:
        parser.error("--last must be at least 1")
    table = diagnostics(args.runs, args.by, args.metric, args.last)
    stamp = Stamp.capture(["scripts/run_diagnostics.py", *(argv or sys.argv[1:])])
    text = (
        "".join(f"<!-- {line} -->\n" for line in stamp.lines())
        + "\n"
        + to_markdown(table, args.by, args.metric, args.last)
    )
    if args.out:
        atomic_write_text(args.out.with_suffix(".md"), text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
