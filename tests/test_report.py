"""Report tables against hand-made records: every number here can be checked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import handmade
import pandas as pd
import pytest
from scipy import stats

from benchmark.cli import main
from benchmark.errors import XdkdError
from benchmark.report.leaderboard import write_report
from benchmark.report.plots import pareto_front
from benchmark.report.tidy import load_runs, records_table
from benchmark.store import RunStore
from benchmark.suite.specs import RunRecord

T975 = {2: 4.302653, 3: 3.182446}  # t quantiles for 2 and 3 degrees of freedom


def make_record(
    method: str,
    seed: int,
    acc: float,
    pair: tuple[str, str] = ("mnist", "mnistm"),
    student: str = "lenet",
    selected: dict[str, dict[str, float]] | None = None,
    cells: dict[str, float] | None = None,
    below_floor: bool = False,
    **metrics: float,
) -> RunRecord:
    spec = handmade.make_spec(method, seed, pair, student)
    values = {"target_acc": acc, "heldout_mean_acc": acc - 0.1, "target_ece": 0.05}
    values |= {"params": 1e6 if spec.student.name == "lenet" else 11e6, "teacher_target_acc": 0.5}
    return handmade.make_record(spec, values | metrics, selected, cells, below_floor)


def grid(methods: dict[str, list[float]], pairs: list[tuple[str, str]]) -> list[RunRecord]:
    """Each method's accuracies are its seeds'; every pair gets the same ones, so a pair's
    mean equals the method's mean."""
    return [
        make_record(method, seed, acc, pair)
        for method, accs in methods.items()
        for pair in pairs
        for seed, acc in enumerate(accs)
    ]


