"""The claim rule: corrected tests, the minimal detectable effect, the null spread of A/A
controls, and complete cells only. Placebos from the committed records must not hold; a
real effect must."""

from __future__ import annotations

import shutil
from pathlib import Path

import handmade
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from benchmark.cli import main
from benchmark.errors import XdkdError
from benchmark.report.leaderboard import write_report
from benchmark.report.stats import (
    holm,
    judge,
    minimal_detectable_effect,
    paired_comparison,
    seed_spread,
)
from benchmark.report.tidy import load_runs, records_table
from benchmark.suite.config import Suite
from benchmark.suite.expansion import expand
from benchmark.suite.loader import load_suite

RESULTS = Path(__file__).parents[1] / "results"
COMPARED = ["method", "n", "mean diff", "se", "ci_low", "ci_high", "mde", "W/T/L", "test", "p"]


def same_sign_in_every_seed(diffs: np.ndarray) -> bool:
    """The rule the READMEs used before: a difference of one sign in every seed."""
    return bool(np.all(diffs > 0) or np.all(diffs < 0))


def test_holm_adjusts_step_down_and_leaves_untested_rows_out() -> None:
    adjusted = holm([0.01, 0.04, np.nan, 0.03])
    # sorted 0.01, 0.03, 0.04 over m = 3: 0.03, max(0.03, 0.06), max(0.06, 0.04)
    assert adjusted[0] == pytest.approx(0.03)
    assert adjusted[3] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06)
    assert np.isnan(adjusted[2])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_minimal_detectable_effect_is_the_t_quantiles_over_root_n() -> None:
    expected = (stats.t.ppf(0.975, 2) + stats.t.ppf(0.8, 2)) * 2.0 / np.sqrt(3)
    assert minimal_detectable_effect(2.0, 3) == pytest.approx(expected)
    assert minimal_detectable_effect(2.0, 20) < minimal_detectable_effect(2.0, 5)
    assert np.isnan(minimal_detectable_effect(2.0, 1))


def test_no_effect_comparisons_pass_the_old_rule_one_time_in_four_and_not_the_new_one() -> None:
    """Simulated placebos: 3 seeds of pure noise. The same-sign rule admits 2 / 2^3 of them;
    the corrected rule keeps the family-wise error near ALPHA over a report of 20."""
    rng = np.random.default_rng(0)
    reports, comparisons, seeds = 200, 20, 3
    diffs = rng.normal(0.0, 2.0, size=(reports, comparisons, seeds))
    old = np.mean([same_sign_in_every_seed(d) for d in diffs.reshape(-1, seeds)])
    assert 0.2 < old < 0.3
    false_reports = 0
    for report in diffs:
        rows = []
        for d in report:
            mean, se = d.mean(), d.std(ddof=1) / np.sqrt(seeds)
            half = stats.t.ppf(0.975, seeds - 1) * se
            p = stats.ttest_1samp(d, 0.0).pvalue
            rows.append({"mean diff": mean, "ci_low": mean - half, "ci_high": mean + half, "p": p})
        judged = judge(pd.DataFrame(rows), null=np.nan)
        false_reports += bool(judged["holds"].any())
    assert false_reports / reports <= 0.08


def few_shot_table() -> pd.DataFrame:
    records, _ = load_runs(RESULTS / "few_shot" / "records")
    return records_table(records)


