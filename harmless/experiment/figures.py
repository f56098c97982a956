"""Figures from run files: learning curves, lexico diagnostics, Figure 2 and Figure 3.

    runs = collect_runs("runs/figure4/cpu").frame                 # finished runs only
    fig = plot_curves(runs, ["test/logloss", "test/auc"], every=5)  # Figure 4
    save_figure(fig, "results/figures", "figure4", stamp, sources=runs["run_dir"])

Curves are read from each run's metrics.jsonl; a line is the mean over the runs (seeds) of one
group, with a shaded band from their minimum to their maximum. Figures are drawn on a bare
`matplotlib.figure.Figure` (Agg canvas; no pyplot state) and saved as PNG and PDF with the
command in the file's metadata and in a sidecar .txt.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harmless.experiment.rundir import METRICS, atomic_write_bytes
from harmless.experiment.tables import Stamp, atomic_write_text, select_runs

log = logging.getLogger(__name__)

#: display names and order of the methods (choices.method)
METHOD_LABELS = {
    "baseline": "Baseline",
    "fixed": "+T (fixed λ)",
    "select": "select",
    "lexico": "lexico",
    "ours": "Ours",
    "scale_only": "scale-only",
    "lexico_global": "global barrier",
}
#: Algorithm 1's per-step diagnostics, as the training loop logs them
LEXICO_KEYS = (
    "lexico/lambda_mean",
    "lexico/lambda_max",
    "lexico/barrier_active",
    "lexico/grad_cos",
)
PANEL_SIZE = (4.2, 3.2)  # inches per panel
MARGINS = (0.8, 0.2, 0.55, 0.35, 0.95, 0.85)  # inches: left, right, bottom, top, between x, y


# ----------------------------------------------------------------------------- reading curves


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """A run's metrics.jsonl as a frame: one row per record, null values as NaN."""
    path = Path(run_dir) / METRICS
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON object: {err}") from err
    return pd.DataFrame.from_records(records)


def curve_table(
    logs: Mapping[str, pd.DataFrame], metric: str, x: str = "epoch", every: int | None = None
) -> pd.DataFrame:
    """Index x, one column per run: the metric's last logged value at each x (NaN where none).

    With `every`, only x values that are multiples of it are kept (Figure 4: every 5 epochs).
    """
    columns = {}
    for run_dir, frame in logs.items():
        if metric not in frame.columns or x not in frame.columns:
            continue
        points = frame[[x, metric]].dropna()
        if every:
            points = points[points[x] % every == 0]
        if len(points):
            columns[run_dir] = points.groupby(x)[metric].last()
    return pd.DataFrame(columns).sort_index()


def _ordered(values: Iterable[Any]) -> list[Any]:
    order = list(METHOD_LABELS)
    return sorted(set(values), key=lambda v: (order.index(v) if v in order else len(order), str(v)))


def _color(key: str, value: Any, index: int) -> str:
    """A method keeps its colour in every figure; other groups take colours in order."""
    if key == "choices.method" and value in METHOD_LABELS:
        return f"C{list(METHOD_LABELS).index(value)}"
    return f"C{index}"


def _label(key: str, value: Any) -> str:
    return METHOD_LABELS.get(value, str(value)) if key == "choices.method" else str(value)


def _groups(runs: pd.DataFrame, key: str | None) -> list[tuple[Any, pd.DataFrame]]:
    if key is None:
        return [(None, runs)]
    if key not in runs.columns:
        raise ValueError(f"no run field {key!r} (fields: {', '.join(map(str, runs.columns))})")
    return [(v, select_runs(runs, {key: v})) for v in _ordered(runs[key].dropna())]


def _band(ax: Axes, table: pd.DataFrame, label: str, color: str, scale: float = 1.0) -> None:
    """Mean over the columns (runs) as a line, min to max as a shaded band."""
    values = table * scale
    ax.plot(values.index, values.mean(axis=1), color=color, label=f"{label} (n={table.shape[1]})")
    ax.fill_between(values.index, values.min(axis=1), values.max(axis=1), color=color, alpha=0.2)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8)


