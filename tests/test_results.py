"""The committed results are their suites' runs, read from the records, not from a new run:
every results/<suite>/ holds exactly the runs of baselines/<suite>.yaml, the reference folders
their pair's runs; and the default leaderboard (results/quick, what `make run` prints) tells
its story: the teacher is clearly better on the target than a source-only student in every
seed, and both KD and the domain-aware method beat source-only under the claim rule."""

import shutil
from pathlib import Path

import pytest

from benchmark.report.claims import CLAIMS_FILE, load_claims, sentence
from benchmark.report.leaderboard import write_report
from benchmark.report.tidy import load_runs, records_table
from benchmark.suite.config import REFERENCES
from benchmark.suite.expansion import expand
from benchmark.suite.loader import load_suite

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


SUITE_FOLDERS = sorted(
    p.parent.name
    for p in (ROOT / "results").glob("*/records")
    if (ROOT / "baselines" / f"{p.parent.name}.yaml").exists()
)


@pytest.mark.parametrize("name", SUITE_FOLDERS)
def test_a_suites_folder_holds_exactly_its_runs(name):
    """A change to baselines/<name>.yaml fails here until results/<name> is remade from it."""
    suite = load_suite(ROOT / "baselines" / f"{name}.yaml")
    records, errors = load_runs(ROOT / "results" / name / "records")
    assert not errors
    assert {r.key for r in records} == {spec.key for spec in expand(suite)}


def test_the_default_suite_has_four_seeds_and_an_aa_control():
    """Four, not five: five seeds with the control took `make run` past its 4 minutes."""
    assert "quick" in SUITE_FOLDERS
    suite = load_suite(ROOT / "baselines" / "quick.yaml")
    assert len(suite.seeds) >= 4 and [c.name for c in suite.controls] == ["aa"]


def test_the_story_holds_under_the_claim_rule(quick, tmp_path):
    """The teacher is clearly better than a source-only student on the target in every seed,
    and both KD and the domain-aware method beat source-only under the report's own rule
    (Holm-corrected, interval, beyond the A/A null spread), not by their signs."""
    for seed, source_only in quick["source_only"].items():
        assert quick["teacher"][seed] > source_only + 10, seed
    records, _ = load_runs(ROOT / "results" / "quick" / "records")
    report, _ = write_report(records, tmp_path, "test")
    against = report.comparison.set_index(["against", "method"])
    assert against.loc[("source_only", "kd"), "holds"]
    assert against.loc[("source_only", "adversarial_kd"), "holds"]


def test_the_reference_folders_hold_their_pairs_runs():
    """results/reference/<pair>/records holds only the reference suite's runs of that pair,
    and a pair with a leaderboard has every method of the suite in every seed: a record, or
    the failure the harness recorded (a diverged run is a result, kept with its reason)."""
    suite = load_suite(ROOT / "baselines" / "reference.yaml")
    keys: dict[str, set[str]] = {}
    for spec in expand(suite):
        keys.setdefault(spec.setting.label.replace("→", "-"), set()).add(spec.key)
    folders = [p.parent for p in (ROOT / "results" / "reference").glob("*/records")]
    assert folders and len(suite.seeds) >= 5
    for folder in folders:
        records, failures = load_runs(folder / "records")
        assert records, folder
        committed = {r.key for r in records} | {f["key"] for f in failures}
        assert committed <= keys[folder.name], folder
        if (folder / "leaderboard.md").exists():
            assert committed == keys[folder.name], folder


CLAIMED = sorted(p.parent for p in (ROOT / "results").rglob(CLAIMS_FILE))


@pytest.mark.parametrize("folder", CLAIMED, ids=lambda p: p.name)
def test_every_claim_holds_and_its_readme_says_what_the_records_say(folder, tmp_path):
    """The claims of a results folder's README, remade from its records: each verdict is the
    records' verdict under the claim rule, and the README holds exactly the rendered text."""
    claims = load_claims(folder / CLAIMS_FILE)
    records, errors = load_runs(claims.records_dir(folder))
    shutil.copy(folder / CLAIMS_FILE, tmp_path / CLAIMS_FILE)
    against = claims.references or REFERENCES
    report, _ = write_report(
        records,
        tmp_path,
        "test",
        errors=errors,
        by=claims.by,
        references=against,
        tuned=claims.tuned,
    )
    false = [sentence(*entry) for entry in report.claims if not entry[2]]
    assert not false, false
    rendered = (tmp_path / "README.md").read_text().strip()
    assert rendered in (folder / "README.md").read_text(), "remake the folder's report"