def test_the_few_shot_placebos_do_not_hold(tmp_path: Path) -> None:
    """kd reads no few-shot label: kd under shots=5 against kd under shots=1 differs only in
    the batches (the earlier 3-seed records gave -0.8, -1.9, -1.4: 0/0/3, a finding by the
    same-sign rule), and so does kd against its own A/A control. Among the few-shot report's
    comparisons, under its correction and null spread, neither holds."""
    table = few_shot_table()
    kd = table[table["method_name"] == "kd"]
    one_shot = kd[(kd["protocol"] == "few_shot(shots=1)") & ~kd["control"]]
    shots = kd[(kd["protocol"] == "few_shot(shots=5)") & ~kd["control"]]
    aa = kd[kd["control"]]
    placebos = [
        shots.assign(method="kd_shots5", method_name="kd_shots5", protocol="few_shot(shots=1)"),
        aa.assign(method="kd_aa", method_name="kd_aa", control=False),
    ]
    compared = pd.concat(
        [paired_comparison(pd.concat([one_shot, placebos[0]]), "kd")]
        + [paired_comparison(pd.concat([kd[~kd["control"]], placebos[1]]), "kd")],
        ignore_index=True,
    )
    assert set(compared["method"]) == {"kd_shots5", "kd_aa"}
    records, _ = load_runs(RESULTS / "few_shot" / "records")
    report, _ = write_report(records, tmp_path, "test", by=["protocol"])
    assert report.null.n == 10 and report.null.methods == ("kd",)
    family = pd.concat([report.comparison[COMPARED], compared[COMPARED]], ignore_index=True)
    judged = judge(family, report.null.points)
    assert not judged.tail(len(compared))["holds"].any()
    assert report.comparison["holds"].any()  # the rule is not one that nothing passes


def test_kd_against_source_only_in_the_default_leaderboard_holds(tmp_path: Path) -> None:
    """A real effect: kd over source_only on mnist→mnistm (results/quick), under the report's
    own correction, interval and null spread."""
    records, _ = load_runs(RESULTS / "quick" / "records")
    report, _ = write_report(records, tmp_path, "test")
    comparison = report.comparison.set_index(["against", "method"])
    kd = comparison.loc[("source_only", "kd")]
    assert kd["holds"] and kd["p (Holm)"] < 0.05 and kd["ci_low"] > 0
    assert np.isfinite(report.null.points) and kd["mean diff"] > report.null.points
    assert kd["mean diff"] > kd["mde"]


def test_a_row_averages_only_the_seeds_that_have_every_pair() -> None:
    """A failed run (seed 2 on the second pair) drops seed 2 from the row's mean and its n,
    instead of averaging seed 2 over the pairs it has."""
    rows = [
        {"method": "m", "pair": pair, "seed": seed, "target_acc": acc}
        for pair, accs in (("a", [0.5, 0.6, 0.7]), ("b", [0.1, 0.2, None]))
        for seed, acc in enumerate(accs)
    ]
    spread = seed_spread(pd.DataFrame(rows), ["method"], "target_acc").loc["m"]
    assert spread["n"] == 2
    assert spread["mean"] == pytest.approx(np.mean([(0.5 + 0.1) / 2, (0.6 + 0.2) / 2]))


def test_the_pooled_reference_counts_complete_seeds_only(tmp_path: Path) -> None:
    """adda_kd failed two runs (seeds 0 and 2, mnist→syndigits, the 5-seed reference): pooled
    with mnist→mnistm, where all five seeds ran, its mean is over seeds 1, 3 and 4 only."""
    for pair in ("mnist-mnistm", "mnist-syndigits"):
        shutil.copytree(RESULTS / "reference" / pair / "records", tmp_path / "records" / pair)
    records, errors = load_runs(tmp_path / "records")
    failed = sorted(e["error"].partition(":")[0] for e in errors)
    assert failed == [f"adda_kd lenet mnist→syndigits [uda] seed {seed}" for seed in (0, 2)]
    report, _ = write_report(records, tmp_path / "report", "test", errors=errors)
    board = report.board.flat().set_index("method")
    assert board.loc["adda_kd", "seeds"] == 3
    assert board.loc["kd", "seeds"] == 5


def aa_suite(**fields) -> Suite:
    return Suite(
        name="aa",
        pairs=[{"source": "mnist", "target": "mnistm"}],
        teachers=["lenet"],
        students=["lenet"],
        methods=["source_only", "kd"],
        seeds=[0, 1],
        **fields,
    )


