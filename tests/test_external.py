"""`xdkd evaluate-model` and the Python API: a saved student evaluated from outside gets its
run's numbers exactly, its record is reported as an external row, and bad inputs are one
line each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark import api
from benchmark.cli import main
from benchmark.models import create_backbone
from benchmark.run.external import read_state_dict
from benchmark.suite.config import BackboneSpec
from benchmark.suite.specs import RunRecord

SETTING = ["--backbone", "lenet", "--domain", "mnist", "--source", "optdigits"]
ROBUSTNESS = ["--corruptions", "gaussian_noise", "--corruption-images", "200"]  # tiny's 200


def evaluate_model(*argv: str) -> int:
    """`xdkd evaluate-model ...` through the real command line."""
    return main(["evaluate-model", *argv])


def trained_run(tiny_sweep: Path, method: str = "source_only") -> tuple[Path, dict]:
    """(run directory, record) of the tiny sweep's run of `method`."""
    for path in sorted((tiny_sweep / "runs" / "runs").glob("*/record.json")):
        record = json.loads(path.read_text())
        if record["spec"]["method"]["name"] == method:
            return path.parent, record
    raise AssertionError(f"no {method} run in the tiny sweep")


def only_record(out: Path) -> dict:
    (path,) = sorted(out.glob("runs/*/record.json"))
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def external(tiny_sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """(the source_only run's record, the record of its saved student from evaluate-model)."""
    run_dir, record = trained_run(tiny_sweep)
    out = tmp_path_factory.mktemp("external")
    weights = str(run_dir / "student-e1.pt")
    argv = ["--weights", weights, *SETTING, *ROBUSTNESS, "--family-heldout", "--name", "mine"]
    assert evaluate_model(*argv, "--device", "cpu", "--out", str(out)) == 0
    return record, only_record(out)


def test_a_saved_student_evaluated_from_outside_gets_its_runs_numbers(external) -> None:
    record, ours = external
    for key in ("target_acc", "target_ece", "target_nll", "source_acc", "heldout_mean_acc"):
        assert ours["metrics"][key] == record["metrics"][key], key
    assert ours["per_domain"] == record["per_domain"]
    theirs, mine = record["robustness"]["items"]["mnist"], ours["robustness"]["items"]["mnist"]
    noise = {k: v for k, v in theirs["cells"].items() if k.startswith("gaussian_noise/")}
    assert mine["cells"] == noise and len(noise) == 5
    assert mine["clean_subset_acc"] == theirs["clean_subset_acc"]
    assert ours["metrics"]["params"] == record["metrics"]["params"]


def test_the_external_record_has_no_teacher_and_names_its_weights(external, tiny_sweep) -> None:
    _, ours = external
    assert ours["teachers"] == [] and ours["selected"] == {} and ours["selections"] == {}
    assert not {"teacher_target_acc", "knowledge_recovery", "train_wall_time_s"} & set(
        ours["metrics"]
    )
    run_dir, _ = trained_run(tiny_sweep)
    training = json.loads((run_dir / "training.json").read_text())
    assert ours["external"]["sha256"] == training["weights"]["1"]["sha256"]
    assert ours["external"]["backbone"] == "lenet"
    assert (ours["spec"]["method"]["name"], ours["spec"]["method"]["label"]) == ("external", "mine")
    assert RunRecord.model_validate(ours).spec.setting.label == "optdigits→mnist"


def test_without_source_or_heldout_only_the_target_is_scored(tiny_sweep, tmp_path) -> None:
    run_dir, record = trained_run(tiny_sweep, "kd")
    argv = ["--weights", str(run_dir / "student-e1.pt"), "--backbone", "lenet"]
    argv += ["--domain", "mnist", "--corruption-images", "0", "--device", "cpu"]
    assert evaluate_model(*argv, "--out", str(tmp_path)) == 0
    ours = only_record(tmp_path)
    assert ours["metrics"]["target_acc"] == record["metrics"]["target_acc"]
    assert ours["per_domain"] == {"mnist": record["per_domain"]["mnist"]}
    assert ours["robustness"] == {} and "heldout_mean_acc" not in ours["metrics"]
    assert ours["spec"]["method"]["label"] == "student-e1"
    assert RunRecord.model_validate(ours).spec.setting.label == "mnist"


def test_report_shows_the_external_row_beside_the_suites_runs(
    external, tiny_sweep, tmp_path
) -> None:
    _, ours = external
    shutil.copytree(tiny_sweep / "runs", tmp_path / "runs" / "tiny")
    directory = tmp_path / "runs" / "external" / "runs" / ours["key"]
    directory.mkdir(parents=True)
    (directory / "record.json").write_text(json.dumps(ours))
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) == 0
    board = pd.read_csv(tmp_path / "report" / "leaderboard.csv").set_index("method")
    assert set(board.index) == {"teacher", "source_only", "kd", "mine (external)"}
    row = board.loc["mine (external)"]
    assert row["teacher"] == "–" and bool(row["reference"]) and pd.isna(row["rank"])
    assert row["optdigits→mnist"] == pytest.approx(100 * ours["metrics"]["target_acc"])
    assert "mine (external)" in (tmp_path / "report" / "leaderboard.md").read_text()
    records = pd.read_csv(tmp_path / "report" / "records.csv").set_index("method")
    assert records.loc["mine (external)", "family"] == "external"
    assert records["external"].to_dict() == {
        "teacher": False,
        "source_only": False,
        "kd": False,
        "mine (external)": True,
    }


