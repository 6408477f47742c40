"""`xdkd check`: every outcome and exit code, with runs made to regress by known amounts."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from handmade import make_record, make_spec

from benchmark.cli import main
from benchmark.report.stats import change_and_se
from benchmark.store import RunStore

BASE = {"kd": [0.70, 0.72, 0.74], "dkd": [0.75, 0.76, 0.77]}


def write_runs(root: Path, accs: dict[str, list[float]], ece: float = 0.05, epochs: int = 8):
    """One run per (method, seed); held-out accuracy is target accuracy minus 10 points."""
    store = RunStore(root)
    for method, values in accs.items():
        for seed, acc in enumerate(values):
            spec = make_spec(method, seed, epochs=epochs)
            metrics = {"target_acc": acc, "heldout_mean_acc": acc - 0.1, "target_ece": ece}
            store.write_record(make_record(spec, metrics))
    return store


def shifted(points: float, method: str = "kd") -> dict[str, list[float]]:
    return {**BASE, method: [a + points / 100 for a in BASE[method]]}


def xdkd(*argv: str) -> int:
    """The `xdkd` command line, in process (a people-facing error exits 2)."""
    return main(list(argv))


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    write_runs(tmp_path / "base", BASE)
    path = tmp_path / "baseline.json"
    assert xdkd("check", str(tmp_path / "base"), "--baseline", str(path), "--update-baseline") == 0
    return path


def check(tmp_path: Path, baseline: Path, *flags: str) -> tuple[int, dict]:
    out = tmp_path / "result.json"
    code = xdkd(
        "check", str(tmp_path / "new"), "--baseline", str(baseline), "--json", str(out), *flags
    )
    return code, json.loads(out.read_text())


def outcomes(result: dict, metric: str = "target_acc") -> dict[str, str]:
    """Outcome per method for one metric; whole-cell outcomes (failed, missing, ...) too."""
    wanted = (metric, "(all)")
    return {c["method"]: c["outcome"] for c in result["cells"] if c["metric"] in wanted}


def test_update_baseline_round_trip(tmp_path: Path, baseline: Path, capsys) -> None:
    stored = json.loads(baseline.read_text())
    assert stored["format"] == "xdkd-baseline/2" and stored["selection"] == "source-val"
    kd = next(c for c in stored["cells"] if c["method"] == "kd")
    assert kd["pair"] == "mnist→mnistm" and len(kd["config"]) == 16
    assert kd["seeds"]["1"]["target_acc"] == 0.72
    assert kd["seeds"]["1"]["key"] == make_spec("kd", 1).key
    write_runs(tmp_path / "new", BASE)
    code, result = check(tmp_path, baseline)
    assert code == 0 and set(outcomes(result).values()) == {"pass"}
    assert "## xdkd check: PASS (exit 0)" in capsys.readouterr().out


def test_a_two_point_drop_regresses_and_exits_1(tmp_path: Path, baseline: Path) -> None:
    write_runs(tmp_path / "new", shifted(-2))
    code, result = check(tmp_path, baseline)
    assert code == 1 and outcomes(result) == {"dkd": "pass", "kd": "regressed"}
    kd = next(c for c in result["cells"] if c["method"] == "kd" and c["metric"] == "target_acc")
    assert kd["change"] == pytest.approx(-2.0) and kd["paired"] is True
    assert kd["se"] == pytest.approx(0.0, abs=1e-9) and kd["threshold"] == 0.5
    assert kd["baseline"] == pytest.approx(72.0) and kd["current"] == pytest.approx(70.0)
    assert kd["spread"] == pytest.approx(2.0)  # the reference's seed SD: 70, 72, 74


def test_small_changes_pass_and_large_gains_improve(tmp_path: Path, baseline: Path) -> None:
    write_runs(tmp_path / "new", {"kd": [0.703, 0.723, 0.743], "dkd": [0.77, 0.78, 0.79]})
    code, result = check(tmp_path, baseline)
    assert code == 0 and outcomes(result) == {"kd": "pass", "dkd": "improved"}


def test_noisy_change_is_judged_against_z_times_se(tmp_path: Path, baseline: Path) -> None:
    # per-seed changes -1, +1, -1.6 points: mean -0.53, SE 0.79; 2 SE is 1.57 > 0.53
    write_runs(tmp_path / "new", {**BASE, "kd": [0.69, 0.73, 0.724]})
    assert outcomes(check(tmp_path, baseline)[1])["kd"] == "pass"
    code, result = check(tmp_path, baseline, "--z", "0")
    assert code == 1 and outcomes(result)["kd"] == "regressed"
    code, result = check(tmp_path, baseline, "--z", "0", "--abs-tol", "target_acc=1")
    assert (
        outcomes(result)["kd"] == "pass"
        and outcomes(result, "heldout_mean_acc")["kd"] == "regressed"
    )


def test_lower_is_better_metrics_regress_when_they_rise(tmp_path: Path, baseline: Path) -> None:
    write_runs(tmp_path / "new", BASE, ece=0.06)  # ECE 5% -> 6%: one point worse
    code, result = check(tmp_path, baseline, "--metrics", "target_ece")
    assert code == 1 and set(outcomes(result, "target_ece").values()) == {"regressed"}
    assert result["cells"][0]["change"] == pytest.approx(-1.0)


def test_drift_fails_the_suite_even_when_every_cell_passes(tmp_path: Path, baseline: Path) -> None:
    write_runs(tmp_path / "new", {m: [a - 0.004 for a in accs] for m, accs in BASE.items()})
    code, result = check(tmp_path, baseline)
    assert set(outcomes(result).values()) == {"pass"}
    assert code == 1 and all(d["drifted"] for d in result["drift"])
    assert result["drift"][0]["mean"] == pytest.approx(-0.4)
    assert check(tmp_path, baseline, "--drift", "0.5")[0] == 0


def test_failed_run_exits_1(tmp_path: Path, baseline: Path) -> None:
    store = write_runs(tmp_path / "new", {**BASE, "kd": BASE["kd"][:2]})
    store.write_error(make_spec("kd", 2), RuntimeError("out of memory"))
    write_runs(tmp_path / "new", {"fitnet": [0.6]})  # a new cell, one seed failed
    store.write_error(make_spec("fitnet", 1), RuntimeError("nan loss"))
    code, result = check(tmp_path, baseline)
    assert code == 1 and outcomes(result) == {"kd": "failed", "fitnet": "failed", "dkd": "pass"}
    assert sum(c["method"] == "fitnet" for c in result["cells"]) == 1
    kd = next(c for c in result["cells"] if c["method"] == "kd")
    assert "out of memory" in kd["detail"]


def test_missing_cells_exit_3_unless_allowed(tmp_path: Path, baseline: Path) -> None:
    write_runs(tmp_path / "new", {"kd": BASE["kd"]})
    code, result = check(tmp_path, baseline)
    assert code == 3 and outcomes(result) == {"kd": "pass", "dkd": "missing"}
    assert check(tmp_path, baseline, "--allow-missing")[0] == 0


def test_new_cells_are_reported_and_pass(tmp_path: Path, baseline: Path) -> None:
    write_runs(tmp_path / "new", {**BASE, "fitnet": [0.6, 0.6]})
    code, result = check(tmp_path, baseline)
    assert code == 0 and outcomes(result)["fitnet"] == "new"


def test_a_changed_spec_is_incomparable(tmp_path: Path, baseline: Path) -> None:
    write_runs(tmp_path / "new", {"dkd": BASE["dkd"]})
    write_runs(tmp_path / "new", {"kd": BASE["kd"]}, epochs=9)
    code, result = check(tmp_path, baseline)
    assert code == 3 and outcomes(result) == {"kd": "incomparable", "dkd": "pass"}
    assert check(tmp_path, baseline, "--allow-missing")[0] == 0


MACHINE_NOISE = 4.0  # points: one run's move between two 2-core machines of one kind (issue 15)
THREE = {"teacher": [0.40, 0.44, 0.41], "source_only": [0.43, 0.49, 0.39], "kd": [0.46, 0.37, 0.43]}


def judged(runs: Path, baseline: Path) -> tuple[int, dict]:
    out = runs / "result.json"
    code = xdkd("check", str(runs), "--baseline", str(baseline), "--json", str(out))
    return code, json.loads(out.read_text())


def test_a_ten_point_drop_is_caught_through_cross_machine_noise(tmp_path: Path) -> None:
    """Every run moved by up to 4 points, unpaired (another machine), and kd by 10 more: kd
    regresses and nothing else does; without the baseline's machine noise the same moves
    alone raise false alarms."""
    write_runs(tmp_path / "base", THREE)
    allowing, plain = tmp_path / "allowing.json", tmp_path / "plain.json"
    made = ["check", str(tmp_path / "base"), "--update-baseline", "--baseline"]
    assert xdkd(*made, str(allowing), "--machine-noise", str(MACHINE_NOISE)) == 0
    assert xdkd(*made, str(plain)) == 0
    assert json.loads(allowing.read_text())["machine_noise"] == MACHINE_NOISE
    false_alarms = 0
    for draw in range(12):
        rng = random.Random(draw)
        bound = MACHINE_NOISE - 1e-6  # the bound itself would be a tie, decided by rounding
        moved = {m: [a + rng.uniform(-bound, bound) / 100 for a in v] for m, v in THREE.items()}
        write_runs(tmp_path / f"moved{draw}", moved)
        dropped = {**moved, "kd": [a - 0.10 for a in moved["kd"]]}
        write_runs(tmp_path / f"dropped{draw}", dropped)
        code, result = judged(tmp_path / f"dropped{draw}", allowing)
        assert code == 1, result
        assert outcomes(result) == {"teacher": "pass", "source_only": "pass", "kd": "regressed"}
        assert judged(tmp_path / f"moved{draw}", allowing)[0] == 0
        false_alarms += judged(tmp_path / f"moved{draw}", plain)[0] != 0
    assert false_alarms > 0


def test_unpaired_seeds_use_the_two_group_standard_error() -> None:
    change, se, paired = change_and_se({"0": 70.0, "1": 72.0}, {"2": 69.0, "3": 71.0})
    assert change == pytest.approx(-1.0) and not paired
    assert se == pytest.approx(math.sqrt(2 / 2 + 2 / 2))  # each side: variance 2, n 2


def test_bad_usage_exits_2(tmp_path: Path, baseline: Path) -> None:
    write_runs(tmp_path / "new", BASE)
    runs = str(tmp_path / "new")
    assert xdkd("check", runs, "--baseline", str(tmp_path / "absent.json")) == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert xdkd("check", runs, "--baseline", str(tmp_path / "bad.json")) == 2
    assert xdkd("check", runs, "--baseline", str(baseline), "--abs-tol", "lots") == 2
    assert xdkd("check", runs, "--baseline", str(baseline), "--z", "target_acc=-1") == 2
    assert xdkd("check", runs, "--baseline", str(baseline), "--metrics", "accuracy") == 2
    assert xdkd("check", str(tmp_path / "nowhere"), "--baseline", str(baseline)) == 2


def test_a_shape_corruption_drop_is_judged_in_points_like_every_accuracy(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "base")
    for seed in range(2):
        store.write_record(
            make_record(make_spec("kd", seed), {"target_acc": 0.7, "mca_shape": 0.6})
        )
    baseline = tmp_path / "baseline.json"
    assert (
        xdkd("check", str(tmp_path / "base"), "--baseline", str(baseline), "--update-baseline") == 0
    )
    new = RunStore(tmp_path / "new")
    for seed in range(2):
        new.write_record(make_record(make_spec("kd", seed), {"target_acc": 0.7, "mca_shape": 0.55}))
    code, result = check(tmp_path, baseline, "--metrics", "mca_shape")
    (row,) = [c for c in result["cells"] if c["metric"] == "mca_shape"]
    assert code == 1 and row["outcome"] == "regressed" and row["change"] == pytest.approx(-5.0)
