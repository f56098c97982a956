"""Tables from run directories: collect finished runs, fill a spec's cells, render them.

    runs = collect_runs("runs/table6/cpu")
    result = build_table(load_spec("results/paper/table6.yaml"), runs, seeds=[1, 2, 3])
    write_table(result, "results/table6_cpu", Stamp.capture(["scripts/make_table.py", ...]))

Only a job directory with a `result.json` whose status is "complete" counts as a finished run; any
other job directory is listed as unfinished and its seed shows up as missing. Per cell the table
gives mean, std (ddof=1), n, the seeds present and missing, the paper's value and the difference;
per paired comparison the per-seed differences a - b over seeds present in both cells, their mean
and a 95% t-interval. Nothing is filled in that the runs do not hold.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harmless.experiment.paper import (
    PLAIN_MATCH_KEYS,
    Column,
    Comparison,
    PaperValue,
    Row,
    TableSpec,
    partner,
    same_value,
)
from harmless.experiment.rundir import RESULT, atomic_write_bytes, git_info

log = logging.getLogger(__name__)

#: files that mark a directory as a job's run directory (finished or not)
JOB_MARKERS = ("metrics.jsonl", "config.yaml", "meta.json", "failed.json")
COMPLETE = "complete"
MISSING = "—"
CONFIDENCE = 0.95


# ----------------------------------------------------------------------------- provenance, files


@dataclass(frozen=True)
class Stamp:
    """What produced an output file: the command line and the git commit of the code."""

    command: str
    commit: str

    @classmethod
    def capture(cls, argv: Sequence[str]) -> Stamp:
        """The command `python <argv...>` and this checkout's commit ("+dirty" if files changed)."""
        git = git_info()
        commit = git["commit"] or "unknown"
        return cls("python " + shlex.join(argv), commit + ("+dirty" if git["dirty"] else ""))

    def lines(self) -> list[str]:
        return [f"produced by: {self.command}", f"git commit: {self.commit}"]


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary file and os.replace."""
    atomic_write_bytes(path, text.encode("utf-8"))
    return Path(path)


# ----------------------------------------------------------------------------- collecting runs


class SourceUnavailable(RuntimeError):
    """A run source (W&B) cannot be read; the message says why."""


@dataclass
class RunCollection:
    """Finished runs as one flat row each, and the job directories that did not finish.

    Columns of `frame`: run_dir, experiment, status, seed, profile, choices.<k>, params.<k>,
    git.commit, git.dirty, best_epoch, epochs, steps, wall_time_s, and every metric key as logged
    (`test/auc`, `valid/ppl`, ...).
    """

    frame: pd.DataFrame
    unfinished: list[tuple[str, str]] = field(default_factory=list)
    sources: tuple[str, ...] = ()

    @classmethod
    def empty(cls, sources: Sequence[str] = ()) -> RunCollection:
        return cls(pd.DataFrame({"run_dir": [], "seed": []}), [], tuple(sources))


def flatten_result(result: Mapping[str, Any], run_dir: str) -> dict[str, Any]:
    """One result.json as a flat record: nested choices/params/git become dotted columns."""
    record: dict[str, Any] = {"run_dir": run_dir}
    for key in ("experiment", "status", "profile", "best_epoch", "epochs", "steps", "wall_time_s"):
        record[key] = result.get(key)
    record["seed"] = int(result["seed"])
    for group in ("choices", "params", "git"):
        for key, value in (result.get(group) or {}).items():
            record[f"{group}.{key}"] = value
    for key, value in (result.get("metrics") or {}).items():
        record[key] = value
    return record


def read_result(path: str | Path) -> dict[str, Any]:
    """A result.json, checked for the fields a table needs (ValueError naming the file)."""
    path = Path(path)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the result: {err}") from err
    if not isinstance(result, dict):
        raise ValueError(f"{path}: expected a JSON object")
    seed = result.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{path}: 'seed' must be an integer, got {seed!r}")
    for key in ("choices", "metrics"):
        if not isinstance(result.get(key), dict):
            raise ValueError(f"{path}: '{key}' must be an object, got {result.get(key)!r}")
    if not isinstance(result.get("params", {}), dict):
        raise ValueError(f"{path}: 'params' must be an object, got {result.get('params')!r}")
    return result


def collect_runs(roots: str | Path | Iterable[str | Path]) -> RunCollection:
    """Every job directory under `roots` (recursively): finished ones flattened, others listed.

    A directory is a job directory when it holds result.json or one of JOB_MARKERS; hidden
    directories (.hydra, .git) and the insides of job directories are not searched.
    """
    roots = [Path(roots)] if isinstance(roots, str | Path) else [Path(r) for r in roots]
    records: list[dict[str, Any]] = []
    unfinished: list[tuple[str, str]] = []
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"no run directory {root}")
        for here, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if RESULT in files:
                dirs[:] = []
                result = read_result(Path(here) / RESULT)
                if result.get("status") != COMPLETE:
                    unfinished.append((here, f"status {result.get('status')!r}"))
                    continue
                records.append(flatten_result(result, here))
            elif any(marker in files for marker in JOB_MARKERS):
                dirs[:] = []
                why = "failed (failed.json)" if "failed.json" in files else "no result.json"
                unfinished.append((here, why))
    log.info(
        "%d finished runs and %d unfinished job directories under %s",
        len(records),
        len(unfinished),
        ", ".join(map(str, roots)),
    )
    frame = pd.DataFrame.from_records(records) if records else RunCollection.empty().frame
    return RunCollection(frame, unfinished, tuple(str(r) for r in roots))


def collect_wandb(project: str, api: Any = None) -> RunCollection:
    """Finished runs of a W&B project ("entity/project"), read through `wandb.Api()`.

    Metrics come from each run's summary (`split/name` keys). The run layer logs the resolved
    config: seed, experiment_name, profile_name and the `cell_params` keys give the seed, the
    experiment, the profile and the params; the choices come from the config's `identity` or
    `choices` entry when there is one, else from the tags and job type (task and method only).
    Runs whose state is not "finished" are listed as unfinished. Raises SourceUnavailable when
    W&B cannot be read.
    """
    if api is None:
        try:
            import wandb
        except ImportError as err:
            raise SourceUnavailable("wandb is not installed (install harmless[wandb])") from err
        try:
            api = wandb.Api(timeout=20)
        except Exception as err:
            raise SourceUnavailable(f"wandb.Api() failed: {type(err).__name__}: {err}") from err
    try:
        runs = list(api.runs(project))
    except Exception as err:
        raise SourceUnavailable(f"cannot list the runs of {project!r}: {err}") from err

    records: list[dict[str, Any]] = []
    unfinished: list[tuple[str, str]] = []
    for run in runs:
        name = f"wandb:{project}/{run.id}"
        if run.state != "finished":
            unfinished.append((name, f"W&B state {run.state!r}"))
            continue
        result = _wandb_result(run)
        if result is None:
            unfinished.append((name, "its config holds no integer seed"))
            continue
        records.append(flatten_result(result, name))
    frame = pd.DataFrame.from_records(records) if records else RunCollection.empty().frame
    log.info("%d finished and %d other W&B runs in %s", len(records), len(unfinished), project)
    return RunCollection(frame, unfinished, (f"wandb:{project}",))


def _wandb_result(run: Any) -> dict[str, Any] | None:
    """A W&B run as a result.json-like dict (None when it carries no seed)."""
    config, summary = dict(run.config), dict(run.summary_metrics)
    identity = config.get("identity") or {}
    seed = identity.get("seed", config.get("seed"))
    if isinstance(seed, bool) or not isinstance(seed, int):
        return None
    choices = dict(identity.get("choices") or config.get("choices") or {})
    if not choices:
        tags = dict(tag.split(":", 1) for tag in (run.tags or []) if ":" in tag)
        choices = {"task": tags.get("task"), "method": run.job_type}
        choices = {k: v for k, v in choices.items() if v}
    params = identity.get("params") or config.get("params")
    if params is None:
        params = {key: _lookup(config, key) for key in config.get("cell_params") or []}
    metrics = {
        k: v
        for k, v in summary.items()
        if "/" in k and isinstance(v, numbers.Real) and not isinstance(v, bool)
    }
    return {
        "experiment": config.get("experiment_name") or run.group,
        "status": COMPLETE,
        "seed": seed,
        "profile": identity.get("profile") or config.get("profile_name"),
        "choices": choices,
        "params": params,
        "metrics": metrics,
    }


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    """config["a"]["b"] for "a.b" (None when a level is missing)."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def parse_where(items: Iterable[str]) -> dict[str, str]:
    """KEY=VALUE filters (command-line form) over run fields, checked like a spec's `where`."""
    where = {}
    for item in items:
        key, sep, value = item.partition("=")
        known = key in PLAIN_MATCH_KEYS or (key.startswith(("choices.", "params.")) and "." in key)
        if not sep or not known or not value:
            raise ValueError(
                f"--where {item!r}: expected KEY=VALUE with KEY choices.*, params.* or one of "
                f"{', '.join(PLAIN_MATCH_KEYS)}"
            )
        where[key] = value
    return where


