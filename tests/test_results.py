"""The committed default leaderboard (results/quick, what `make run` prints) tells its story in
every seed, read from its records, not from a new run: the teacher is clearly better on the
target than a source-only student, and both KD and the domain-aware method beat source-only."""

from pathlib import Path

import pytest

from benchmark.expansion import expand
from benchmark.suites import load_suite
from benchmark.tidy import load_runs, records_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick() -> dict[str, dict[int, float]]:
    """Target accuracy (%) per method and seed, training-domain validation selection."""
    records, errors = load_runs(ROOT / "results" / "quick" / "records")
    assert records and not errors
    table = records_table(records, "source-val")
    return {
        method: dict(zip(group["seed"], 100 * group["target_acc"], strict=True))
        for method, group in table.groupby("method")
    }


def test_the_records_are_the_default_suites_runs():
    """A change to baselines/quick.yaml fails here until results/quick is remade from it."""
    suite = load_suite(ROOT / "baselines" / "quick.yaml")
    records, _ = load_runs(ROOT / "results" / "quick" / "records")
    assert {r.key for r in records} == {spec.key for spec in expand(suite)}
    assert len(suite.seeds) >= 3


def test_the_story_holds_in_every_seed(quick):
    for seed, source_only in quick["source_only"].items():
        assert quick["teacher"][seed] > source_only + 10, seed  # clearly better on the target
        assert quick["kd"][seed] > source_only, seed
        assert quick["adversarial_kd"][seed] > source_only, seed
