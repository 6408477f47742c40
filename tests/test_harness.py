"""End to end on a tiny suite: records, resume, shared teachers, failures, determinism."""

import json
import shutil

import pytest
import torch

from benchmark.executors.sweep import ExecutorOptions, run_sweep
from benchmark.methods import METHODS
from benchmark.methods.base import Method
from benchmark.run.harness import Harness
from benchmark.store import RunStore
from benchmark.suite.expansion import expand
from benchmark.suite.loader import load_suite
from benchmark.suite.protocols import Needs

CPU = torch.device("cpu")
SMALL = {"corruptions": ["gaussian_noise"], "corruption_images": 50}


def run(suite_path, out, overrides=None, retry_failed=False):
    """The sweep in this process (workers=0), so that test doubles patched in apply."""
    suite = load_suite(suite_path, overrides)
    options = ExecutorOptions(workers=0, progress=False, retry_failed=retry_failed)
    return run_sweep(RunStore(out), expand(suite), suite.evaluation, CPU, options)


def records(out, summary):
    store = RunStore(out)
    return [record for record in store.records() if record.key in summary.done]


def test_a_sweep_writes_records_then_a_rerun_skips_them(tiny_sweep):
    records = sorted((tiny_sweep / "runs" / "runs").glob("*/record.json"))
    assert len(records) == 3
    by_method = {json.loads(p.read_text())["spec"]["method"]["name"]: p for p in records}
    record = json.loads(by_method["source_only"].read_text())
    assert set(record["metrics"]) >= {"target_acc", "source_acc", "heldout_mean_acc"}
    assert set(record["per_domain"]) == {"mnist", "mnistm", "optdigits", "syndigits"}
    assert record["teachers"][0]["source_accuracy"] > 0.5
    suite_inputs = "[-1, 1] (mean 0.5, std 0.5)"  # networks trained from scratch here
    assert record["teachers"][0]["inputs"] == record["training"]["student_inputs"] == suite_inputs
    kernels = torch.backends.cpu.get_cpu_capability()  # another ISA sums in another order
    assert record["device"].startswith("cpu (") and record["device"].endswith(f"{kernels} kernels)")
    robustness = record["robustness"]["items"]["mnist"]
    assert robustness["images"] == 200 and len(robustness["cells"]) == 5 + 5 + 1
    assert set(robustness["per_group"]) == {"noise", "digital", "shape"}
    appearance = [v for k, v in robustness["cells"].items() if not k.startswith("rotate")]
    assert record["metrics"]["mca"] == pytest.approx(sum(appearance) / 10, rel=1e-12)
    assert record["metrics"]["mca_shape"] == robustness["cells"]["rotate/1"]
    assert record["selected"]["source-val"]["epoch"] == 1 and record["selections"]["last"] == 1
    assert 0 < record["curves"]["source_val_acc"][0] <= 1
    assert record["saw"]["unlabelled_target_images"] == 3600  # mnist's train split less 10%
    assert record["saw"]["source_images"] == 1295  # optdigits' 1,438 train images less 10% a class
    assert json.loads(by_method["teacher"].read_text())["selected"] == {}  # nothing trained
    assert {"target_ece", "target_nll", "flops", "latency_ms_b1", "params"} <= set(
        record["metrics"]
    )
    assert record["fast_path"]["channels_last"] and record["fast_path"]["mode"] == "auto"
    assert record["training"]["fast_path"] == {**record["fast_path"], "compile": False}
    second = run(tiny_sweep / "tiny.yaml", tiny_sweep / "runs")
    assert second.recorded == 3 and not second.done