def select_runs(frame: pd.DataFrame, match: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of `frame` whose fields equal every value in `match` (see paper.same_value)."""
    keep = pd.Series(True, index=frame.index)
    for key, wanted in match.items():
        if key not in frame.columns:
            return frame.iloc[0:0]
        keep &= frame[key].map(lambda value, wanted=wanted: same_value(value, wanted)).astype(bool)
    return frame[keep]


# ----------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Cell:
    """One cell: per-seed values (display units) of the runs matching its row and column."""

    row: Row
    column: Column
    applies: bool
    values: dict[int, float]
    run_dirs: dict[int, str]
    expected: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def paper(self) -> PaperValue | None:
        return self.column.paper.get(self.row.value) if self.applies else None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.values)

    @property
    def missing(self) -> list[int]:
        return [s for s in self.expected if s not in self.values]

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.values.values()))) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(list(self.values.values()), ddof=1)) if self.n >= 2 else math.nan

    @property
    def diff(self) -> float:
        """Our mean minus the paper's value (NaN when either is missing)."""
        return self.mean - self.paper.value if self.paper is not None and self.n else math.nan

    @property
    def status(self) -> str:
        if not self.applies:
            return "n/a"
        if self.n == 0:
            return "missing"
        return "incomplete" if self.missing else "ok"


@dataclass(frozen=True)
class Paired:
    """Paired differences a - b (display units) over the seeds present in both cells."""

    comparison: Comparison
    a: Cell
    b: Cell

    @property
    def diffs(self) -> dict[int, float]:
        both = sorted(set(self.a.values) & set(self.b.values))
        return {s: self.a.values[s] - self.b.values[s] for s in both}

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.diffs.values()))) if self.n else math.nan

    @property
    def std(self) -> float:
        return float(np.std(list(self.diffs.values()), ddof=1)) if self.n >= 2 else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% t-interval of the mean difference (NaN with fewer than two pairs)."""
        return t_interval(list(self.diffs.values()), CONFIDENCE)

    @property
    def paper(self) -> float:
        pa, pb = self.a.paper, self.b.paper
        return pa.value - pb.value if pa is not None and pb is not None else math.nan

    def verdict(self, better: str) -> str:
        """Which side the interval favours under the spec's `better` direction."""
        low, high = self.interval
        if math.isnan(low):
            return "too few seeds"
        sign = 1.0 if better == "higher" else -1.0
        if min(sign * low, sign * high) > 0:
            return "a better"
        if max(sign * low, sign * high) < 0:
            return "b better"
        return "no clear difference"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """mean ± t_{(1+c)/2, n-1} * std(ddof=1) / sqrt(n); (NaN, NaN) for fewer than two values."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


# ----------------------------------------------------------------------------- building a table


@dataclass
class TableResult:
    """A filled table: cells by (row value, column label), paired comparisons, provenance."""

    spec: TableSpec
    cells: dict[tuple[Any, str], Cell]
    paired: list[Paired]
    expected: tuple[int, ...]
    runs: RunCollection
    used: frozenset[str]
    notes: list[str] = field(default_factory=list)

    def cell(self, row_value: Any, column_label: str) -> Cell:
        row = self.spec.row(row_value)
        return self.cells[(row.value, column_label)]

    def pairs(self, label: str) -> list[Paired]:
        return [p for p in self.paired if p.comparison.label == label]


def build_table(
    spec: TableSpec,
    runs: RunCollection,
    seeds: Sequence[int] | None = None,
    where: Mapping[str, Any] | None = None,
) -> TableResult:
    """Fill `spec`'s cells from `runs` (those matching spec.where and `where`).

    Expected seeds are `seeds`, or else every seed among the matching runs; with `seeds` given,
    runs of other seeds are left out. Two finished runs for one seed in one cell raise ValueError
    naming both (a spec that does not pin a choice, or a job that ran twice).
    """
    frame = select_runs(runs.frame, spec.where | dict(where or {}))
    if seeds:
        expected = tuple(sorted({int(s) for s in seeds}))
        dropped = int((~frame["seed"].isin(expected)).sum())
        if dropped:
            log.info("%d runs with seeds outside %s left out", dropped, list(expected))
        frame = frame[frame["seed"].isin(expected)]
    else:
        expected = tuple(sorted(int(s) for s in frame["seed"].unique()))

    cells: dict[tuple[Any, str], Cell] = {}
    used: set[str] = set()
    for row in spec.rows:
        row_frame = select_runs(frame, row.match)
        for column in spec.columns:
            cell = _fill(spec, row, column, row_frame, expected)
            cells[(row.value, column.label)] = cell
            used.update(cell.run_dirs.values())

    paired: list[Paired] = []
    for comparison in spec.comparisons:
        for column in spec.columns:
            other = partner(column, comparison, spec.columns)
            if other is None:
                continue
            for row in spec.rows:
                a, b = cells[(row.value, column.label)], cells[(row.value, other.label)]
                if a.applies and b.applies:
                    paired.append(Paired(comparison, a, b))

    notes = []
    if spec.no_task:
        notes.append(f"no task/runs: {spec.no_task}")
    if runs.sources and not len(frame):
        notes.append(f"no finished run under {', '.join(runs.sources)} matches this table")
    return TableResult(spec, cells, paired, expected, runs, frozenset(used), notes)


def _fill(spec: TableSpec, row: Row, column: Column, frame, expected) -> Cell:
    """The cell of `row` and `column`: one value per seed, checked for duplicates."""
    if row.value not in column.rows:
        return Cell(row, column, False, {}, {}, expected)
    where = f"{spec.path}: cell ({row.label}, {column.label})"
    chosen = select_runs(frame, column.match)
    values: dict[int, float] = {}
    run_dirs: dict[int, str] = {}
    notes: list[str] = []
    for seed, group in chosen.groupby("seed", sort=True):
        seed = int(seed)
        if len(group) > 1:
            dirs = ", ".join(group["run_dir"])
            raise ValueError(
                f"{where}: {len(group)} finished runs for seed {seed}: {dirs} (the spec's match "
                f"does not pin a choice that differs between them, or a job ran twice; "
                f"narrow the runs with --where)"
            )
        run = group.iloc[0]
        raw = run.get(column.metric, math.nan)
        is_number = isinstance(raw, numbers.Real) and not isinstance(raw, bool | np.bool_)
        value = float(raw) if is_number else math.nan
        if not math.isfinite(value):
            notes.append(
                f"{row.label} / {column.label}: seed {seed} has no finite {column.metric} "
                f"({raw!r} in {run['run_dir']}); counted as missing"
            )
            continue
        values[seed] = value * spec.scale
        run_dirs[seed] = str(run["run_dir"])
    return Cell(row, column, True, values, run_dirs, expected, tuple(notes))


# ----------------------------------------------------------------------------- rendering


def _num(x: float, digits: int, signed: bool = False) -> str:
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _decimals(text: str) -> int:
    head = text.split("±")[0].split("+-")[0].strip()
    return len(head.split(".")[1]) if "." in head else 0


def _paper_text(paper: PaperValue | None) -> str:
    return "not reported" if paper is None else paper.text


def _cell_parts(cell: Cell, digits: int) -> tuple[str, str]:
    """(our value, the paper's value and the difference) as plain text."""
    if not cell.applies:
        return "", ""
    if cell.n == 0:
        ours = f"{MISSING} missing"
    else:
        ours = _num(cell.mean, digits)
        if cell.n >= 2:
            ours += f" ± {_num(cell.std, digits)}"
        if cell.missing:
            seeds = ", ".join(map(str, cell.missing))
            ours += f" (n={cell.n}/{len(cell.expected)}; missing seed {seeds})"
    paper = f"paper {_paper_text(cell.paper)}"
    if cell.paper is not None and cell.n:
        paper += f"; Δ {_num(cell.diff, digits, signed=True)}"
    return ours, paper


def _paired_text(pair: Paired, digits: int) -> str:
    n_expected = len(pair.a.expected)
    if pair.n == 0:
        text = f"{MISSING} missing"
    else:
        text = _num(pair.mean, digits, signed=True)
        low, high = pair.interval
        if pair.n >= 2:
            text += f" [{_num(low, digits, signed=True)}, {_num(high, digits, signed=True)}]"
        text += f" n={pair.n}" + (f"/{n_expected}" if pair.n < n_expected else "")
    if not math.isnan(pair.paper):
        paper_digits = max(_decimals(pair.a.paper.text), _decimals(pair.b.paper.text))
        text += f" (paper {_num(pair.paper, paper_digits, signed=True)})"
    return text


def _header(result: TableResult) -> list[str]:
    """Lines that describe the table: metric, scale, seeds, runs, sources."""
    spec = result.spec
    metrics = sorted({c.metric for c in spec.columns})
    scale = f" × {spec.scale:g}" if spec.scale != 1 else ""
    seeds = f"seeds {', '.join(map(str, result.expected))}" if result.expected else "no seeds"
    lines = [
        f"metric {', '.join(metrics)}{scale} ({spec.better} is better); mean ± std (ddof=1) over "
        f"{seeds}; beside each cell the paper's value and Δ = ours − paper.",
    ]
    if spec.source:
        lines.append(f"paper: {spec.source}.")
    sources = ", ".join(result.runs.sources) or "none"
    lines.append(
        f"runs: {sources}; {len(result.used)} finished runs used, "
        f"{len(result.runs.unfinished)} unfinished job directories."
    )
    used = result.runs.frame[result.runs.frame["run_dir"].isin(result.used)]
    commits = sorted(
        str(run.get("git.commit"))[:12] + ("+dirty" if run.get("git.dirty") is True else "")
        for _, run in used.iterrows()
        if isinstance(run.get("git.commit"), str)
    )
    if commits:
        lines.append(f"code of the runs: {', '.join(dict.fromkeys(commits))}.")
    return lines


def _notes(result: TableResult, limit: int = 20) -> list[str]:
    notes = list(result.notes) + list(result.spec.notes)
    for cell in result.cells.values():
        notes.extend(cell.notes)
    unfinished = result.runs.unfinished
    for run_dir, why in unfinished[:limit]:
        notes.append(f"unfinished: {run_dir} ({why})")
    if len(unfinished) > limit:
        notes.append(f"unfinished: and {len(unfinished) - limit} more")
    return notes


def to_markdown(result: TableResult, stamp: Stamp) -> str:
    """The table as GitHub Markdown, stamped in an HTML comment."""
    spec = result.spec
    out = [f"<!-- {line} -->" for line in stamp.lines()]
    out += ["", f"## {spec.name}: {spec.title}", ""]
    out += _header(result) + [""]

    def table(labels: list[str], body: list[list[str]]) -> list[str]:
        lines = ["| " + " | ".join([spec.row_label, *labels]) + " |"]
        lines.append("|" + "---|" * (len(labels) + 1))
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return lines

    body = []
    for row in spec.rows:
        cells = [row.label]
        for column in spec.columns:
            ours, paper = _cell_parts(result.cells[(row.value, column.label)], spec.digits)
            cells.append(f"{ours} [{paper}]" if ours else "")
        body.append(cells)
    out += table([c.label for c in spec.columns], body)

    for comparison in spec.comparisons:
        pairs = result.pairs(comparison.label)
        labels = list(dict.fromkeys(f"{p.a.column.label} − {p.b.column.label}" for p in pairs))
        body = []
        for row in spec.rows:
            cells = [row.label] + [""] * len(labels)
            for p in pairs:
                if p.a.row is row:
                    index = labels.index(f"{p.a.column.label} − {p.b.column.label}")
                    cells[index + 1] = _paired_text(p, spec.digits)
            body.append(cells)
        out += ["", f"### Paired: {comparison.label} (same seed; mean [95% t-interval], n)", ""]
        out += table(labels, body)

    notes = _notes(result)
    if notes:
        out += ["", "Notes:"] + [f"- {note}" for note in notes]
    return "\n".join(out) + "\n"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "−": "--",
    "Δ": r"$\Delta$",
    "—": "--",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(result: TableResult, stamp: Stamp) -> str:
    """A booktabs tabular: each row's values, then a line with the paper's values and Δ."""
    spec = result.spec
    out = [f"% {line}" for line in stamp.lines()]
    out += [f"% {spec.name}: {spec.title}"] + [f"% {line}" for line in _header(result)]

    def tabular(labels: list[str], body: list[str]) -> list[str]:
        lines = [r"\begin{tabular}{l" + "c" * len(labels) + "}", r"\toprule"]
        lines.append(" & ".join(tex_escape(x) for x in [spec.row_label, *labels]) + r" \\")
        return lines + [r"\midrule", *body, r"\bottomrule", r"\end{tabular}"]

    def ours_tex(cell: Cell) -> str:
        if not cell.applies:
            return ""
        if cell.n == 0:
            return r"\textit{missing}"
        text = f"${_num(cell.mean, spec.digits)}"
        text += rf" \pm {_num(cell.std, spec.digits)}$" if cell.n >= 2 else "$"
        if cell.missing:
            text += rf"\textsuperscript{{n={cell.n}/{len(cell.expected)}}}"
        return text

    def paper_tex(cell: Cell) -> str:
        if not cell.applies:
            return ""
        text = tex_escape(_paper_text(cell.paper))
        if cell.paper is not None and cell.n:
            text += f" (${_num(cell.diff, spec.digits, signed=True)}$)"
        return text

    body = []
    for row in spec.rows:
        cells = [result.cells[(row.value, c.label)] for c in spec.columns]
        body.append(" & ".join([tex_escape(row.label), *map(ours_tex, cells)]) + r" \\")
        paper_label = r"\quad\textit{paper} ($\Delta$)"
        body.append(" & ".join([paper_label, *map(paper_tex, cells)]) + r" \\")
    out += ["", r"\begin{table}[t]", r"\centering", r"\small"]
    out += [rf"\caption{{{tex_escape(spec.name + ': ' + spec.title)}}}"]
    out += tabular([c.label for c in spec.columns], body)

    for comparison in spec.comparisons:
        pairs = result.pairs(comparison.label)
        labels = list(dict.fromkeys(f"{p.a.column.label} − {p.b.column.label}" for p in pairs))
        body = []
        for row in spec.rows:
            cells = [""] * len(labels)
            for p in pairs:
                if p.a.row is row:
                    index = labels.index(f"{p.a.column.label} − {p.b.column.label}")
                    cells[index] = tex_escape(_paired_text(p, spec.digits))
            body.append(" & ".join([tex_escape(row.label), *cells]) + r" \\")
        out += ["", r"\medskip", rf"\textit{{Paired: {tex_escape(comparison.label)}}}", ""]
        out += tabular(labels, body)
    out += [r"\end{table}"]
    out += [f"% {line}" for line in _notes(result)]
    return "\n".join(out) + "\n"


CSV_COLUMNS = (
    "kind",
    "table",
    "row",
    "row_label",
    "column",
    "metric",
    "status",
    "mean",
    "std",
    "n",
    "n_expected",
    "seeds",
    "missing_seeds",
    "paper",
    "paper_pm",
    "diff",
    "ci_low",
    "ci_high",
    "per_seed",
    "verdict",
    "run_dirs",
)


def to_frame(result: TableResult) -> pd.DataFrame:
    """Long format: one line per cell ("cell") and per paired comparison ("paired")."""
    spec = result.spec
    records = []
    for (_, _), cell in result.cells.items():
        records.append(
            {
                "kind": "cell",
                "table": spec.name,
                "row": cell.row.value,
                "row_label": cell.row.label,
                "column": cell.column.label,
                "metric": cell.column.metric,
                "status": cell.status,
                "mean": cell.mean,
                "std": cell.std,
                "n": cell.n,
                "n_expected": len(cell.expected),
                "seeds": ";".join(map(str, cell.seeds)),
                "missing_seeds": ";".join(map(str, cell.missing)) if cell.applies else "",
                "paper": cell.paper.value if cell.paper else math.nan,
                "paper_pm": cell.paper.pm if cell.paper and cell.paper.pm is not None else math.nan,
                "diff": cell.diff,
                "per_seed": ";".join(f"{s}:{v!r}" for s, v in sorted(cell.values.items())),
                "run_dirs": ";".join(cell.run_dirs[s] for s in cell.seeds),
            }
        )
    for pair in result.paired:
        low, high = pair.interval
        label = f"{pair.comparison.label}: {pair.a.column.label} − {pair.b.column.label}"
        records.append(
            {
                "kind": "paired",
                "table": spec.name,
                "row": pair.a.row.value,
                "row_label": pair.a.row.label,
                "column": label,
                "metric": pair.a.column.metric,
                "status": "missing" if pair.n == 0 else "ok",
                "mean": pair.mean,
                "std": pair.std,
                "n": pair.n,
                "n_expected": len(pair.a.expected),
                "seeds": ";".join(map(str, pair.diffs)),
                "missing_seeds": ";".join(str(s) for s in pair.a.expected if s not in pair.diffs),
                "paper": pair.paper,
                "ci_low": low,
                "ci_high": high,
                "per_seed": ";".join(f"{s}:{v!r}" for s, v in pair.diffs.items()),
                "verdict": pair.verdict(spec.better),
            }
        )
    return pd.DataFrame.from_records(records, columns=list(CSV_COLUMNS))


def to_csv(result: TableResult, stamp: Stamp) -> str:
    """The long-format frame as CSV under '# ' comment lines (read with comment='#')."""
    head = "".join(f"# {line}\n" for line in stamp.lines())
    return head + to_frame(result).to_csv(index=False, lineterminator="\n")


def write_table(result: TableResult, out: str | Path, stamp: Stamp) -> list[Path]:
    """Write `<out>.md`, `<out>.tex` and `<out>.csv` atomically; return their paths."""
    out = Path(out)
    renders = {".md": to_markdown, ".tex": to_latex, ".csv": to_csv}
    paths = []
    for suffix, render in renders.items():
        path = out.with_name(out.name + suffix)
        paths.append(atomic_write_text(path, render(result, stamp)))
    log.info("wrote %s", ", ".join(map(str, paths)))
    return paths
