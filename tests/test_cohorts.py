"""Cohorts: runs that differ only in the method train together, each teacher run once per
batch for all of them, and each gives exactly the record it gives alone; a failing member
leaves with its error, a cohort killed mid-training resumes its members from their own
epochs, and the planner groups, bounds and splits cohorts."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmark.cli import main
from benchmark.executors.cohorts import auto_cohort_size, plan_cohorts
from benchmark.executors.sweep import ExecutorOptions, run_sweep
from benchmark.methods import METHODS
from benchmark.methods.base import Method, distillation_step
from benchmark.models import create_backbone
from benchmark.models.features import forward_outputs
from benchmark.store import RunStore
from benchmark.suite.config import BackboneSpec
from benchmark.suite.expansion import expand
from benchmark.suite.loader import load_suite
from benchmark.suite.metrics import MEASURED
from benchmark.suite.protocols import Needs
from benchmark.suite.specs import RunRecord

CPU = torch.device("cpu")
RECIPE = {"epochs": 2, "batch_size": 64, "lr": 0.003}
MEMBERS = ["source_only", "kd", "dkd", "at", "adversarial_kd", "masked_kd"]


class MaskedKD(Method):
    """Test double for a plug-in method: KD from the teachers' probabilities through a
    random mask drawn from the global generator, so a cohort must keep each member's random
    state apart to give its solo numbers."""

    family = "logit"
    paper = "test double: a plug-in KD with a random mask"
    needs = Needs(teacher="probabilities")

    def losses(self, student, teacher, batch):
        images = batch.all_images()
        logits = student(images)
        keep = (torch.rand(len(images), device=images.device) > 0.3).float()
        log_student = F.log_softmax(logits, 1)
        kd = -(teacher.probabilities(images) * log_student).sum(1)
        count = len(batch.source_labels)
        ce = self.cross_entropy(logits[:count], batch.source_labels)
        return {"ce": ce, "kd": (kd * keep).mean()}


class LateNaN(Method):
    """Test double: distils like KD, then its loss becomes NaN at step 5."""

    family = "logit"
    paper = "test double: a loss that diverges mid-training"

    def __init__(self, name, label_smoothing=0.0, **params):
        super().__init__(name, label_smoothing, **params)
        self.steps = 0

    def losses(self, student, teacher, batch):
        self.steps += 1
        step = distillation_step(self, student, teacher, batch)
        scale = float("nan") if self.steps > 5 else 1.0
        return {
            "ce": step.source_ce * scale,
            "kd": F.mse_loss(step.student_logits, step.teacher_logits),
        }


@pytest.fixture
def plug_ins(monkeypatch):
    monkeypatch.setitem(METHODS._entries, "masked_kd", MaskedKD)
    monkeypatch.setitem(METHODS._entries, "late_nan", LateNaN)


def sweep(suite: Path, out: Path, cohort_size: int, overrides=None):
    suite_spec = load_suite(suite, overrides)
    options = ExecutorOptions(workers=0, progress=False, cohort_size=cohort_size)
    return run_sweep(RunStore(out), expand(suite_spec), suite_spec.evaluation, CPU, options)


def by_method(out: Path) -> dict[str, RunRecord]:
    return {r.spec.method.name: r for r in RunStore(out).records()}


def assert_same_numbers(alone: RunRecord, together: RunRecord) -> None:
    assert together.key == alone.key
    assert together.curves == alone.curves
    assert together.selections == alone.selections and together.selected == alone.selected
    assert together.per_domain == alone.per_domain and together.per_class == alone.per_class
    assert together.robustness["items"] == alone.robustness["items"]
    measured = set(alone.metrics) - MEASURED
    assert {m: together.metrics[m] for m in measured} == {m: alone.metrics[m] for m in measured}


@pytest.fixture(scope="session")
def solo(built_once, suite_files):
    """The cohort suite's runs trained each alone (`--cohort-size 1`), once a session."""

    def build(directory: Path) -> None:
        patch = pytest.MonkeyPatch()
        patch.setitem(METHODS._entries, "masked_kd", MaskedKD)
        try:
            suite = suite_files(directory)(
                methods=MEMBERS,
                student_recipe=RECIPE,
                corruptions=["gaussian_noise"],
                corruption_images=50,
            )
            summary = sweep(suite, directory / "runs", cohort_size=1)
        finally:
            patch.undo()
        assert len(summary.done) == len(MEMBERS) and not summary.failed

    directory = built_once("cohort-solo", build)
    return directory / "tiny.yaml", directory / "runs"