@pytest.mark.long
def test_one_teacher_is_trained_for_two_students_and_reused_from_disk(tiny_suite, tmp_path):
    path = tiny_suite(students=["lenet", "dtn"], methods=["source_only"], **SMALL)
    trained = []
    real = Harness._train_teacher

    def counting(self, spec):
        trained.append(spec.key)
        return real(self, spec)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Harness, "_train_teacher", counting)
        summary = run(path, tmp_path / "runs")
        assert len(summary.done) == 2 and len(trained) == 1
        assert len(list((tmp_path / "runs" / "teachers").iterdir())) == 1
        teacher_acc = {
            r.teachers[0]["source_accuracy"] for r in records(tmp_path / "runs", summary)
        }
        assert len(teacher_acc) == 1
        # a new method on the same teacher loads it from disk instead of training again
        again = run(path, tmp_path / "runs", overrides=["methods=[source_only, teacher]"])
    assert len(again.done) == 1 and len(trained) == 1
    (new,) = records(tmp_path / "runs", again)
    assert new.teachers[0]["source_accuracy"] == teacher_acc.pop()


class Exploding(Method):
    family = "baseline"
    paper = "test double: a loss that diverges"
    needs = Needs(teacher=None)

    def losses(self, student, teacher, batch):
        return {"boom": student(batch.source_images).sum() * float("nan")}


def test_a_failed_run_writes_error_json_and_the_sweep_goes_on(tiny_sweep, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS._entries, "exploding", Exploding)
    shutil.copytree(tiny_sweep / "runs", tmp_path / "runs")  # its teacher and source_only
    path = tiny_sweep / "tiny.yaml"
    summary = run(path, tmp_path / "runs", ["methods=[exploding, source_only]"])
    assert summary.recorded == 1 and len(summary.failed) == 1 and not summary.done
    errors = RunStore(tmp_path / "runs").errors()
    assert len(errors) == 1
    assert "loss 'boom' became nan at step 0" in errors[0]["error"]
    # the finished record survives; a rerun reports the failed run without running it,
    # and --retry-failed runs it again
    again = run(path, tmp_path / "runs", ["methods=[exploding, source_only]"])
    assert again.recorded == 1 and again.not_retried == 1 and not again.failed
    retried = run(path, tmp_path / "runs", ["methods=[exploding, source_only]"], retry_failed=True)
    assert retried.recorded == 1 and len(retried.failed) == 1 and not retried.done


def test_same_spec_same_seed_same_numbers(tiny_sweep, tmp_path):
    path = tiny_sweep / "tiny.yaml"
    (first,) = [r for r in RunStore(tiny_sweep / "runs").records() if r.spec.method.name == "kd"]
    (second,) = records(tmp_path / "b", run(path, tmp_path / "b", ["methods=[kd]"]))
    assert first.key == second.key
    assert first.per_domain == second.per_domain and first.metrics["mca"] == second.metrics["mca"]
    assert first.curves == second.curves
    (other_seed,) = expand(load_suite(path, ["seeds=[1]", "methods=[kd]"]))
    assert other_seed.key != first.key


def test_the_recipe_label_smoothing_reaches_every_labelled_cross_entropy():
    import torch.nn.functional as F

    from benchmark.data.domains import load_domain
    from benchmark.data.setting import Part
    from benchmark.data.tensors import DeviceSplit
    from benchmark.methods.source_only import SourceOnly
    from benchmark.models import create_backbone
    from benchmark.run.train import TrainData, fit
    from benchmark.suite.config import BackboneSpec, Recipe

    arrays = load_domain("optdigits")
    split = DeviceSplit.from_numpy(arrays.train_images, arrays.train_labels, CPU, 32)
    method = SourceOnly("source_only")
    recipe = Recipe(epochs=1, batch_size=256, label_smoothing=0.2)
    model = create_backbone(BackboneSpec(name="lenet"), 10)
    data = TrainData(sources=[Part("optdigits", "optdigits", split)])
    fit(model, None, method, data, recipe, torch.Generator(), "ls", select=False, progress=False)
    assert method.label_smoothing == 0.2
    logits, labels = torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
    smoothed = F.cross_entropy(logits, labels, label_smoothing=0.2)
    assert torch.isclose(method.cross_entropy(logits, labels), smoothed)
    assert not torch.isclose(smoothed, F.cross_entropy(logits, labels))
