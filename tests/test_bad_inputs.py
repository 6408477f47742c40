"""Hostile inputs to every command: each gets one line naming the thing and the fix, exit
code 2 (1 where the command ran and reports failures), never a traceback, and nothing already
recorded changes.

One case per class of mistake and per command: suite files and their fields, overrides,
protocols, pairs and tasks, output paths, devices and workers, environment settings, runs
directories, records, baselines, dataset and corruption commands, evaluate. The cases run
in this process (`benchmark.cli.main`); one runs `xdkd` under a closed pipe.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from handmade import make_record, make_spec

from benchmark.cli import main
from benchmark.store import RunStore

SUITE = {
    "name": "hostile",
    "pairs": [{"source": "mnist", "target": "mnistm"}],
    "teachers": ["lenet"],
    "students": ["lenet"],
    "methods": ["source_only", "kd"],
    "teacher_recipe": {"epochs": 1},
    "student_recipe": {"epochs": 1},
}


@dataclass(frozen=True)
class Case:
    """argv (with {suite}, {runs}, {file}, {baseline}, {tmp} filled in), the suite's change,
    the exit code and what the message must name."""

    argv: tuple[str, ...]
    names: tuple[str, ...]
    suite: dict | None = None
    code: int = 2


def suite_with(**change) -> dict:
    return {**SUITE, **change}


RUN = ("run", "{suite}", "--out", "{tmp}/out", "--results", "{tmp}/res", "--no-progress")
CASES = {
    # --- the suite file ----------------------------------------------------------------
    "suite-missing": Case(("run", "{tmp}/absent.yaml"), ("absent.yaml", "not found")),
    "suite-unknown-name": Case(("run", "quik"), ("unknown suite 'quik'", "did you mean 'quick'")),
    "suite-is-a-directory": Case(("run", "{tmp}"), ("is a directory",)),
    "suite-not-utf8": Case(
        RUN, ("not UTF-8 text", "save it as UTF-8"), suite={"raw": b"name: caf\xe9\n"}
    ),
    "suite-bad-yaml": Case(
        RUN, ("suite.yaml:3", "not valid YAML"), suite={"raw": b"name: x\npairs: [\n"}
    ),
    "suite-not-a-mapping": Case(RUN, ("a suite is a YAML mapping",), suite={"raw": b"- a\n- b\n"}),
    "suite-unknown-field": Case(RUN, ("sedes: unknown field",), suite=suite_with(sedes=[0])),
    "suite-name-unsafe": Case(
        RUN, ("suite name '../x' is not a usable name",), suite=suite_with(name="../x")
    ),
    "suite-no-methods": Case(RUN, ("methods", "at least 1 item"), suite=suite_with(methods=[])),
    # --- names and parameters ------------------------------------------------------------
    "method-unknown": Case(
        RUN,
        ("methods.1", "unknown method 'kdd'", "did you mean 'kd'"),
        suite=suite_with(methods=["source_only", "kdd"]),
    ),
    "method-parameter-typo": Case(
        RUN,
        ("has no parameter 'temprature'", "did you mean 'temperature'"),
        suite=suite_with(methods=[{"name": "kd", "params": {"temprature": 2}}]),
    ),
    "method-parameter-type": Case(
        RUN,
        ("temperature is 'hot', not a number",),
        suite=suite_with(methods=[{"name": "kd", "params": {"temperature": "hot"}}]),
    ),
    "method-label-unsafe": Case(
        RUN,
        ("method label 'a/b' is not a usable name",),
        suite=suite_with(methods=[{"name": "kd", "label": "a/b"}]),
    ),
    "method-fits-nothing": Case(
        RUN,
        ("method 'dine' fits no setting", "needs unlabelled target images"),
        suite=suite_with(methods=["dine"], protocol="zero_shot"),
    ),
    "backbone-unknown": Case(
        RUN,
        ("teachers.0.name", "unknown backbone 'resnet181'"),
        suite=suite_with(teachers=["resnet181"]),
    ),
    "domain-unknown": Case(
        RUN,
        ("pairs.0.target", "unknown domain 'mnist_m'", "did you mean 'mnistm'"),
        suite=suite_with(pairs=[{"source": "mnist", "target": "mnist_m"}]),
    ),
    "corruption-unknown": Case(
        RUN,
        ("corruptions", "unknown corruption or group 'fgo'", "did you mean 'fog'"),
        suite=suite_with(corruptions=["fgo"]),
    ),
    "recipe-epochs-zero": Case(
        RUN,
        ("student_recipe.epochs", "greater than or equal to 1"),
        suite=suite_with(student_recipe={"epochs": 0}),
    ),
    "recipe-lr-negative": Case(
        RUN, ("teacher_recipe.lr", "greater than 0"), suite=suite_with(teacher_recipe={"lr": -1})
    ),
    "recipe-batch-one": Case(
        RUN, ("student_recipe.batch_size",), suite=suite_with(student_recipe={"batch_size": 1})
    ),
    # --- protocols, pairs, tasks -----------------------------------------------------------
    "protocol-unknown": Case(
        RUN,
        ("protocol.0", "unknown protocol 'uad'", "did you mean 'uda'"),
        suite=suite_with(protocol="uad"),
    ),
    "protocol-parameter-unknown": Case(
        RUN,
        ("protocol 'uda' has no parameter 'shots'",),
        suite=suite_with(protocol={"name": "uda", "shots": 3}),
    ),
    "few-shot-without-shots": Case(
        RUN, ("protocol 'few_shot' needs shots",), suite=suite_with(protocol="few_shot")
    ),
    "few-shot-zero-shots": Case(
        RUN,
        ("shots must be a whole number >= 1",),
        suite=suite_with(protocol={"name": "few_shot", "shots": 0}),
    ),
    "few-shot-more-shots-than-images": Case(
        RUN,
        ("few_shot shots=400", "class", "mnistm", "choose shots <= 360"),
        suite=suite_with(protocol={"name": "few_shot", "shots": 400}),
    ),
    "pair-source-is-target": Case(
        RUN,
        ("pairs.0", "source and target are the same domain", "in_domain"),
        suite=suite_with(pairs=[{"source": "mnist", "target": "mnist"}]),
    ),
    "pair-repeated": Case(
        RUN,
        ("pairs.1: repeats pairs.0",),
        suite=suite_with(pairs=[{"source": "mnist", "target": "mnistm"}] * 2),
    ),
    "pair-families-differ": Case(
        RUN,
        ("domains of different families",),
        suite=suite_with(pairs=[{"source": "mnist", "target": "amazon"}]),
    ),
    "multi-source-with-one-source": Case(
        RUN,
        ("multi_source needs several sources",),
        suite=suite_with(
            pairs=[{"source": ["mnist"], "target": "mnistm"}], protocol="multi_source"
        ),
    ),
    "multi-target-target-is-source": Case(
        RUN,
        ("'mnist' is both a source and a target",),
        suite=suite_with(
            pairs=[{"source": "mnist", "target": ["mnistm", "mnist"]}], protocol="multi_target"
        ),
    ),
    "method-repeated": Case(
        RUN, ("methods.1: repeats methods.0",), suite=suite_with(methods=["kd", "kd"])
    ),
    "seed-repeated": Case(RUN, ("seeds.1: repeats seeds.0",), suite=suite_with(seeds=[3, 3])),
    "seed-plan-max-below-min": Case(
        RUN,
        ("seeds.plan: max 3 is below min 5",),
        suite=suite_with(seeds={"min": 5, "max": 3, "until_halfwidth": 2.0}),
    ),
    "seed-plan-one-seed": Case(
        RUN,
        ("seeds.plan.min", "greater than or equal to 2"),
        suite=suite_with(seeds={"min": 1, "until_halfwidth": 2.0}),
    ),
    "seed-plan-no-width": Case(
        RUN,
        ("seeds.plan.until_halfwidth", "Field required"),
        suite=suite_with(seeds={"min": 5, "max": 9}),
    ),
    "seed-plan-unknown-method": Case(
        RUN,
        ("seeds.method: 'dkd' is not one of the suite's methods it can compare",),
        suite=suite_with(seeds={"min": 2, "until_halfwidth": 2.0, "method": "dkd"}),
    ),
    "seed-plan-nothing-to-compare": Case(
        RUN,
        ("seeds: adding seeds until an interval is narrow needs a comparison",),
        suite=suite_with(methods=["teacher"], seeds={"min": 2, "until_halfwidth": 2.0}),
    ),
    "teacher-repeated": Case(
        RUN, ("teachers.1: repeats teachers.0",), suite=suite_with(teachers=["lenet", "lenet"])
    ),
    "tasks-without-multi-task": Case(
        RUN,
        ("tasks are for protocol multi_task",),
        suite=suite_with(tasks=[{"name": "a", "source": "mnist", "classes": [0]}]),
    ),
    "task-class-unknown": Case(
        RUN,
        ("tasks.1.classes.0", "'ten' is not a class of mnist"),
        suite=suite_with(
            pairs=[],
            protocol="multi_task",
            tasks=[
                {"name": "a", "source": "mnist", "classes": [0]},
                {"name": "b", "source": "mnist", "classes": ["ten"]},
            ],
        ),
    ),
    # --- overrides -------------------------------------------------------------------------
    "set-without-equals": Case(
        (*RUN, "--set", "seeds"), ("--set 'seeds' is not key=value",), suite=SUITE
    ),
    "set-bad-yaml": Case(
        (*RUN, "--set", "seeds=[0,"), ("--set 'seeds=[0,'", "not valid YAML"), suite=SUITE
    ),
    "set-through-a-scalar": Case(
        (*RUN, "--set", "name.x=1"), ("'name' is not a mapping",), suite=SUITE
    ),
    "set-index-out-of-range": Case(
        (*RUN, "--set", "methods.7=kd"), ("'7' is not an index of a list of 2",), suite=SUITE
    ),
    "set-blames-the-override": Case(
        (*RUN, "--set", "student_recipe.epochs=0"),
        ("--set student_recipe.epochs=0: student_recipe.epochs",),
        suite=SUITE,
    ),
    # --- where it runs -----------------------------------------------------------------------
    "out-is-a-file": Case(
        ("run", "{suite}", "--out", "{file}", "--results", "{tmp}/res"),
        ("--out", "is a file, not a directory"),
        suite=SUITE,
    ),
    "results-is-a-file": Case(
        ("run", "{suite}", "--out", "{tmp}/out", "--results", "{file}"),
        ("--results", "is a file, not a directory"),
        suite=SUITE,
    ),
    "out-under-a-file": Case(
        ("run", "{suite}", "--out", "{file}/x", "--results", "{tmp}/res"),
        ("--out", "cannot create it"),
        suite=SUITE,
    ),
    "device-unknown": Case(
        (*RUN, "--device", "gpu0"), ("--device 'gpu0' is not a device",), suite=SUITE
    ),
    "workers-negative": Case((*RUN, "--workers", "-1"), ("--workers -1",), suite=SUITE),
    "jobs-per-gpu-zero": Case(
        (*RUN, "--jobs-per-gpu", "0"),
        ("argument --jobs-per-gpu", "'0' is not 'auto' or a number of 1 or more"),
        suite=SUITE,
    ),
    "flag-value-not-a-number": Case(
        (*RUN, "--workers", "two"), ("argument --workers", "invalid int value: 'two'"), suite=SUITE
    ),
    "environment-device-budget": Case(
        (*RUN,),
        ("XDKD_DEVICE_DATA_GB='lots'",),
        suite={**SUITE, "env": {"XDKD_DEVICE_DATA_GB": "lots"}},
    ),
    "environment-bad-images": Case(
        (*RUN,),
        ("XDKD_BAD_IMAGES='maybe' is not a policy",),
        suite={**SUITE, "env": {"XDKD_BAD_IMAGES": "maybe"}},
    ),
    # --- status, report, check, evaluate -------------------------------------------------------
    "status-missing": Case(("status", "{tmp}/nowhere"), ("is not a runs directory",)),
    "status-of-a-file": Case(("status", "{file}"), ("is a file",)),
    "report-missing": Case(
        ("report", "{tmp}/nowhere", "--out", "{tmp}/rep"), ("runs directory", "not found")
    ),
    "report-rows-unknown": Case(
        ("report", "{runs}", "--out", "{tmp}/rep", "--rows", "colour"),
        ("--rows: unknown column 'colour'",),
    ),
    "report-rows-pair": Case(
        ("report", "{runs}", "--out", "{tmp}/rep", "--rows", "method,pair"),
        ("--rows cannot hold pair or seed", "--by pair"),
    ),
    "report-by-seed": Case(
        ("report", "{runs}", "--out", "{tmp}/rep", "--by", "pair,seed"),
        ("--by: 'seed' is not one of pair, teacher, student, protocol",),
    ),
    "report-selection-unknown": Case(
        ("report", "{runs}", "--selection", "best"), ("invalid choice: 'best'",)
    ),
    "report-selection-without-validation": Case(
        ("report", "{unvalidated}", "--out", "{tmp}/rep", "--selection", "oracle"),
        ("under --selection oracle no run has a chosen epoch", "--selection last"),
    ),
    "report-old-record": Case(
        ("report", "{old}", "--out", "{tmp}/rep"),
        ("written by an older xdkd", "git checkout 78d4808"),
    ),
    "report-wrong-typed-metric": Case(
        ("report", "{wrong_typed}", "--out", "{tmp}/rep"), ("no run records found",)
    ),
    "report-out-is-a-file": Case(("report", "{runs}", "--out", "{file}"), ("{file}",)),
    "check-baseline-missing": Case(
        ("check", "{runs}", "--baseline", "{tmp}/none.json"),
        ("none.json", "not found", "--update-baseline"),
    ),
    "check-baseline-not-json": Case(
        ("check", "{runs}", "--baseline", "{file}"), ("is not valid JSON",)
    ),
    "check-baseline-other-format": Case(
        ("check", "{runs}", "--baseline", "{other_format}"),
        ("not an xdkd baseline of this version",),
    ),
    "check-baseline-cell-without-seeds": Case(
        ("check", "{runs}", "--baseline", "{seedless}"), ("cell 0 lacks seeds",)
    ),
    "check-abs-tol-not-a-number": Case(
        ("check", "{runs}", "--baseline", "{baseline}", "--abs-tol", "lots"),
        ("--abs-tol 'lots' is not a number",),
    ),
    "check-z-negative": Case(
        ("check", "{runs}", "--baseline", "{baseline}", "--z", "target_acc=-1"),
        ("--z '-1' is negative",),
    ),
    "check-metric-unknown": Case(
        ("check", "{runs}", "--baseline", "{baseline}", "--metrics", "accuracy"),
        ("unknown metric 'accuracy'",),
    ),
    "check-update-without-validation": Case(
        (
            "check",
            "{unvalidated}",
            "--baseline",
            "{tmp}/new.json",
            "--update-baseline",
            "--selection",
            "source-val",
        ),
        ("no run", "has target_acc", "--selection last"),
    ),
    "check-runs-missing": Case(
        ("check", "{tmp}/nowhere", "--baseline", "{baseline}"), ("not found",)
    ),
    "evaluate-nothing-trained": Case(("evaluate", "{runs}"), ("holds no trained runs",)),
    "evaluate-training-setting": Case(
        ("evaluate", "{runs}", "--set", "student_recipe.epochs=3"),
        ("'student_recipe' is not an evaluation setting",),
    ),
    "evaluate-missing": Case(("evaluate", "{tmp}/nowhere"), ("is not a runs directory",)),
    # --- data and listings ---------------------------------------------------------------------
    "datasets-show-count-zero": Case(
        ("datasets", "show", "mnist", "--count", "0", "--out", "{tmp}/g.png"), ("--count 0",)
    ),
    "datasets-show-unknown": Case(
        ("datasets", "show", "mnits", "--out", "{tmp}/g.png"),
        ("unknown domain 'mnits'", "did you mean 'mnist'"),
    ),
    "datasets-show-no-domain": Case(("datasets", "show"), ("needs a DOMAIN",)),
    "datasets-check-unknown-family": Case(("datasets", "check", "digitz"), ("digitz",)),
    "datasets-build-unknown": Case(("datasets", "build", "svhm"), ("unknown domain 'svhm'",)),
    "corruptions-show-no-domain": Case(("corruptions", "show"), ("needs a DOMAIN",)),
    "corruptions-show-bad-index": Case(
        ("corruptions", "show", "mnist", "--index", "99999", "--out", "{tmp}/c.png"),
        ("--index 99999 is outside",),
    ),
    "backbones-no-match": Case(("backbones", "zzz*"), ("no backbone matches 'zzz*'",)),
    "command-unknown": Case(("rn",), ("invalid choice: 'rn'",)),
}


def digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A runs directory with finished records, one with records of no validation, one with a
    record of an older format, a plain file and baselines of several kinds."""
    root = tmp_path_factory.mktemp("hostile")
    runs = RunStore(root / "runs")
    for method, acc in (("source_only", 0.6), ("kd", 0.7)):
        runs.write_record(make_record(make_spec(method), {"target_acc": acc}))
    unvalidated = RunStore(root / "unvalidated")
    unvalidated.write_record(make_record(make_spec("kd"), {"target_acc": 0.7}, selected={}))
    old = make_record(make_spec("kd"), {"target_acc": 0.7}).model_dump(mode="json")
    del old["format"]
    old["provenance"]["code"] = "78d4808"
    (root / "old" / "runs" / old["key"]).mkdir(parents=True)
    (root / "old" / "runs" / old["key"] / "record.json").write_text(json.dumps(old))
    wrong = make_record(make_spec("kd"), {"target_acc": 0.7}).model_dump(mode="json")
    wrong["metrics"]["target_acc"] = "high"
    (root / "wrong" / "runs" / wrong["key"]).mkdir(parents=True)
    (root / "wrong" / "runs" / wrong["key"] / "record.json").write_text(json.dumps(wrong))
    (root / "file.txt").write_text("{not json")
    baseline = root / "baseline.json"
    assert (
        main(["check", str(root / "runs"), "--baseline", str(baseline), "--update-baseline"]) == 0
    )
    made = json.loads(baseline.read_text())
    (root / "other.json").write_text(json.dumps({**made, "format": "xdkd-baseline/1"}))
    seedless = {**made, "cells": [{k: v for k, v in made["cells"][0].items() if k != "seeds"}]}
    (root / "seedless.json").write_text(json.dumps(seedless))
    return {
        "tmp": root,
        "runs": root / "runs",
        "unvalidated": root / "unvalidated",
        "old": root / "old",
        "wrong_typed": root / "wrong",
        "file": root / "file.txt",
        "baseline": baseline,
        "other_format": root / "other.json",
        "seedless": root / "seedless.json",
    }


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_input_gets_one_line_and_changes_nothing(
    name, places, tmp_path, capsys, monkeypatch
):
    case = CASES[name]
    suite_path = tmp_path / "suite.yaml"
    if case.suite is not None:
        for key, value in case.suite.get("env", {}).items():
            monkeypatch.setenv(key, value)
        if "raw" in case.suite:
            suite_path.write_bytes(case.suite["raw"])
        else:
            body = {k: v for k, v in case.suite.items() if k != "env"}
            suite_path.write_text(yaml.safe_dump(body))
    fill = {k: str(v) for k, v in places.items()} | {"suite": str(suite_path), "tmp": str(tmp_path)}
    argv = [part.format(**fill) for part in case.argv]
    before = digest(places["runs"])
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == case.code, (out, err)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("xdkd: error:")]
    assert len(errors) == 1, err
    for wanted in case.names:
        assert wanted.format(**fill) in errors[0], (wanted, errors[0])
    assert digest(places["runs"]) == before, "a hostile input changed what was recorded"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("teachers/*"))


def test_there_are_at_least_fifty_cases():
    assert len(CASES) >= 50


def test_a_closed_pipe_ends_the_listing_quietly():
    listing = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", "backbones"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    listing.stdout.readline()
    listing.stdout.close()  # `xdkd backbones | head -1`
    err = listing.stderr.read().decode()
    assert listing.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err