@pytest.mark.long
def test_a_run_trained_in_a_cohort_gives_the_record_it_gives_alone(solo, plug_ins, tmp_path):
    suite, alone = solo
    out = tmp_path / "cohort"
    shutil.copytree(alone / "teachers", out / "teachers")
    summary = sweep(suite, out, cohort_size=8)
    assert len(summary.done) == len(MEMBERS) and not summary.failed
    solo_records, cohort_records = by_method(alone), by_method(out)
    for name in MEMBERS:
        assert_same_numbers(solo_records[name], cohort_records[name])
        assert "cohort" not in solo_records[name].training
        cohort = cohort_records[name].training["cohort"]
        assert cohort["size"] == len(MEMBERS)
    # five of the six ask a teacher each step; one pass serves them all (logits and features)
    steps = cohort_records["kd"].training["steps"]
    assert cohort["teacher_misses"] <= steps + 2
    assert cohort["teacher_hits"] >= 4 * steps - 2


@pytest.mark.long
def test_a_member_that_diverges_leaves_the_cohort_and_the_others_finish(solo, plug_ins, tmp_path):
    suite, alone = solo
    out = tmp_path / "cohort"
    shutil.copytree(alone / "teachers", out / "teachers")
    summary = sweep(suite, out, cohort_size=8, overrides=["methods=[late_nan, kd]"])
    assert len(summary.done) == 1 and len(summary.failed) == 1
    (error,) = RunStore(out).errors()
    assert "became NaN" in error["error"]
    assert_same_numbers(by_method(alone)["kd"], by_method(out)["kd"])


def run_argv(suite: Path, out: Path) -> list[str]:
    argv = ["run", str(suite), "--out", str(out), "--results", str(out / "results")]
    return argv + ["--device", "cpu", "--no-progress", "--workers", "0", "--cohort-size", "8"]


@pytest.mark.long
def test_a_cohort_killed_mid_training_resumes_each_member_to_its_solo_numbers(solo, tmp_path):
    suite, alone = solo
    members = ["source_only", "kd", "at"]
    out = tmp_path / "killed"
    shutil.copytree(alone / "teachers", out / "teachers")
    argv = run_argv(suite, out) + ["--set", f"methods=[{', '.join(members)}]"]
    run = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not list(out.glob("runs/*/checkpoint.pt")) and time.monotonic() < deadline:
        if run.poll() is not None:
            break
        time.sleep(0.02)
    assert run.poll() is None, "the cohort ended before it could be killed mid-training"
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not list(out.glob("runs/*/record.json"))
    assert main(argv) == 0
    solo_records, resumed = by_method(alone), by_method(out)
    assert sorted(resumed) == sorted(members)
    assert any(r.training["resumed_epochs"] == 1 for r in resumed.values())
    for name in members:
        assert_same_numbers(solo_records[name], resumed[name])
    assert not list(out.glob("runs/*/checkpoint.pt")), "a checkpoint outlived its record"


def test_logits_and_features_of_the_digit_teachers_agree_bit_for_bit():
    """What lets a cohort serve a logit method from a feature method's teacher pass (the
    memo checks it per teacher at run time too)."""
    images = torch.randn(8, 3, 32, 32)
    for name in ("lenet", "dtn", "resnet18"):
        model = create_backbone(BackboneSpec(name=name), 10).eval()
        with torch.no_grad():
            assert torch.equal(model(images), forward_outputs(model, images).logits), name


def test_cohorts_group_by_everything_but_the_method_and_split_to_feed_every_worker(tiny_suite):
    suite = load_suite(tiny_suite(methods=["source_only", "kd", "dkd", "at"], seeds=[0, 1]))
    specs = expand(suite)
    cohorts = plan_cohorts(specs, size=16, workers=1)
    assert [len(c) for c in cohorts] == [4, 4]
    assert all(len({s.seed for s in c}) == 1 for c in cohorts)
    assert [len(c) for c in plan_cohorts(specs, size=3, workers=1)] == [3, 1, 3, 1]
    assert [len(c) for c in plan_cohorts(specs, size=16, workers=4)] == [2, 2, 2, 2]
    assert [len(c) for c in plan_cohorts(specs, size=1, workers=1)] == [1] * 8
    size, why = auto_cohort_size(specs, CPU)
    assert 1 <= size <= 16 and "MB" in why