def test_the_api_loads_records_and_evaluates_a_module(tiny_sweep) -> None:
    table = api.load_records(tiny_sweep / "runs")
    assert sorted(table["method"]) == ["kd", "source_only", "teacher"]
    run_dir, record = trained_run(tiny_sweep)
    model = create_backbone(BackboneSpec(name="lenet"), 10)
    model.load_state_dict(torch.load(run_dir / "student-e1.pt", weights_only=True))
    ours = api.evaluate_model(
        model, backbone="lenet", domain="mnist", corruption_images=0, device="cpu"
    )
    assert ours.metrics["target_acc"] == record["metrics"]["target_acc"]
    assert ours.external["weights"] is None and ours.external["sha256_of"] == "state_dict"
    assert next(model.parameters()).device.type == "cpu" and model.training  # left as it was


def test_bad_inputs_are_one_line_each(tiny_sweep, tmp_path, capsys) -> None:
    run_dir, _ = trained_run(tiny_sweep)
    lenet = str(run_dir / "student-e1.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    cases = {
        "does not exist": ["--weights", str(tmp_path / "none.pt"), *SETTING],
        "holds a list, not a state dict": ["--weights", str(tmp_path / "list.pt"), *SETTING],
        "does not fit backbone 'dtn' built with 10 classes": [
            "--weights",
            lenet,
            "--backbone",
            "dtn",
            "--domain",
            "mnist",
        ],
        "unknown domain 'mnits'": ["--weights", lenet, "--backbone", "lenet", "--domain", "mnits"],
        "unknown backbone": ["--weights", lenet, "--backbone", "lenett", "--domain", "mnist"],
    }
    for expected, argv in cases.items():
        assert evaluate_model(*argv, "--device", "cpu", "--out", str(tmp_path / "out")) == 2
        message = capsys.readouterr().err
        assert message.startswith("xdkd: error: ") and expected in message, message
        assert message.count("\n") == 1, message
    assert not (tmp_path / "out" / "runs").exists()


def test_the_api_runs_a_suite_as_xdkd_run_does(tiny_sweep, tmp_path) -> None:
    shutil.copytree(tiny_sweep / "runs", tmp_path / "runs")  # recorded: nothing trains again
    table = api.run_suite(
        tiny_sweep / "tiny.yaml",
        out=tmp_path / "runs",
        results=tmp_path / "results",
        device="cpu",
        progress=False,
    )
    assert sorted(table["method"]) == ["kd", "source_only", "teacher"]
    assert (tmp_path / "results" / "leaderboard.csv").is_file()


def test_weights_are_read_from_safetensors_and_from_checkpoints(tiny_sweep, tmp_path) -> None:
    from safetensors.torch import save_file

    run_dir, _ = trained_run(tiny_sweep)
    state = torch.load(run_dir / "student-e1.pt", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "mine.safetensors")
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "checkpoint.pth")
    for name in ("mine.safetensors", "checkpoint.pth"):
        read = read_state_dict(tmp_path / name)
        assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)