def _figure(panels: int, title: str | None = None) -> tuple[Figure, list[Axes]]:
    """A grid of `panels` axes, each PANEL_SIZE inches with fixed margins in inches.

    NOTE: fixed margins rather than constrained layout: the layout engine draws every figure
    twice, and these figures' labels and titles have a known size.
    """
    columns = 2 if panels == 4 else min(panels, 3)
    rows = math.ceil(panels / columns)
    width, height = PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + (0.3 if title else 0.0)
    fig = Figure(figsize=(width, height))
    left, right, bottom, top, gap_x, gap_y = MARGINS
    top += 0.3 if title else 0.0
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=gap_x / (PANEL_SIZE[0] - gap_x),
        hspace=gap_y / (PANEL_SIZE[1] - gap_y),
    )
    axes = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.remove()
    if title:
        fig.suptitle(title)
    return fig, axes[:panels]


# ----------------------------------------------------------------------------- figures


def plot_curves(
    runs: pd.DataFrame,
    metrics: Sequence[str],
    *,
    x: str = "epoch",
    every: int | None = None,
    line_by: str = "choices.method",
    panel_by: str | None = None,
    scale: float = 1.0,
    title: str | None = None,
) -> Figure:
    """Metric against `x` for finished runs: one panel per metric (and `panel_by` value), one
    line per `line_by` value (mean over its runs, shaded min-max band).

    Figure 4: metrics ["test/logloss", "test/auc"], every=5. Figure 5: metrics ["test/auc"],
    panel_by="choices.optimizer".
    """
    if not len(runs):
        raise ValueError("no runs to plot")
    logs = {str(d): read_metrics(d) for d in runs["run_dir"]}
    panels = [(metric, v, sub) for v, sub in _groups(runs, panel_by) for metric in metrics]
    fig, axes = _figure(len(panels), title)
    for ax, (metric, panel_value, sub) in zip(axes, panels):
        drawn = 0
        for i, (value, group) in enumerate(_groups(sub, line_by)):
            table = curve_table({d: logs[str(d)] for d in group["run_dir"]}, metric, x, every)
            if table.empty:
                continue
            _band(ax, table, _label(line_by, value), _color(line_by, value, i), scale)
            drawn += 1
        name = metric if panel_by is None else f"{metric}, {_label(panel_by, panel_value)}"
        ax.set(title=name, xlabel=x, ylabel=metric)
        if drawn:
            ax.legend(fontsize=7)
        else:
            _empty(ax, f"{metric} is not logged by these runs")
    return fig


def plot_lexico(
    runs: pd.DataFrame,
    keys: Sequence[str] = LEXICO_KEYS,
    *,
    line_by: str = "choices.method",
    title: str | None = "Algorithm 1 diagnostics",
) -> Figure:
    """Algorithm 1's diagnostics against steps: lambda mean and max, the share of rows whose
    barrier is active, the cosine between main and transfer gradients (one panel each)."""
    return plot_curves(runs, keys, x="step", line_by=line_by, title=title)


def final_transfer(runs: pd.DataFrame, transfer_key: str | None = None) -> pd.Series:
    """Each run's final transfer-loss value, indexed like `runs`.

    Default: the sum of the result's `transfer/<table>` metrics (the loss over all target rows
    after training). With `transfer_key`: that result metric, or else its last value in the run's
    metrics.jsonl (e.g. "lexico/transfer_loss", a per-batch value).
    """
    if transfer_key is None:
        keys = [c for c in runs.columns if str(c).startswith("transfer/")]
        if not keys:
            raise ValueError("the runs' results hold no transfer/* metric; pass transfer_key")
        return runs[keys].astype(float).sum(axis=1, min_count=1)
    if transfer_key in runs.columns and runs[transfer_key].notna().all():
        return runs[transfer_key].astype(float)
    values = []
    for run_dir in runs["run_dir"]:
        logged = read_metrics(run_dir)
        series = logged[transfer_key].dropna() if transfer_key in logged.columns else []
        values.append(float(series.iloc[-1]) if len(series) else math.nan)
    return pd.Series(values, index=runs.index, dtype=float)


