"""Tables from hand-made run directories: exact statistics, missing seeds, renders, spec checks.

The fake sweep (test/auc, shown x 100):

    cell            seed 1  seed 2  seed 3         mean   std
    DeepFM B  10k   84      85      86             85.0   1.0
    DeepFM ours 10k 85      87      86             86.0   1.0
    DeepFM B  20k   80      82      84             82.0   2.0
    DeepFM ours 20k 83      86      (unfinished)   84.5   2.1213
    AutoInt B 10k   no runs
    AutoInt B 20k   null metric (diverged)
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from harmless.experiment.paper import load_spec, parse_paper_value, parse_spec, same_value
from harmless.experiment.tables import (
    SourceUnavailable,
    Stamp,
    build_table,
    collect_runs,
    collect_wandb,
    t_interval,
    to_csv,
    to_latex,
    to_markdown,
    write_table,
)

REPO = Path(__file__).resolve().parents[1]
T_975_DF1 = 12.706205  # Student t quantiles from a printed table
T_975_DF2 = 4.302653
STAMP = Stamp("python scripts/make_table.py --spec toy.yaml", "0123abcd+dirty")

SPEC = """
table: 6
title: toy MovieLens table
experiment: toy
metric: test/auc
scale: 100
digits: 2
better: higher
where: {choices.task: ctr_movielens}
rows:
  key: params.task.budget
  label: "#params"
  values:
    - {value: 10000, label: 10k}
    - {value: 20000, label: 20k}
columns:
  - label: DeepFM B
    match: {choices.model: deepfm, choices.method: baseline}
    paper: {10000: 84.9 ± 0.1, 20000: 85.0}
  - label: DeepFM ours
    match: {choices.model: deepfm, choices.method: ours}
    paper: {10000: 85.2 ± 0.1, 20000: null}
  - label: AutoInt B
    match: {choices.model: autoint, choices.method: baseline}
    paper: {10000: 84.5, 20000: 84.7}
comparisons:
  - label: ours - B
    a: {choices.method: ours}
    b: {choices.method: baseline}
