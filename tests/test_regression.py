"""CI's regression check: the small `ci` suite, run for real, against its committed reference.

A change that lowers accuracy (or changes a run's spec) fails here. After an intended change,
remake the reference as baselines/ci.yaml explains, and say why in the commit.
"""

from pathlib import Path

from benchmark.cli import main

REFERENCE = Path(__file__).resolve().parents[1] / "baselines" / "ci.reference.json"


def test_ci_suite_matches_its_reference(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["--out", str(runs), "--results", str(tmp_path / "results"), "--no-progress"]
    assert main(["run", "ci", *args, "--device", "cpu"]) == 0
    code = main(["check", "--baseline", str(REFERENCE), str(runs), "--abs-tol", "1.0"])
    report = capsys.readouterr().out
    assert code == 0, report[report.find("## xdkd check") :]
