"""Figures from hand-made metrics.jsonl files: the curve data is exact, every figure is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harmless.experiment.figures import (
    curve_table,
    final_transfer,
    plot_curves,
    plot_frequency,
    plot_lexico,
    plot_tradeoff,
    read_metrics,
    save_figure,
)
from harmless.experiment.tables import Stamp, collect_runs
from tests.test_tables import _script, write_run

STAMP = Stamp("python scripts/plot_figures.py curves --runs runs", "0123abcd")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _log(method: str, seed: int, optimizer: str) -> list[dict]:
    """Ten epochs of test metrics and two lexico records per epoch (ours only)."""
    gain = 0.002 if method == "ours" else 0.0
    records = []
    for epoch in range(1, 11):
        step = 100 * epoch
        if method == "ours":
            for sub in (step - 50, step):
                records.append(
                    {
                        "step": sub,
                        "epoch": epoch - 1,
                        "lexico/lambda_mean": 0.1 * seed,
                        "lexico/lambda_max": 1.0,
                        "lexico/barrier_active": 0.25,
                        "lexico/grad_cos": -0.1,
                        "lexico/transfer_loss": 1.0 / epoch,
                    }
                )
        auc = 0.80 + 0.004 * epoch + gain + 0.001 * seed
        records.append(
            {
                "step": step,
                "epoch": epoch,
                "valid/auc": auc,
                "test/auc": auc,
                "test/logloss": 0.5 - 0.01 * epoch,
                "transfer/zip": None,
            }
        )
    return records


@pytest.fixture
def runs(tmp_path: Path):
    root = tmp_path / "runs"
    for optimizer in ("adam", "sgd"):
        for method in ("baseline", "ours"):
            for seed in (1, 2):
                log = _log(method, seed, optimizer)
                choices = {"model": "deepfm", "method": method, "optimizer": optimizer}
                metrics = {"test/auc": log[-1]["test/auc"], "transfer/zip": 0.3 - 0.1 * seed}
                name = f"{optimizer}_{method}_s{seed}"
                write_run(root, name, seed, choices, {"task.budget": 10000}, metrics, log=log)
    # Figure 2's grid: fixed lambda in {0.01, 0.1} and ours, two seeds each
    for seed in (1, 2):
        for lam, loss, ppl in ((0.01, 0.25, 64.0), (0.1, 0.15, 65.0)):
            write_run(
                root / "grid",
                f"fixed_{lam}_s{seed}",
                seed,
                {"task": "lm_wikitext2", "method": "fixed"},
                {"method.lam": lam},
                {"test/ppl": ppl + seed, "transfer/emb": loss},
            )
        write_run(
            root / "grid",
            f"ours_s{seed}",
            seed,
            {"task": "lm_wikitext2", "method": "ours"},
            {},
            {"test/ppl": 62.0 + seed, "transfer/emb": 0.2},
        )
    # an unfinished run whose partial curve must not be drawn
    write_run(root, "partial", 3, {"method": "ours"}, {}, {"test/auc": 0.1}, status=None)
    return collect_runs(root).frame


def _is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_curve_data_is_the_last_value_per_epoch(runs):
    ours = runs[(runs["choices.method"] == "ours") & (runs["choices.optimizer"] == "adam")]
    logs = {d: read_metrics(d) for d in ours["run_dir"]}
    table = curve_table(logs, "test/auc", every=5)
    assert list(table.index) == [5, 10] and table.shape[1] == 2
    assert table.mean(axis=1).tolist() == pytest.approx([0.8235, 0.8435])
    lam = curve_table(logs, "lexico/lambda_mean", x="step")
    assert lam.loc[50].tolist() == pytest.approx([0.1, 0.2])
    assert curve_table(logs, "not/logged").empty


def test_curves_figure_4_and_5(runs, tmp_path):
    adam = runs[runs["choices.optimizer"] == "adam"]
    fig = plot_curves(adam, ["test/logloss", "test/auc"], every=5)
    paths = save_figure(fig, tmp_path / "fig", "figure4", STAMP, adam["run_dir"], formats=("png",))
    png, txt = paths
    assert _is_png(png) and txt.suffix == ".txt"
    assert Image.open(png).info["Description"].startswith("produced by: python scripts/plot")
    assert "sources:" in txt.read_text() and str(adam["run_dir"].iloc[0]) in txt.read_text()
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == sorted(p.name for p in paths)

    fig = plot_curves(
        runs.dropna(subset=["choices.optimizer"]), ["test/auc"], panel_by="choices.optimizer"
    )
    assert [ax.get_title() for ax in fig.axes] == ["test/auc, adam", "test/auc, sgd"]


def test_lexico_diagnostics(runs, tmp_path):
    fig = plot_lexico(runs[runs["choices.method"] == "ours"])
    assert len(fig.axes) == 4
    (png, _) = save_figure(fig, tmp_path, "lexico", STAMP, formats=("png",))
    assert _is_png(png)


def test_tradeoff_figure_2(runs, tmp_path):
    grid = runs[runs["choices.task"] == "lm_wikitext2"]
    assert sorted(final_transfer(grid)) == pytest.approx([0.15, 0.15, 0.2, 0.2, 0.25, 0.25])
    fig = plot_tradeoff(grid, "test/ppl")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["λ=0.01", "λ=0.1"]
    (png, _) = save_figure(fig, tmp_path, "figure2", STAMP, formats=("png",))
    assert _is_png(png)


def test_frequency_figure_3(tmp_path):
    counts = np.array([0, 5, 100, 3, 1, 40])
    np.save(tmp_path / "ml.npy", counts)
    fig = plot_frequency({"MovieLens-1M": tmp_path / "ml.npy", "toy": np.arange(1, 50)})
    line = fig.axes[0].lines[0]
    assert line.get_xdata().tolist() == [1, 2, 3, 4, 5]
    assert line.get_ydata() == pytest.approx(np.log([100, 40, 5, 3, 1]))
    assert "1 unseen" in fig.axes[0].get_title()
    png, pdf, _ = save_figure(fig, tmp_path, "figure3", STAMP)
    assert _is_png(png) and pdf.read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="1-D array"):
        plot_frequency({"bad": np.ones((2, 2))})


def test_plot_figures_script(runs, tmp_path, capsys):
    plot_figures = _script("plot_figures")
    root = str(Path(runs["run_dir"].iloc[0]).parent)
    out = tmp_path / "figs"
    argv = ["curves", "--runs", root, "--metric", "test/auc", "--where", "choices.optimizer=sgd"]
    assert plot_figures.main([*argv, "--out", str(out), "--name", "f5", "--formats", "png"]) == 0
    assert _is_png(out / "f5.png") and "choices.optimizer=sgd" in (out / "f5.txt").read_text()
    assert "wrote" in capsys.readouterr().out
    np.save(tmp_path / "c.npy", np.array([3, 2, 1]))
    argv = [
        "frequency",
        "--counts",
        f"toy={tmp_path / 'c.npy'}",
        "--out",
        str(out),
        "--formats",
        "png",
    ]
    assert plot_figures.main(argv) == 0 and _is_png(out / "frequency.png")
    argv = ["curves", "--runs", root, "--metric", "test/auc", "--where", "choices.method=none"]
    assert plot_figures.main([*argv, "--out", str(out)]) == 1