def test_an_aa_control_repeats_its_method_with_another_data_order_only() -> None:
    plain = expand(aa_suite())
    controlled = expand(aa_suite(controls=["aa"]))
    controls = [s for s in controlled if s.method.stream is not None]
    assert len(controlled) == len(plain) + 2 and len(controls) == 2
    originals = {(s.seed, s.method.name): s for s in plain}
    for control in controls:
        original = originals[(control.seed, "kd")]  # kd: the first of kd and source_only
        assert control.method.row == "kd (A/A)"
        assert control.key != original.key and control.draws_key != original.draws_key
        assert control.teacher_specs == original.teacher_specs
        assert control.model_copy(update={"method": original.method}) == original
    assert {s.key for s in plain} <= {s.key for s in controlled}  # no other run moves
    on_source_only = expand(aa_suite(controls=[{"name": "aa", "method": "source_only"}]))
    assert {s.method.name for s in on_source_only if s.method.stream} == {"source_only"}
    with pytest.raises(ValueError, match="'aa'"):
        aa_suite(controls=["bb"])


def test_a_grid_suite_gets_one_control_per_controlled_run_of_each_cell() -> None:
    """Each cell's kd run gets its A/A once (the cells' own expansion adds none), and no two
    specs share a key."""
    grid = {"student_recipe.optimizer": ["adamw", "sgd"]}
    plain = expand(aa_suite(grid=grid))
    controlled = expand(aa_suite(grid=grid, controls=["aa"]))
    controls = [s for s in controlled if s.method.stream is not None]
    kd_runs = [s for s in plain if s.method.name == "kd"]
    assert len(controls) == len(kd_runs) == 4  # 2 cells x 2 seeds
    assert len({s.key for s in controlled}) == len(controlled) == len(plain) + len(controls)
    assert {s.method.row for s in controls} == {
        "kd [optimizer=adamw] (A/A)",
        "kd [optimizer=sgd] (A/A)",
    }


def test_a_control_of_a_method_the_suite_lacks_names_the_line_and_the_choices(tmp_path: Path):
    suite = aa_suite().model_dump(mode="json") | {"controls": [{"name": "aa", "method": "dkd"}]}
    path = tmp_path / "aa.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    with pytest.raises(XdkdError, match=r"controls\.0\.method: method 'dkd' is not one of the"):
        load_suite(path)