TWO_PAIRS = [("mnist", "mnistm"), ("syndigits", "mnist")]
METHODS = {
    "teacher": [0.50, 0.50],
    "target_oracle": [0.95, 0.97],
    "source_only": [0.60, 0.62],
    "kd": [0.70, 0.72],
    "dkd": [0.75, 0.75],
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("report")
    made, _ = write_report(grid(METHODS, TWO_PAIRS), out, "xdkd report test")
    return made, out


def test_summary_has_mean_standard_error_and_t_interval(tmp_path: Path) -> None:
    records = [make_record("kd", seed, acc) for seed, acc in enumerate([0.70, 0.72, 0.74])]
    write_report(records, tmp_path, "test")
    summary = pd.read_csv(tmp_path / "summary.csv")
    row = summary[summary["metric"] == "target_acc"].iloc[0]
    se = 0.02 / math.sqrt(3)  # sample std of 0.70, 0.72, 0.74 is 0.02
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(0.72)
    assert row["se"] == pytest.approx(se)
    assert row["ci_low"] == pytest.approx(0.72 - T975[2] * se, abs=1e-6)
    assert row["ci_high"] == pytest.approx(0.72 + T975[2] * se, abs=1e-6)
    assert pd.read_parquet(tmp_path / "summary.parquet").shape == summary.shape


def by_method(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.droplevel(["protocol", "teacher", "student"])


def test_leaderboard_means_ranks_and_references(report) -> None:
    board = report[0].board
    mean, se, best = by_method(board.mean), by_method(board.se), by_method(board.best)
    assert list(mean.index) == ["target_oracle", "teacher", "dkd", "kd", "source_only"]
    assert mean.loc["kd", "mnist→mnistm"] == pytest.approx(71.0)
    assert se.loc["kd", "mean"] == pytest.approx(1.0)  # seeds 70, 72
    t975_1 = stats.t.ppf(0.975, 1)  # 12.7: two seeds give a wide interval
    low, high = by_method(board.low).loc["kd", "mean"], by_method(board.high).loc["kd", "mean"]
    assert (low, high) == (pytest.approx(71.0 - t975_1), pytest.approx(71.0 + t975_1))
    assert mean.loc["kd", "held-out"] == pytest.approx(61.0)
    assert list(board.rank.dropna()) == [1, 2, 3]
    assert board.rank[board.reference].isna().all()
    # the oracle's 96% is not bold: references are not ranked; params are never bold
    assert best.loc["dkd", "mean"] and not best.loc["target_oracle"].any()
    assert not best["params (M)"].any()


def test_caption_names_selection_protocol_and_references(report) -> None:
    caption = report[0].board.caption
    assert "training-domain validation" in caption and "Protocol: uda" in caption
    assert "(n = 2)" in caption
    assert "Reference rows (target_oracle, teacher)" in caption
    assert "oracle" not in caption.replace("target_oracle", "")


def test_every_format_is_written_with_bold_best(report) -> None:
    _, out = report
    for name in ("records", "summary"):
        assert len(pd.read_parquet(out / f"{name}.parquet")) == len(
            pd.read_csv(out / f"{name}.csv")
        )
    assert len(pd.read_csv(out / "records.csv")) == 20
    markdown = (out / "leaderboard.md").read_text()
    assert "**75.0 ± 0.0**" in markdown and " ref |" in markdown
    assert "mean with its 95% t-interval over seeds: target_oracle 96.0 [83.3, 108.7]" in markdown
    tex = (out / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "\\bfseries 75.0 $\\pm$ 0.0" in tex and "target\\_oracle" in tex
    assert "$\\rightarrow$" in tex and "→" not in tex
    page = (out / "index.html").read_text()
    assert "font-weight: bold" in page and "data:image/png;base64," in page
    assert "src='http" not in page and 'src="http' not in page
    board = pd.read_csv(out / "leaderboard.csv")
    assert board.loc[board["method"] == "kd", "mean"].item() == pytest.approx(71.0)


def test_paired_comparison_against_kd_and_source_only(report) -> None:
    comparison = report[0].comparison
    assert set(comparison["against"]) == {"kd", "source_only"}
    compared = comparison[comparison["against"] == "kd"].set_index("method")
    assert "teacher" not in compared.index and "target_oracle" not in compared.index
    assert set(compared.index) == {"dkd", "source_only"}
    against_source = comparison[comparison["against"] == "source_only"].set_index("method")
    assert against_source.loc["kd", "mean diff"] == pytest.approx(10.0)  # 70-60, 72-62
    assert against_source.loc["kd", "W/T/L"] == "4/0/0"
    dkd = compared.loc["dkd"]
    # cells: 2 pairs x seeds (75-70, 75-72) -> diffs 5, 3, 5, 3
    assert dkd["n"] == 4 and dkd["mean diff"] == pytest.approx(4.0)
    assert dkd["W/T/L"] == "4/0/0" and dkd["test"] == "paired t-test"
    assert dkd["p"] == pytest.approx(stats.ttest_1samp([5, 3, 5, 3], 0).pvalue)


def test_a_grid_compares_each_method_with_the_reference_of_its_own_cell(tmp_path: Path) -> None:
    """`kd [augment=mixup]` against `source_only [augment=mixup]`, not against every cell."""
    accs = {("kd", "none"): [0.70, 0.72], ("source_only", "none"): [0.60, 0.61]}
    accs |= {("kd", "mixup"): [0.50, 0.52], ("source_only", "mixup"): [0.55, 0.56]}
    records = []
    for (method, augment), values in accs.items():
        for seed, acc in enumerate(values):
            spec = handmade.make_spec(method, seed)
            grid = {"student_recipe.augment": augment}
            spec = spec.model_copy(update={"method": spec.method.model_copy(update={"grid": grid})})
            records.append(handmade.make_record(spec, {"target_acc": acc}))
    made, _ = write_report(records, tmp_path, "test")
    against = made.comparison.set_index(["against", "method"])["mean diff"]
    assert against["source_only", "kd [augment=none]"] == pytest.approx(10.5)  # 70-60, 72-61
    assert against["source_only", "kd [augment=mixup]"] == pytest.approx(-4.5)  # 50-55, 52-56
    assert against["kd", "source_only [augment=mixup]"] == pytest.approx(4.5)
    assert len(made.comparison) == 4


def test_rank_uncertainty_counts_the_resamples_each_method_ranks_first(tmp_path: Path) -> None:
    """Seeds 75/25 against 50/50: a resample of seed 0 twice puts dkd first, seed 1 twice
    kd, one of each ties them (both first): P(first) 3/4 each, mean rank 1.25."""
    records = grid({"dkd": [0.75, 0.25], "kd": [0.5, 0.5], "dist": [0.2, 0.2]}, TWO_PAIRS[:1])
    made, _ = write_report(records, tmp_path, "test")
    ranks = made.ranks.set_index("method")
    assert ranks.loc["dkd", "P(first)"] == pytest.approx(0.75, abs=0.04)
    assert ranks.loc["kd", "P(first)"] == pytest.approx(0.75, abs=0.04)
    assert ranks.loc["dkd", "mean rank"] == pytest.approx(1.25, abs=0.04)
    assert ranks.loc["dist", "P(first)"] == 0 and ranks.loc["dist", "mean rank"] == 3
    assert (ranks.loc["dkd", "rank low"], ranks.loc["dkd", "rank high"]) == (1, 2)
    assert (ranks["seeds"] == 2).all()
    again, _ = write_report(records, tmp_path / "again", "test")
    assert again.ranks.equals(made.ranks)  # seeded: the same records, the same shares
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "## Rank uncertainty" in markdown and "[1, 2]" in markdown
    assert len(pd.read_csv(tmp_path / "ranks.csv")) == 3


def test_by_pair_splits_the_comparison_and_the_ranks_per_pair(tmp_path: Path) -> None:
    """dkd wins on one pair and loses on the other: pooled it ties 2/0/2, per pair the
    signs hold (2/0/0, 0/0/2), and each pair ranks its own rows."""
    accs = {("kd", TWO_PAIRS[0]): [0.70, 0.72], ("dkd", TWO_PAIRS[0]): [0.75, 0.76]}
    accs |= {("kd", TWO_PAIRS[1]): [0.70, 0.72], ("dkd", TWO_PAIRS[1]): [0.66, 0.67]}
    records = [
        make_record(method, seed, acc, pair)
        for (method, pair), values in accs.items()
        for seed, acc in enumerate(values)
    ]
    pooled, _ = write_report(records, tmp_path / "pooled", "test")
    assert pooled.comparison.set_index("method").loc["dkd", "W/T/L"] == "2/0/2"
    split, _ = write_report(records, tmp_path / "split", "test", by=["pair"])
    dkd = split.comparison.set_index(["pair", "method"]).loc[:, ["mean diff", "W/T/L"]]
    assert dkd.loc[("mnist→mnistm", "dkd")].tolist() == [pytest.approx(4.5), "2/0/0"]
    assert dkd.loc[("syndigits→mnist", "dkd")].tolist() == [pytest.approx(-4.5), "0/0/2"]
    first = split.ranks.set_index(["pair", "method"])["P(first)"]
    assert first["mnist→mnistm", "dkd"] == 1 and first["syndigits→mnist", "kd"] == 1
    markdown = (tmp_path / "split" / "leaderboard.md").read_text()
    assert "one comparison per pair" in markdown
    assert "within each protocol and each pair" in markdown
    assert "| pair " in markdown
    protocols, _ = write_report(records, tmp_path / "protocols", "test", by=["protocol"])
    assert protocols.ranks_caption.count("protocol") == 1  # rows rank per protocol anyway
    with pytest.raises(XdkdError, match="--by: 'seed' is not one of pair, teacher"):
        write_report(records, tmp_path / "bad", "test", by=["seed"])


def test_a_report_over_an_earlier_one_removes_the_plots_it_skips(tmp_path: Path) -> None:
    """Two students of different size draw the Pareto plot; a remade report whose runs all
    have one size skips it, and the earlier report's files must not stay beside it."""
    mixed = [make_record("kd", 0, 0.7), make_record("kd", 0, 0.8, student="resnet18")]
    write_report(mixed, tmp_path, "test")
    assert (tmp_path / "plots" / "pareto.png").is_file()
    made, _ = write_report([make_record("kd", 0, 0.7)], tmp_path, "test")
    assert "pareto" not in {plot.name for plot in made.plots}
    assert not list((tmp_path / "plots").glob("pareto.*"))


def test_wilcoxon_from_six_cells_and_ties_under_half_a_point(tmp_path: Path) -> None:
    pairs = [("mnist", "mnistm"), ("syndigits", "mnist")]
    records = grid({"kd": [0.70, 0.70, 0.70], "dkd": [0.703, 0.72, 0.68]}, pairs)
    made, _ = write_report(records, tmp_path, "test")
    dkd = made.comparison.set_index("method").loc["dkd"]
    assert dkd["n"] == 6 and dkd["test"] == "Wilcoxon signed-rank"
    assert dkd["W/T/L"] == "2/2/2"  # +0.3 is a tie
    assert dkd["p"] == pytest.approx(stats.wilcoxon([0.3, 2, -2, 0.3, 2, -2]).pvalue)


def test_source_validation_selection_uses_selected_metrics(tmp_path: Path) -> None:
    chosen = {"source-val": {"epoch": 5.0, "target_acc": 0.66, "heldout_mean_acc": 0.5}}
    records = [
        make_record("kd", 0, 0.70, selected=chosen),
        make_record("kd", 1, 0.72, selected={}),  # no chosen epoch: no number, not the last's
    ]
    table = records_table(records, "source-val")
    assert table["target_acc"].iloc[0] == pytest.approx(0.66)
    assert table["selected_epoch"].iloc[0] == 5
    assert math.isnan(table["target_acc"].iloc[1])
    assert records_table(records, "last")["target_acc"].iloc[0] == pytest.approx(0.70)
    made, _ = write_report(records, tmp_path, "test", selection="source-val")
    assert "training-domain validation" in made.board.caption
    assert made.board.mean["mean"].item() == pytest.approx(66.0)


def test_oracle_selection_is_flagged_and_never_ranked(tmp_path: Path) -> None:
    oracle = {"oracle": {"epoch": 3.0, "target_acc": 0.9}}
    records = [make_record(m, 0, 0.7, selected=oracle) for m in ("kd", "dkd")]
    made, _ = write_report(records, tmp_path, "test", selection="oracle")
    assert made.board.caption.count("ORACLE") == 1 and "Not ranked" in made.board.caption
    assert made.board.rank.isna().all() and not made.board.best.any().any()
    assert made.board.mean["mean"].tolist() == pytest.approx([90.0, 90.0])


def test_relative_mce_against_source_only_and_validation_corruptions_left_out() -> None:
    ref_cells = {"gaussian_noise/1": 0.8, "gaussian_noise/2": 0.6}
    kd_cells = {"gaussian_noise/1": 0.85, "gaussian_noise/2": 0.7, "speckle_noise/1": 0.0}
    records = [
        make_record("source_only", 0, 0.9, cells=ref_cells),
        make_record("kd", 0, 0.9, cells=kd_cells),
        make_record("kd", 0, 0.9, cells=kd_cells, student="resnet18"),  # no reference
    ]
    table = records_table(records).set_index(["method", "student"])
    kd = table.loc[("kd", "lenet")]
    assert kd["mca"] == pytest.approx(0.775)  # speckle_noise is a validation corruption
    # errors .15,.3 over reference .2,.4; relative: (.05+.2) / (.1+.3)
    assert kd["mce"] == pytest.approx(75.0)
    assert kd["relative_mce"] == pytest.approx(62.5)
    assert table.loc[("source_only", "lenet"), "relative_mce"] == pytest.approx(100.0)
    assert math.isnan(table.loc[("kd", "resnet18"), "relative_mce"])


def test_teacher_under_floor_is_marked(tmp_path: Path) -> None:
    records = [make_record("kd", 0, 0.7, below_floor=True), make_record("kd", 1, 0.7)]
    made, text = write_report(records, tmp_path, "test")
    assert "†" in (tmp_path / "leaderboard.md").read_text() and "†" in made.board.caption
    assert "under the floor 70%" in text


def test_plots_lacking_data_are_skipped_with_a_note(tmp_path: Path) -> None:
    made, text = write_report([make_record("kd", 0, 0.7)], tmp_path, "test")
    skipped = [note for note in made.notes if "skipped" in note]
    assert len(skipped) == 4 and not made.plots
    assert "plot 'heatmap' skipped: one pair only" in text


def test_plots_are_written_when_the_data_is_there(tmp_path: Path) -> None:
    cells = {f"{c}/{s}": 0.8 - 0.1 * s for c in ("gaussian_noise", "fog") for s in (1, 2, 3)}
    methods = {"teacher": [0.5, 0.55], "source_only": [0.6, 0.64], "kd": [0.7, 0.72]}
    records = [
        r.model_copy(
            update={
                "robustness": {
                    "items": {
                        r.spec.setting.targets[0]: {
                            "cells": cells,
                            "clean_subset_acc": r.metrics["target_acc"],
                        }
                    }
                }
            }
        )
        for r in grid(methods, TWO_PAIRS)
    ]
    made, _ = write_report(records, tmp_path, "test")
    assert {p.name for p in made.plots} == {"severity", "pareto", "heatmap", "robustness"}
    for plot in made.plots:
        assert plot.png.stat().st_size > 1000 and plot.png.with_suffix(".pdf").is_file()


def test_pareto_front_keeps_undominated_points() -> None:
    points = pd.DataFrame({"params": [1, 1, 2, 3, 4], "acc": [60, 65, 64, 70, 69]})
    assert list(pareto_front(points)["acc"]) == [65, 70]


def test_old_records_are_refused_with_what_to_do_and_damaged_ones_set_aside(tmp_path: Path) -> None:
    record = make_record("kd", 0, 0.7).model_dump(mode="json")
    del record["format"]
    record["provenance"]["code"] = "78d4808"
    path = tmp_path / "runs" / "runs" / record["key"] / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    with pytest.raises(XdkdError, match="older xdkd .*git checkout 78d4808"):
        load_runs(tmp_path / "runs")
    path.write_text(json.dumps(record)[:-40])  # cut short: damaged, not old
    records, errors = load_runs(tmp_path / "runs")
    assert not records and not errors and not path.exists()
    assert len(list(path.parent.glob("record.json.corrupt-*"))) == 1


def command(*argv: str) -> int:
    """The `xdkd` command line, in process (a people-facing error exits 2)."""
    return main(list(argv))


def test_report_command_with_chosen_rows(tmp_path: Path, capsys) -> None:
    store = RunStore(tmp_path / "runs")
    for record in grid({"kd": [0.7], "dkd": [0.8]}, TWO_PAIRS):
        store.write_record(record)
    out = tmp_path / "out"
    assert command("report", str(tmp_path / "runs"), "--out", str(out), "--rows", "method") == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["method"]) == ["dkd", "kd"] and "student" not in board
    printed = capsys.readouterr().out
    assert "paired comparison (points):" in printed and "no paired comparison against" in printed
    assert command("report", str(tmp_path / "none"), "--out", str(out)) == 2
    for bad in ("x", "method,pair"):
        assert command("report", str(tmp_path / "runs"), "--out", str(out), "--rows", bad) == 2


def test_a_pair_with_several_targets_gets_a_column_per_target(tmp_path: Path) -> None:
    records = []
    for method, (first, second) in {"kd": (0.6, 0.4), "dkd": (0.7, 0.5)}.items():
        spec = handmade.make_spec(
            method, 0, ("mnist", ["mnistm", "syndigits"]), protocol="multi_target"
        )
        metrics = {
            "target_acc": (first + second) / 2,
            "target_acc/mnistm": first,
            "target_acc/syndigits": second,
        }
        records.append(handmade.make_record(spec, metrics, selected={}))
    made, _ = write_report(records, tmp_path, "test", selection="last")
    mean = by_method(made.board.mean)
    assert list(mean.columns[:3]) == [
        "mnist→mnistm+syndigits: mnistm",
        "mnist→mnistm+syndigits: syndigits",
        "mean",
    ]
    assert mean.loc["dkd", "mnist→mnistm+syndigits: syndigits"] == pytest.approx(50.0)
    assert mean.loc["kd", "mean"] == pytest.approx(50.0)
    assert "Protocol: multi_target" in made.board.caption


def test_text_from_files_is_escaped_in_html_and_latex(tmp_path: Path) -> None:
    from benchmark.report.render import html_table, latex

    frame = pd.DataFrame({"method": ["<script>alert(1)</script>"], "x": ["a_b & 50%"]})
    page = html_table(frame, "caption <b>", 1)
    assert "<script>" not in page and "&lt;script&gt;" in page and "caption &lt;b&gt;" in page
    tex = latex(frame, "50% of a_b", "tab:x", 1)
    assert r"a\_b \& 50\%" in tex and r"50\% of a\_b" in tex