def plot_tradeoff(
    runs: pd.DataFrame,
    metric: str,
    *,
    transfer_key: str | None = None,
    lam_key: str = "params.method.lam",
    fixed: str = "fixed",
    ours: str = "ours",
    panel_by: str | None = "choices.task",
    scale: float = 1.0,
) -> Figure:
    """Figure 2: final transfer loss (x) against the test metric (y); the fixed-lambda grid as a
    curve labelled by lambda, ours as a point (means over seeds, bars from min to max)."""
    if not len(runs):
        raise ValueError("no runs to plot")
    groups = _groups(runs, panel_by if panel_by in runs.columns else None)
    fig, axes = _figure(len(groups))
    for ax, (panel_value, sub) in zip(axes, groups):
        data = pd.DataFrame(
            {"transfer": final_transfer(sub, transfer_key), "y": sub[metric].astype(float) * scale}
        )
        data["method"] = sub["choices.method"]
        data["lam"] = sub[lam_key].astype(float) if lam_key in sub.columns else math.nan
        grid = data[(data["method"] == fixed)].dropna(subset=["lam", "transfer", "y"])
        if len(grid):
            points = grid.groupby("lam")[["transfer", "y"]].agg(["mean", "min", "max"])
            color = _color("choices.method", fixed, 0)
            _points(ax, points, color, f"fixed λ (n={len(grid)})", "o-")
            for lam, row in points.iterrows():
                ax.annotate(
                    f"λ={lam:g}",
                    (row[("transfer", "mean")], row[("y", "mean")]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
        point = data[data["method"] == ours].dropna(subset=["transfer", "y"])
        if len(point):
            stats = point.assign(one=0).groupby("one")[["transfer", "y"]]
            color, label = _color("choices.method", ours, 1), f"{_label('choices.method', ours)}"
            _points(ax, stats.agg(["mean", "min", "max"]), color, f"{label} (n={len(point)})", "*")
        if not len(grid) and not len(point):
            _empty(ax, f"no {fixed} or {ours} runs with {metric} and a transfer loss")
        name = "" if panel_by is None or panel_value is None else f"{panel_value}: "
        ax.set(
            title=f"{name}{metric} vs transfer loss", xlabel="final transfer loss", ylabel=metric
        )
        if len(grid) or len(point):
            ax.legend(fontsize=7)
    return fig


def _points(ax: Axes, stats: pd.DataFrame, color: str, label: str, style: str) -> None:
    """Means with min-max bars in both directions; `stats` has (transfer|y, mean|min|max)."""
    x, y = stats[("transfer", "mean")], stats[("y", "mean")]
    xerr = [x - stats[("transfer", "min")], stats[("transfer", "max")] - x]
    yerr = [y - stats[("y", "min")], stats[("y", "max")] - y]
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=style, color=color, label=label, capsize=2, ms=6)


def plot_frequency(counts: Mapping[str, np.ndarray | str | Path]) -> Figure:
    """Figure 3: log frequency (ln count) of every item against its rank, one panel per dataset.

    `counts` maps a dataset's name to its item counts (an array or a .npy file). Items never
    seen (count 0) have no logarithm; the panel's title says how many there are.
    """
    if not counts:
        raise ValueError("no counts to plot")
    fig, axes = _figure(len(counts))
    for ax, (name, source) in zip(axes, counts.items()):
        values = np.load(source) if isinstance(source, str | Path) else np.asarray(source)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.number):
            raise ValueError(f"{name}: expected a 1-D array of counts, got shape {values.shape}")
        if (values < 0).any():
            raise ValueError(f"{name}: counts must be >= 0")
        ranked = np.sort(values)[::-1]
        seen = ranked[ranked > 0]
        ax.plot(np.arange(1, len(seen) + 1), np.log(seen), color="C0")
        unseen = f", {len(ranked) - len(seen)} unseen" if len(seen) < len(ranked) else ""
        ax.set(
            title=f"{name} ({len(ranked)} items{unseen})",
            xlabel="item index (by frequency)",
            ylabel="log frequency",
        )
    return fig


# ----------------------------------------------------------------------------- saving


def save_figure(
    fig: Figure,
    out_dir: str | Path,
    name: str,
    stamp: Stamp,
    sources: Iterable[Any] = (),
    formats: Sequence[str] = ("png", "pdf"),
) -> list[Path]:
    """Write `<out_dir>/<name>.<format>` atomically with the stamp in the file's metadata, and
    `<name>.txt` beside them with the stamp and the runs (or files) the figure was drawn from."""
    out_dir = Path(out_dir)
    stamp_text = "\n".join(stamp.lines())
    metadata = {
        "png": {"Software": "harmless", "Description": stamp_text},
        "pdf": {"Creator": "harmless", "Subject": stamp_text},
        "svg": {"Description": stamp_text},
    }
    paths = []
    for fmt in formats:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150, metadata=metadata.get(fmt))
        path = out_dir / f"{name}.{fmt}"
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    sidecar = stamp.lines() + ["sources:"] + [f"  {source}" for source in sources]
    paths.append(atomic_write_text(out_dir / f"{name}.txt", "\n".join(sidecar) + "\n"))
    log.info("wrote %s", ", ".join(map(str, paths)))
    return paths