"""


def write_run(
    root: Path,
    name: str,
    seed: int,
    choices: dict,
    params: dict,
    metrics: dict,
    status: str | None = "complete",
    log: list[dict] | None = None,
    profile: str = "cpu",
) -> Path:
    """A job directory as the run layer leaves it; status None leaves out result.json."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"seed: {seed}\n")
    (run / "meta.json").write_text("{}")
    lines = log if log is not None else [{"step": 1, "epoch": 1, **metrics}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if status is not None:
        result = {
            "experiment": "toy",
            "status": status,
            "seed": seed,
            "profile": profile,
            "choices": {"task": "ctr_movielens", "optimizer": "adam", **choices},
            "params": params,
            "metrics": metrics,
            "git": {"commit": "feedbeef" * 5, "dirty": False},
            "run_dir": str(run),
        }
        (run / "result.json").write_text(json.dumps(result))
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    auc = {
        ("deepfm", "baseline", 10000): [0.84, 0.85, 0.86],
        ("deepfm", "ours", 10000): [0.85, 0.87, 0.86],
        ("deepfm", "baseline", 20000): [0.80, 0.82, 0.84],
        ("deepfm", "ours", 20000): [0.83, 0.86],
    }
    for (model, method, budget), values in auc.items():
        for seed, value in enumerate(values, 1):
            choices = {"model": model, "method": method}
            name = f"{model}_{method}_{budget}_s{seed}"
            write_run(root, name, seed, choices, {"task.budget": budget}, {"test/auc": value})
    # seed 3 of DeepFM ours at 20k never finished: partial metrics, no result.json
    choices = {"model": "deepfm", "method": "ours"}
    write_run(root, "deepfm_ours_20000_s3", 3, choices, {}, {"test/auc": 0.99}, status=None)
    # a failed job and a run of another task: neither may count
    write_run(root, "failed", 1, choices, {"task.budget": 10000}, {"test/auc": 0.5}, "failed")
    criteo = {"task": "ctr_criteo", **choices}
    write_run(root, "criteo_s1", 1, criteo, {"task.budget": 10000}, {"test/auc": 0.7})
    # AutoInt B at 20k diverged in seed 1: the metric is null
    choices = {"model": "autoint", "method": "baseline"}
    write_run(root / "nested", "autoint_s1", 1, choices, {"task.budget": 20000}, {"test/auc": None})
    return root


@pytest.fixture
def spec(tmp_path: Path):
    path = tmp_path / "toy.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return load_spec(path)


def test_cells_hold_exact_mean_std_n_and_paper_difference(spec, sweep):
    result = build_table(spec, collect_runs(sweep))
    assert result.expected == (1, 2, 3)

    cell = result.cell(10000, "DeepFM B")
    assert cell.mean == pytest.approx(85.0) and cell.std == pytest.approx(1.0)
    assert (cell.n, cell.seeds, cell.missing, cell.status) == (3, [1, 2, 3], [], "ok")
    assert (cell.paper.value, cell.paper.pm) == (84.9, 0.1)
    assert cell.diff == pytest.approx(0.1)

    cell = result.cell(10000, "DeepFM ours")
    assert (cell.mean, cell.std) == (pytest.approx(86.0), pytest.approx(1.0))
    assert cell.diff == pytest.approx(86.0 - 85.2)

    cell = result.cell(20000, "DeepFM B")
    assert (cell.mean, cell.std) == (pytest.approx(82.0), pytest.approx(2.0))
    assert cell.diff == pytest.approx(-3.0)


def test_missing_seeds_and_cells_are_visible(spec, sweep):
    result = build_table(spec, collect_runs(sweep))

    cell = result.cell(20000, "DeepFM ours")
    assert (cell.n, cell.seeds, cell.missing, cell.status) == (2, [1, 2], [3], "incomplete")
    assert cell.mean == pytest.approx(84.5)
    assert cell.std == pytest.approx(3 / math.sqrt(2))
    assert cell.paper is None and math.isnan(cell.diff)

    assert result.cell(10000, "AutoInt B").status == "missing"
    diverged = result.cell(20000, "AutoInt B")
    assert diverged.status == "missing" and "no finite test/auc" in diverged.notes[0]

    md = to_markdown(result, STAMP)
    assert "84.50 ± 2.12 (n=2/3; missing seed 3) [paper not reported]" in md
    assert "85.00 ± 1.00 [paper 84.9 ± 0.1; Δ +0.10]" in md
    assert "— missing [paper 84.5]" in md
    assert "deepfm_ours_20000_s3 (no result.json)" in md
    assert "failed (status 'failed')" in md

    frame = pd.read_csv(pd.io.common.StringIO(to_csv(result, STAMP)), comment="#")
    cells = frame[frame["kind"] == "cell"].set_index(["row", "column"])
    assert cells.loc[(10000, "AutoInt B"), "status"] == "missing"
    assert math.isnan(cells.loc[(10000, "AutoInt B"), "mean"])
    assert cells.loc[(20000, "DeepFM ours"), "missing_seeds"] == "3"
    assert cells.loc[(20000, "DeepFM ours"), "n"] == 2

    tex = to_latex(result, STAMP)
    assert r"\textit{missing}" in tex and r"\textsuperscript{n=2/3}" in tex


def test_unfinished_and_failed_runs_are_never_read(spec, sweep):
    runs = collect_runs(sweep)
    assert len(runs.frame) == 13  # 11 fake results + criteo + the diverged run
    assert 0.99 not in set(runs.frame["test/auc"]) and 0.5 not in set(runs.frame["test/auc"])
    reasons = {Path(d).name: why for d, why in runs.unfinished}
    assert reasons == {"deepfm_ours_20000_s3": "no result.json", "failed": "status 'failed'"}


def test_paired_differences_use_seeds_present_in_both(spec, sweep):
    result = build_table(spec, collect_runs(sweep))
    pair_10k, pair_20k = result.pairs("ours - B")
    assert (pair_10k.a.column.label, pair_10k.b.column.label) == ("DeepFM ours", "DeepFM B")

    # 10k: (85-84, 87-85, 86-86) = (1, 2, 0): mean 1, sd 1
    assert pair_10k.diffs == pytest.approx({1: 1.0, 2: 2.0, 3: 0.0})
    low, high = pair_10k.interval
    half = T_975_DF2 * 1.0 / math.sqrt(3)
    assert (pair_10k.mean, low, high) == pytest.approx((1.0, 1 - half, 1 + half), rel=1e-6)
    assert pair_10k.paper == pytest.approx(0.3)
    assert pair_10k.verdict("higher") == "no clear difference"

    # 20k: seed 3 is missing from ours: (83-80, 86-82) = (3, 4): mean 3.5, sd 1/sqrt(2)
    assert pair_20k.diffs == pytest.approx({1: 3.0, 2: 4.0})
    half = T_975_DF1 * (1 / math.sqrt(2)) / math.sqrt(2)
    assert pair_20k.interval == pytest.approx((3.5 - half, 3.5 + half), rel=1e-6)
    assert pair_20k.n == 2 and math.isnan(pair_20k.paper)

    md = to_markdown(result, STAMP)
    assert "| 10k | +1.00 [-1.48, +3.48] n=3 (paper +0.3) |" in md
    assert "+3.50 [-2.85, +9.85] n=2/3" in md


def test_t_interval_by_hand():
    half = T_975_DF2 * 2.0 / math.sqrt(3)  # values 2, 4, 6: mean 4, sd 2
    assert t_interval([2.0, 4.0, 6.0]) == pytest.approx((4 - half, 4 + half), rel=1e-6)
    assert all(math.isnan(v) for v in t_interval([1.0]))


def test_seeds_from_the_caller(spec, sweep):
    result = build_table(spec, collect_runs(sweep), seeds=[1, 2, 3, 4])
    cell = result.cell(10000, "DeepFM B")
    assert (cell.missing, cell.status) == ([4], "incomplete")

    result = build_table(spec, collect_runs(sweep), seeds=[1, 2])
    cell = result.cell(10000, "DeepFM B")
    assert (cell.seeds, cell.mean, cell.status) == ([1, 2], pytest.approx(84.5), "ok")


def test_two_runs_for_one_seed_raise(spec, sweep):
    choices = {"model": "deepfm", "method": "baseline"}
    params, metrics = {"task.budget": 10000}, {"test/auc": 0.9}
    write_run(sweep / "paper", "again", 1, choices, params, metrics, profile="paper")
    with pytest.raises(ValueError, match="2 finished runs for seed 1"):
        build_table(spec, collect_runs(sweep))
    # narrowing by a field that separates them is the way out
    result = build_table(spec, collect_runs(sweep), where={"profile": "cpu"})
    assert result.cell(10000, "DeepFM B").mean == pytest.approx(85.0)


def test_outputs_are_written_atomically_with_the_stamp(spec, sweep, tmp_path):
    result = build_table(spec, collect_runs(sweep))
    paths = write_table(result, tmp_path / "out" / "toy_cpu", STAMP)
    assert [p.name for p in paths] == ["toy_cpu.md", "toy_cpu.tex", "toy_cpu.csv"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert STAMP.command in text.splitlines()[0] and "0123abcd+dirty" in text.splitlines()[1]
    frame = pd.read_csv(paths[2], comment="#")
    assert set(frame["kind"]) == {"cell", "paired"} and len(frame) == 6 + 2


BAD_SPECS = [
    ("colour: red", "colour", "unknown key"),
    ("better: bigger", "better", "not one of"),
    ("metric: auc", "metric", "split/name"),
    ("where: {choice.task: x}", "where.choice.task", "must start with"),
    ("scale: -1", "scale", "positive"),
]


@pytest.mark.parametrize(("line", "key", "problem"), BAD_SPECS)
def test_bad_top_level_keys_are_named(tmp_path, line, key, problem):
    path = tmp_path / "bad.yaml"
    name = line.split(":")[0]
    kept = [ln for ln in SPEC.splitlines() if not ln.startswith(f"{name}:")]
    path.write_text("\n".join(kept) + f"\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad\.yaml: {key}: .*{problem}"):
        load_spec(path)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("{10000: 84.9 ± 0.1, 20000: 85.0}", "{10000: 84.9 ± 0.1}", r"columns\[0\]\.paper"),
        (
            "{10000: 84.9 ± 0.1, 20000: 85.0}",
            "{10000: 84.9 ±, 20000: 1}",
            r"columns\[0\]\.paper\.10000",
        ),
        ("{10000: 84.5, 20000: 84.7}", "{10000: 84.5, 30000: 1}", r"columns\[2\]\.paper\.30000"),
        ("{choices.model: autoint,", "{choices.modle: autoint, x: 1,", r"columns\[2\]\.match"),
        ("a: {choices.method: ours}", "a: {choices.method: select}", r"comparisons\[0\]"),
        ("label: 20k}", "label: 20k, colour: red}", r"rows\.values\[1\]\.colour"),
    ],
)
def test_bad_nested_keys_are_named(tmp_path, old, new, key):
    assert old in SPEC
    path = tmp_path / "bad.yaml"
    path.write_text(SPEC.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad\.yaml: {key}"):
        load_spec(path)


def test_paper_values_and_matching():
    for text in ("84.9 ± 0.1", "84.9 +- 0.1", " 84.9±0.1 "):
        assert (parse_paper_value(text).value, parse_paper_value(text).pm) == (84.9, 0.1)
    assert parse_paper_value("85.1 ± 0.0").pm == 0.0 and parse_paper_value(61.6).pm is None
    assert parse_paper_value(None) is None
    with pytest.raises(ValueError):
        parse_paper_value("about 85")
    assert same_value(10000.0, 10000) and same_value("1e-2", 0.01) and same_value("adam", "adam")
    assert same_value("sgd", ["adam", "sgd"]) and not same_value(math.nan, "x")
    with pytest.raises(ValueError, match="a spec must be a mapping"):
        parse_spec([1, 2])


# ----------------------------------------------------------------------------- the paper's specs

# (file, row value, column label, value, spread) checked by hand against tables.md
PAPER_CELLS = [
    ("table1", "lm_wikitext2", "+ FRAGE + ours test", 61.6, 0.1),
    ("table1", "lm_wikitext2", "+ CosReg + ours valid", 65.5, 0.2),
    ("table1", "lm_wikitext103", "+ FRAGE valid", 31.3, None),
    ("table2", "lm_wikitext2", "lexico test", 62.2, None),
    ("table2", "lm_wikitext103", "select valid", 31.4, None),
    ("table3", "lm_wikitext103", "+ FRAGE + ours tail", 275.6, None),
    ("table3", "lm_wikitext103", "baseline head", 21.7, None),
    ("table4", "nmt_wmt14_en_de", "+ FRAGE + ours", 28.6, 0.2),
    ("table5", "ner_conll03", "+ DEI (GAN transfer)", 91.8, 0.1),
    ("table6", 30000, "DeepFM ours", 85.3, 0.0),
    ("table6", 10000, "AutoInt +T", 84.6, 0.2),
    ("table7", 50000, "AutoInt +T", 79.5, 0.2),
    ("table7", 20000, "AutoInt ours", 79.6, 0.0),
    ("table8", 20000, "SGD+M +T", 84.8, None),
    ("table8", 10000, "SGD ours", 84.3, None),
]


def test_every_paper_spec_loads():
    paths = sorted((REPO / "results" / "paper").glob("*.yaml"))
    assert [p.stem for p in paths] == [f"table{i}" for i in range(1, 9)]
    for path in paths:
        spec = load_spec(path)
        assert spec.table == int(path.stem.removeprefix("table"))


@pytest.mark.parametrize(("name", "row", "column", "value", "pm"), PAPER_CELLS)
def test_paper_numbers_match_tables_md(name, row, column, value, pm):
    spec = load_spec(REPO / "results" / "paper" / f"{name}.yaml")
    paper = spec.column(column).paper[spec.row(row).value]
    assert (paper.value, paper.pm) == (value, pm)


def test_cosreg_has_no_wt103_cell():
    spec = load_spec(REPO / "results" / "paper" / "table1.yaml")
    assert spec.column("+ CosReg test").rows == ("lm_wikitext2",)


# ----------------------------------------------------------------------------- scripts


def _script(name: str) -> types.ModuleType:
    path = REPO / "scripts" / f"{name}.py"
    loaded = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def test_make_table_script(spec, sweep, tmp_path, capsys):
    make_table = _script("make_table")
    out = tmp_path / "table_toy"
    argv = ["--spec", str(spec.path), "--runs", str(sweep), "--seeds", "1", "2", "3"]
    assert make_table.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## Table 6: toy MovieLens table" in printed and "n=2/3" in printed
    for suffix in (".md", ".tex", ".csv"):
        text = out.with_name(out.name + suffix).read_text(encoding="utf-8")
        assert "produced by: python scripts/make_table.py --spec" in text
        assert "--seeds 1 2 3" in text and "git commit: " in text

    assert make_table.main(["--spec", str(spec.path), "--runs", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_make_table_without_a_task(tmp_path, capsys):
    make_table = _script("make_table")
    spec = REPO / "results" / "paper" / "table4.yaml"
    out = tmp_path / "table4"
    argv = ["--spec", str(spec), "--runs", str(tmp_path / "runs"), "--out", str(out)]
    assert make_table.main(argv) == 0
    assert "no task/runs" in capsys.readouterr().out
    assert "— missing [paper 28.6 ± 0.2]" in out.with_name("table4.md").read_text()


class _FakeRun:
    def __init__(self, run_id, state, seed, method, auc):
        self.id, self.state, self.group, self.job_type = run_id, state, "toy", method
        self.tags = ["task:ctr_movielens", f"seed:{seed}"]
        self.config = {"seed": seed, "experiment_name": "toy", "profile_name": "cpu"}
        self.config |= {"cell_params": ["task.budget"], "task": {"budget": 10000}}
        self.summary_metrics = {"test/auc": auc, "_step": 3}


class _FakeApi:
    def runs(self, project):
        assert project == "me/harmless"
        return [
            _FakeRun("a", "finished", 1, "baseline", 0.84),
            _FakeRun("b", "finished", 2, "baseline", 0.86),
            _FakeRun("c", "running", 3, "baseline", 0.99),
        ]


def test_wandb_runs_are_read_like_run_files():
    runs = collect_wandb("me/harmless", api=_FakeApi())
    assert sorted(runs.frame["test/auc"]) == [0.84, 0.86]
    assert runs.unfinished == [("wandb:me/harmless/c", "W&B state 'running'")]
    row = runs.frame.iloc[0]
    assert (row["choices.method"], row["choices.task"], row["params.task.budget"]) == (
        "baseline",
        "ctr_movielens",
        10000,
    )


def test_unreachable_wandb_says_why(monkeypatch, spec, capsys):
    def refuse(**_):
        raise RuntimeError("No API key configured")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=refuse))
    with pytest.raises(SourceUnavailable, match="No API key"):
        collect_wandb("me/harmless")
    make_table = _script("make_table")
    assert make_table.main(["--spec", str(spec.path), "--wandb-project", "me/harmless"]) == 1
    err = capsys.readouterr().err
    assert "cannot read runs from W&B" in err and "--runs" in err
