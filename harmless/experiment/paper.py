"""Table specs: the paper's numbers and the layout of each table for this project's runs.

A spec is a YAML file under `results/paper/` (one per table of the paper). It names the metric,
how to display it, which runs fill each cell (`match` dicts over a run's flattened result), the
paper's value for each cell, and paired comparisons between columns. `results/paper/README.md`
documents the format; `load_spec` validates a file and raises a `ValueError` that names the file
and the offending key.

    spec = load_spec("results/paper/table6.yaml")
    spec.columns[0].paper[10000]      # PaperValue(value=84.9, pm=0.1, text='84.9 ± 0.1')
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: top-level keys a spec may hold (anything else is a typo and is rejected)
REQUIRED_KEYS = ("title", "experiment", "metric", "better", "rows", "columns")
OPTIONAL_KEYS = (
    "table",
    "source",
    "no_task",
    "scale",
    "digits",
    "where",
    "comparisons",
    "notes",
)
#: run fields a `match`/`where` dict may name besides `choices.*` and `params.*`
PLAIN_MATCH_KEYS = ("experiment", "profile", "status", "seed")
BETTER = ("higher", "lower")

_PAPER_RE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(?:±|\+-|\+/-)\s*(\d+(?:\.\d+)?)\s*$")
_METRIC_RE = re.compile(r"^[A-Za-z0-9_]+/[A-Za-z0-9_./-]+$")


@dataclass(frozen=True)
class PaperValue:
    """A number the paper reports: the mean, its appendix spread (if any), the text as given."""

    value: float
    pm: float | None
    text: str


@dataclass(frozen=True)
class Row:
    """A table row: the runs whose `key` equals `value` (and `match`, if any)."""

    value: Any
    label: str
    match: dict[str, Any]


@dataclass(frozen=True)
class Column:
    """A table column: the runs matching `match`, read at `metric`, with the paper's values.

    `paper` maps a row value to the paper's number (None: the paper reports none). `rows` lists
    the row values the column applies to; its other cells are not part of the table ("n/a").
    """

    label: str
    match: dict[str, Any]
    metric: str
    paper: dict[Any, PaperValue | None]
    rows: tuple[Any, ...]


@dataclass(frozen=True)
class Comparison:
    """Paired differences a - b: each column whose match contains `a` is paired with the column
    whose match is that column's with `a`'s keys replaced by `b` (same row, same metric)."""

    label: str
    a: dict[str, Any]
    b: dict[str, Any]


@dataclass(frozen=True)
class TableSpec:
    """A validated table spec (see the module docstring and results/paper/README.md)."""

    path: Path
    title: str
    experiment: str
    metric: str
    better: str
    row_key: str
    row_label: str
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    table: int | None = None
    source: str = ""
    no_task: str | None = None
    scale: float = 1.0
    digits: int = 2
    where: dict[str, Any] = field(default_factory=dict)
    comparisons: tuple[Comparison, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"Table {self.table}" if self.table is not None else self.path.stem

    def column(self, label: str) -> Column:
        for column in self.columns:
            if column.label == label:
                return column
        raise KeyError(f"{self.path}: no column {label!r}")

    def row(self, value: Any) -> Row:
        for row in self.rows:
            if same_value(row.value, value):
                return row
        raise KeyError(f"{self.path}: no row {value!r}")


def same_value(value: Any, wanted: Any) -> bool:
    """Whether a run's field `value` equals a spec's `wanted` (a list means any of its items).

    Numbers compare as numbers whatever their spelling (10000, 1e4 and "10000" are equal), so a
    budget written as an int in YAML matches one stored as a float in JSON; booleans compare as
    booleans; everything else compares as text. A missing value (None, NaN) matches nothing.
    """
    if isinstance(wanted, list | tuple):
        return any(same_value(value, item) for item in wanted)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(value, bool) or isinstance(wanted, bool):
        return str(value).lower() == str(wanted).lower()
    try:
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=0.0)
    except (TypeError, ValueError):
        return str(value) == str(wanted)


def parse_paper_value(raw: Any) -> PaperValue | None:
    """A paper number from YAML: a number, "84.9 ± 0.1" (also "+-"), or null (not reported)."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise ValueError(f"expected a number or 'mean ± spread', got {raw!r}")
    if isinstance(raw, int | float):
        return PaperValue(float(raw), None, str(raw))
    if isinstance(raw, str):
        found = _PAPER_RE.match(raw)
        if found:
            return PaperValue(float(found[1]), float(found[2]), raw.strip())
        try:
            return PaperValue(float(raw), None, raw.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number or 'mean ± spread', got {raw!r}")


def load_spec(path: str | Path) -> TableSpec:
    """Read and validate a table spec; a bad file raises ValueError naming the file and key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    return parse_spec(raw, path)


def parse_spec(raw: Any, path: str | Path = "<spec>") -> TableSpec:
    """Validate a spec already read from YAML (`path` only names it in error messages)."""
    path = Path(path)

    def fail(key: str, problem: str) -> ValueError:
        return ValueError(f"{path}: {key}: {problem}")

    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: a spec must be a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in REQUIRED_KEYS + OPTIONAL_KEYS:
            allowed = ", ".join(REQUIRED_KEYS + OPTIONAL_KEYS)
            raise fail(str(key), f"unknown key (allowed: {allowed})")
    for key in REQUIRED_KEYS:
        if key not in raw:
            raise fail(key, "missing")

    title = _text(raw["title"], "title", fail)
    experiment = _text(raw["experiment"], "experiment", fail)
    metric = _metric(raw["metric"], "metric", fail)
    better = raw["better"]
    if better not in BETTER:
        raise fail("better", f"{better!r} is not one of {', '.join(BETTER)}")
    table = raw.get("table")
    if table is not None and (isinstance(table, bool) or not isinstance(table, int)):
        raise fail("table", f"expected the table's number, got {table!r}")
    scale = raw.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise fail("scale", f"expected a positive number, got {scale!r}")
    digits = raw.get("digits", 2)
    if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 6:
        raise fail("digits", f"expected an integer in 0..6, got {digits!r}")
    no_task = raw.get("no_task")
    if no_task is not None:
        no_task = _text(no_task, "no_task", fail)
    where = _match(raw.get("where", {}), "where", fail)
    notes = raw.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise fail("notes", "expected a list of strings")

    row_key, row_label, rows = _rows(raw["rows"], fail)
    columns = _columns(raw["columns"], rows, metric, fail)
    comparisons = _comparisons(raw.get("comparisons", []), columns, fail)
    return TableSpec(
        path=path,
        title=title,
        experiment=experiment,
        metric=metric,
        better=better,
        row_key=row_key,
        row_label=row_label,
        rows=rows,
        columns=columns,
        table=table,
        source=str(raw.get("source", "")),
        no_task=no_task,
        scale=float(scale),
        digits=digits,
        where=where,
        comparisons=comparisons,
        notes=tuple(notes),
    )


def partner(column: Column, comparison: Comparison, columns: tuple[Column, ...]) -> Column | None:
    """The column `column` is compared against, or None when `column` is not an `a` column.

    `column` is an `a` column when its match holds every key of `comparison.a` with that value;
    its partner has the same metric and the match with `a`'s keys dropped and `b`'s added.
    """
    has_a = all(
        k in column.match and same_value(column.match[k], v) for k, v in comparison.a.items()
    )
    if not has_a:
        return None
    wanted = {k: v for k, v in column.match.items() if k not in comparison.a} | comparison.b
    for other in columns:
        if other.metric == column.metric and _same_match(other.match, wanted):
            return other
    return None


# ----------------------------------------------------------------------------- validation pieces


def _text(value: Any, key: str, fail) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(key, f"expected a non-empty string, got {value!r}")
    return value


def _metric(value: Any, key: str, fail) -> str:
    if not isinstance(value, str) or not _METRIC_RE.match(value):
        raise fail(key, f"expected a metric key 'split/name' (e.g. test/auc), got {value!r}")
    return value


def _match(value: Any, key: str, fail) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(key, f"expected a mapping of run fields to values, got {value!r}")
    for name, wanted in value.items():
        name_ok = isinstance(name, str) and (
            name in PLAIN_MATCH_KEYS
            or (name.startswith(("choices.", "params.")) and len(name.split(".", 1)[1]) > 0)
        )
        if not name_ok:
            plain = ", ".join(PLAIN_MATCH_KEYS)
            raise fail(
                f"{key}.{name}",
                f"a run field must start with 'choices.' or 'params.' (or be one of {plain})",
            )
        items = wanted if isinstance(wanted, list) else [wanted]
        if not items or not all(isinstance(v, str | int | float | bool) for v in items):
            raise fail(f"{key}.{name}", f"expected a scalar or a list of scalars, got {wanted!r}")
    return dict(value)


def _same_match(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    return left.keys() == right.keys() and all(same_value(left[k], right[k]) for k in left)


def _rows(raw: Any, fail) -> tuple[str, str, tuple[Row, ...]]:
    if not isinstance(raw, Mapping):
        raise fail("rows", "expected a mapping with 'key', 'values' and optional 'label'")
    for key in raw:
        if key not in ("key", "label", "values"):
            raise fail(f"rows.{key}", "unknown key (allowed: key, label, values)")
    row_key = raw.get("key")
    if not isinstance(row_key, str):
        raise fail("rows.key", f"expected a run field such as params.task.budget, got {row_key!r}")
    _match({row_key: 0}, "rows", fail)
    label = raw.get("label", row_key)
    values = raw.get("values")
    if not isinstance(values, list) or not values:
        raise fail("rows.values", "expected a non-empty list of {value, label} entries")
    rows: list[Row] = []
    for i, entry in enumerate(values):
        where = f"rows.values[{i}]"
        if not isinstance(entry, Mapping) or "value" not in entry:
            raise fail(where, f"expected a mapping with 'value' ('label', 'match'), got {entry!r}")
        for key in entry:
            if key not in ("value", "label", "match"):
                raise fail(f"{where}.{key}", "unknown key (allowed: value, label, match)")
        value = entry["value"]
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise fail(f"{where}.value", f"expected a scalar, got {value!r}")
        if any(same_value(row.value, value) for row in rows):
            raise fail(f"{where}.value", f"{value!r} appears twice")
        extra = _match(entry.get("match", {}), f"{where}.match", fail)
        if row_key in extra:
            raise fail(f"{where}.match.{row_key}", "the row key is set by 'value'")
        rows.append(Row(value, str(entry.get("label", value)), {row_key: value} | extra))
    return row_key, str(label), tuple(rows)


def _columns(raw: Any, rows: tuple[Row, ...], metric: str, fail) -> tuple[Column, ...]:
    if not isinstance(raw, list) or not raw:
        raise fail("columns", "expected a non-empty list of columns")
    columns: list[Column] = []
    for i, entry in enumerate(raw):
        where = f"columns[{i}]"
        if not isinstance(entry, Mapping):
            raise fail(where, f"expected a mapping, got {entry!r}")
        for key in entry:
            if key not in ("label", "match", "metric", "paper", "rows"):
                allowed = "label, match, metric, paper, rows"
                raise fail(f"{where}.{key}", f"unknown key (allowed: {allowed})")
        label = _text(entry.get("label"), f"{where}.label", fail)
        if any(c.label == label for c in columns):
            raise fail(f"{where}.label", f"{label!r} appears twice")
        match = _match(entry.get("match", {}), f"{where}.match", fail)
        col_metric = _metric(entry.get("metric", metric), f"{where}.metric", fail)
        applies = entry.get("rows")
        if applies is None:
            applies = [row.value for row in rows]
        if not isinstance(applies, list) or not applies:
            raise fail(f"{where}.rows", f"expected a non-empty list of row values, got {applies!r}")
        applies = tuple(_known_row(v, rows, f"{where}.rows", fail) for v in applies)
        paper_raw = entry.get("paper")
        if not isinstance(paper_raw, Mapping):
            raise fail(f"{where}.paper", "expected a mapping of row value to the paper's number")
        paper: dict[Any, PaperValue | None] = {}
        for value, number in paper_raw.items():
            row_value = _known_row(value, rows, f"{where}.paper.{value}", fail)
            if row_value not in applies:
                raise fail(f"{where}.paper.{value}", "row is not in the column's 'rows'")
            try:
                paper[row_value] = parse_paper_value(number)
            except ValueError as err:
                raise fail(f"{where}.paper.{value}", str(err)) from None
        for value in applies:
            if value not in paper:
                raise fail(f"{where}.paper", f"no value for row {value!r} (write null if none)")
        columns.append(Column(label, match, col_metric, paper, applies))
    return tuple(columns)


def _known_row(value: Any, rows: tuple[Row, ...], key: str, fail) -> Any:
    for row in rows:
        if same_value(row.value, value):
            return row.value
    raise fail(key, f"{value!r} is not a row value ({', '.join(str(r.value) for r in rows)})")


def _comparisons(raw: Any, columns: tuple[Column, ...], fail) -> tuple[Comparison, ...]:
    if not isinstance(raw, list):
        raise fail("comparisons", "expected a list of {label, a, b}")
    out: list[Comparison] = []
    for i, entry in enumerate(raw):
        where = f"comparisons[{i}]"
        if not isinstance(entry, Mapping):
            raise fail(where, f"expected a mapping, got {entry!r}")
        for key in entry:
            if key not in ("label", "a", "b"):
                raise fail(f"{where}.{key}", "unknown key (allowed: label, a, b)")
        label = _text(entry.get("label"), f"{where}.label", fail)
        a = _match(entry.get("a"), f"{where}.a", fail)
        b = _match(entry.get("b"), f"{where}.b", fail)
        if not a:
            raise fail(f"{where}.a", "must name at least one run field")
        comparison = Comparison(label, a, b)
        if not any(partner(c, comparison, columns) for c in columns):
            raise fail(where, "pairs no two columns (no column matches a with a partner for b)")
        out.append(comparison)
    return tuple(out)