def test_a_seed_plan_adds_seeds_until_the_interval_is_narrow_or_the_cap(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`seeds: {min, max, until_halfwidth}`: min seeds, then one more at a time until the
    key comparison's interval is narrow enough or max seeds ran; a rerun trains nothing."""
    shutil.copytree(tiny_sweep / "runs", tmp_path / "runs")  # seed 0 is recorded
    suite = yaml.safe_load((tiny_sweep / "tiny.yaml").read_text())

    def run(**plan: object) -> str:
        path = tmp_path / "plan.yaml"
        plan = {"min": 2, "max": 3, "method": "kd", "against": "source_only", **plan}
        path.write_text(yaml.safe_dump({**suite, "seeds": plan}))
        argv = ["run", str(path), "--out", str(tmp_path / "runs"), "--workers", "0"]
        argv += ["--results", str(tmp_path / "results"), "--no-progress", "--device", "cpu"]
        assert main(argv) == 0
        return capsys.readouterr().out

    wide = run(until_halfwidth=1000.0)
    assert "seed plan: 2 seeds, kd against source_only: widest 95% interval ±" in wide
    assert "within ±1000: done" in wide and "adding seed" not in wide
    narrow = run(until_halfwidth=0.001)
    assert "not within ±0.001: adding seed 2" in narrow
    assert "not within ±0.001, but the plan's max is 3 seeds: done" in narrow
    board = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "(n = 3)" in board
    again = run(until_halfwidth=0.001)
    assert "0 runs done" in again and "adding seed 2" in again


def test_the_null_spread_is_measured_shown_and_held_against_every_comparison(
    tmp_path: Path,
) -> None:
    """A/A differences of 3 and -4 points give a null spread of sqrt((9 + 16) / 2); a 3-point
    effect with p well under 0.05 does not hold inside it, a 10-point one does."""
    accs = {"source_only": [0.60, 0.62, 0.61, 0.63, 0.60]}
    accs["kd"] = [a + 0.10 + 0.002 * i for i, a in enumerate(accs["source_only"])]
    accs["dkd"] = [a + 0.03 + 0.002 * i for i, a in enumerate(accs["source_only"])]
    records = [
        handmade.make_record(handmade.make_spec(method, seed), {"target_acc": acc})
        for method, values in accs.items()
        for seed, acc in enumerate(values)
    ]
    for seed, move in ((0, 0.03), (1, -0.04)):
        spec = handmade.make_spec("source_only", seed)
        spec = spec.model_copy(update={"method": spec.method.model_copy(update={"stream": 1})})
        records.append(handmade.make_record(spec, {"target_acc": accs["source_only"][seed] + move}))
    report, _ = write_report(records, tmp_path, "test")
    assert report.null.points == pytest.approx(np.sqrt((9 + 16) / 2), abs=1e-6)
    assert "source_only (A/A)" not in set(report.board.mean.index.get_level_values("method"))
    assert "Null spread: 3.5 points (root mean square of 2 A/A differences" in report.board.caption
    rows = report.comparison.set_index(["against", "method"])
    dkd, kd = rows.loc[("source_only", "dkd")], rows.loc[("source_only", "kd")]
    assert dkd["p (Holm)"] < 0.05 and not dkd["beyond null"] and not dkd["holds"]
    assert kd["beyond null"] and kd["holds"]
    text = (tmp_path / "leaderboard.md").read_text()
    assert "p (Holm)" in text and "holds" in text and "MDE" in text
    assert "source_only (A/A)" in set(pd.read_csv(tmp_path / "records.csv")["method"])


def test_a_claim_the_records_do_not_bear_out_is_rendered_and_noted_as_false(tmp_path: Path) -> None:
    (tmp_path / "claims.yaml").write_text(
        "claims:\n"
        "  - {method: kd, against: source_only, verdict: no_finding, says: a placebo}\n"
        "  - {method: dkd, against: kd, verdict: above}\n"
    )
    (tmp_path / "README.md").write_text("# hand-written\n\nkept\n")
    records, _ = load_runs(RESULTS / "quick" / "records")
    report, _ = write_report(records, tmp_path, "test")
    assert [entry[2] for entry in report.claims] == [False, False]
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# hand-written\n\nkept\n")
    assert "holds, above; THE README CLAIMED no_finding" in readme
    assert "`dkd` against `kd`: NOT IN THE RECORDS" in readme
    assert any(note.startswith("claim false: a placebo") for note in report.notes)
    (tmp_path / "claims.yaml").write_text("claims:\n  - {method: kd, verdict: above}\n")
    with pytest.raises(XdkdError, match="claims file .* is not valid"):
        write_report(records, tmp_path, "test")


def test_one_failure_rule_marks_every_method_at_chance_and_dine_like_curves_use_the_last_epoch(
    tmp_path: Path,
) -> None:
    """A run at chance on the target is counted and marked ○ whatever its method; a run whose
    source-validation curve is at chance throughout is reported at its last epoch, since
    the curve cannot choose one."""
    records = []
    for method, acc in (("source_only", 0.40), ("adversarial_kd", 0.104), ("kd", 0.60)):
        for seed in range(2):
            spec = handmade.make_spec(method, seed)
            selected = {"source-val": {"epoch": 4.0, "target_acc": acc + 0.2}}
            record = handmade.make_record(spec, {"target_acc": acc}, selected)
            if method == "kd":  # black-box-like: source validation carries no signal
                flat = {"epoch": [4.0, 8.0], "source_val_acc": [0.11, 0.10]}
                record = record.model_copy(update={"curves": flat})
            records.append(record)
    report, _ = write_report(records, tmp_path, "test")
    table = report.table.set_index(["method", "seed"])
    assert table.loc[("kd", 0), "target_acc"] == pytest.approx(0.60)  # the last epoch's
    assert table.loc[("source_only", 0), "target_acc"] == pytest.approx(0.60)  # selected
    assert table.loc[("adversarial_kd", 0), "at_chance"]  # its last epoch at 10.4%
    assert table.loc[("kd", 0), "at_chance"] and not table.loc[("source_only", 0), "at_chance"]
    text = (tmp_path / "leaderboard.md").read_text()
    assert "one rule for every method" in text and "○" in text
    assert "kd: the last epoch where a run's source-validation accuracy" in text
