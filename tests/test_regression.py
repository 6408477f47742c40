"""CI's regression check without training: the `ci` suite still expands to exactly the runs
its committed reference holds, so `make regression` (which trains the suite and runs `xdkd
check` against baselines/ci.reference.json; CI runs it after `make test`) compares like with
like. A change to a run's spec changes its key and fails here at once; after an intended
change, remake the reference as baselines/ci.yaml explains, and say why in the commit.
"""

import json
import random
from pathlib import Path

from handmade import make_record

from benchmark.cli import main
from benchmark.report.check import NOISE_MARGIN
from benchmark.store import RunStore
from benchmark.suite.expansion import expand
from benchmark.suite.loader import load_suite

BASELINES = Path(__file__).resolve().parents[1] / "baselines"


def test_the_ci_suite_expands_to_the_runs_of_its_reference():
    reference = json.loads((BASELINES / "ci.reference.json").read_text())
    committed = {
        (cell["method"], int(seed), run["key"])
        for cell in reference["cells"]
        for seed, run in cell["seeds"].items()
    }
    specs = expand(load_suite(BASELINES / "ci.yaml"))
    assert {(s.method.name, s.seed, s.key) for s in specs} == committed


def runs_from_reference(store: RunStore, change) -> None:
    """The reference's runs rebuilt from its own numbers, each seed's values passed through
    `change(method, seed, values)`."""
    reference = json.loads((BASELINES / "ci.reference.json").read_text())
    specs = {(s.method.name, s.seed): s for s in expand(load_suite(BASELINES / "ci.yaml"))}
    seeds = {(c["method"], int(k)): v for c in reference["cells"] for k, v in c["seeds"].items()}
    for (method, seed), values in seeds.items():
        moved = change(method, seed, {m: values[m] for m in METRICS}, seeds)
        store.write_record(make_record(specs[method, seed], moved))


METRICS = ("target_acc", "heldout_mean_acc")


def check_outcomes(store: RunStore, out: Path) -> tuple[int, dict]:
    """`xdkd check` as `make regression` runs it; (exit code, outcome per cell and metric)."""
    argv = ["check", str(store.root), "--baseline", str(BASELINES / "ci.reference.json")]
    argv += ["--abs-tol", "1.0", "--metrics", ",".join(METRICS), "--json", str(out)]
    code = main(argv)
    cells = json.loads(out.read_text())["cells"]
    return code, {(c["method"], c["metric"]): c["outcome"] for c in cells}


def test_each_ci_cell_carries_its_measured_noise_and_kd_a_bound_under_three_points():
    reference = json.loads((BASELINES / "ci.reference.json").read_text())
    noise = {c["method"]: c["noise"] for c in reference["cells"]}
    assert set(noise) == {"teacher", "source_only", "kd"}
    assert max(1.0, NOISE_MARGIN * noise["kd"]["target_acc"]) < 3.0


def test_the_ci_reference_passes_its_noise_and_fails_a_three_point_kd_drop(tmp_path):
    """Every run moved by up to its cell's measured noise (as another machine moves it):
    pass; kd 3 points lower in every seed: kd regresses, the others pass, in every draw."""
    reference = json.loads((BASELINES / "ci.reference.json").read_text())
    noise = {c["method"]: c["noise"] for c in reference["cells"]}
    for draw in range(4):
        rng = random.Random(draw)

        def shaken(method, seed, values, seeds, drop=0.0, rng=rng):
            return {
                m: v + rng.uniform(-1, 1) * noise[method].get(m, 0.0) / 100 - drop
                for m, v in values.items()
            }

        store = RunStore(tmp_path / f"noise{draw}")
        runs_from_reference(store, shaken)
        assert check_outcomes(store, tmp_path / f"noise{draw}.json")[0] == 0
        store = RunStore(tmp_path / f"drop{draw}")
        runs_from_reference(
            store, lambda m, s, v, seeds: shaken(m, s, v, seeds, 0.03 if m == "kd" else 0.0)
        )
        code, outcomes = check_outcomes(store, tmp_path / f"drop{draw}.json")
        assert code == 1
        assert outcomes[("kd", "target_acc")] == "regressed"
        assert outcomes[("source_only", "target_acc")] == "pass"


def test_the_ci_reference_fails_a_kd_that_ignores_its_teacher(tmp_path):
    """kd trained without its teacher is source_only: kd's runs given source_only's numbers,
    seed by seed."""
    store = RunStore(tmp_path / "blind")
    runs_from_reference(
        store,
        lambda m, s, v, seeds: {k: seeds[("source_only", s)][k] for k in v} if m == "kd" else v,
    )
    code, outcomes = check_outcomes(store, tmp_path / "blind.json")
    assert code == 1 and outcomes[("kd", "target_acc")] == "regressed"
    assert outcomes[("teacher", "target_acc")] == "pass"
