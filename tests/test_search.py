"""Hyperparameter search (`search:` in a suite): every method's space samples parameters it
accepts, draws are deterministic and independent per method, the defaults are trial 0 (their
runs keep their keys), a bad search stops the suite with one line, and the tuned report picks
each method's draw on validation, never on target labels unless the rule is the oracle."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml
from test_resume import xdkd_process

from benchmark.cli import main
from benchmark.errors import XdkdError
from benchmark.methods.registry import METHODS
from benchmark.report.tidy import load_runs, records_table
from benchmark.report.tuning import defaults_only, tuned
from benchmark.suite.catalogue import catalogue
from benchmark.suite.config import Suite, parameter_problem
from benchmark.suite.expansion import check_suite, expand
from benchmark.suite.loader import load_suite
from benchmark.suite.search import Distribution, choice, draw, int_uniform, log_uniform, problem

SEARCHED = [name for name, cls in METHODS.items() if cls.search]


def suite(methods: list, **fields) -> Suite:
    return Suite.model_validate(
        {
            "name": "search",
            "pairs": [{"source": "mnist", "target": "mnistm"}],
            "teachers": ["lenet"],
            "students": ["lenet"],
            "methods": methods,
            "seeds": [0, 1],
            "search": {"trials": 3},
            **fields,
        },
        context={"catalogue": catalogue()},
    )


def trial_keys(specs, method: str) -> dict[tuple[int, int], str]:
    return {(s.seed, s.method.trial or 0): s.key for s in specs if s.method.name == method}


def test_most_methods_declare_a_search_space_and_kd_searches_its_temperature() -> None:
    assert len(SEARCHED) >= 30
    assert METHODS.get("kd").search["temperature"].kind == "log_uniform"


@pytest.mark.parametrize("name", SEARCHED)
def test_every_draw_of_a_methods_space_is_a_parameter_it_accepts(name: str) -> None:
    cls = METHODS.get(name)
    for parameter, distribution in cls.search.items():
        assert distribution.why, f"{name}.{parameter} gives no reason for its range"
        assert problem(distribution, cls.defaults[parameter]) is None
    for trial in range(1, 6):
        values = draw(cls.search, 0, name, "mnist→mnistm", trial)
        for parameter, value in values.items():
            assert parameter_problem(name, parameter, value, cls.defaults) is None
            distribution = cls.search[parameter]
            if distribution.kind == "choice":
                assert value in distribution.values
            else:
                assert distribution.values[0] <= value <= distribution.values[1]
        cls(name, **values)  # the method itself accepts them


def test_a_draw_is_the_same_every_time_and_each_parameter_has_its_own_stream() -> None:
    space = {"a": log_uniform(0.1, 10.0), "b": int_uniform(1, 9), "c": choice(["x", "y"])}
    first = draw(space, 0, "kd", "mnist→mnistm", 2)
    assert draw(space, 0, "kd", "mnist→mnistm", 2) == first
    assert draw({"a": space["a"]}, 0, "kd", "mnist→mnistm", 2)["a"] == first["a"]
    others = [draw(space, 0, "kd", "mnist→mnistm", t)["a"] for t in range(3, 9)]
    assert len({first["a"], *others}) == 7  # trials differ
    assert draw(space, 1, "kd", "mnist→mnistm", 2) != first  # the search seed moves them


def test_trial_zero_is_the_defaults_and_adding_a_method_moves_no_other_draw() -> None:
    plain = Suite.model_validate(
        suite(["source_only", "kd"]).model_dump(mode="json") | {"search": None},
        context={"catalogue": catalogue()},
    )
    two = expand(suite(["source_only", "kd"]))
    three = expand(suite(["source_only", "kd", "dkd"]))
    assert {s.key for s in expand(plain)} == {s.key for s in two if s.method.trial is None}
    for method in ("source_only", "kd"):
        keys = trial_keys(two, method)
        assert len(keys) == 2 * 4 and len(set(keys.values())) == 8
        assert trial_keys(three, method) == keys
    kd = [s for s in two if s.method.name == "kd" and s.method.trial == 1]
    assert {s.method.row for s in kd} == {"kd [trial 1]"}
    assert kd[0].method.params == kd[1].method.params  # the seeds of a trial share its values
    assert set(kd[0].method.params) == set(METHODS.get("kd").search)
    assert kd[0].student_recipe.lr != two[0].student_recipe.lr  # the recipe is searched too
    assert not [s for s in two if s.method.name == "teacher"]


def test_fixed_parameters_and_replaced_spaces_are_honoured() -> None:
    specs = expand(
        suite(
            [{"name": "kd", "params": {"temperature": 2.0}}],
            search={
                "trials": 2,
                "recipe": False,
                "spaces": {"kd": {"kd_weight": {"log_uniform": [5.0, 6.0]}}},
            },
        )
    )
    drawn = [s for s in specs if s.method.trial]
    assert drawn and all(s.method.params["temperature"] == 2.0 for s in drawn)
    assert all(5.0 <= s.method.params["kd_weight"] <= 6.0 for s in drawn)
    assert {s.student_recipe.lr for s in specs} == {specs[0].student_recipe.lr}


@pytest.mark.parametrize(
    ("search", "says"),
    [
        ({"trials": 0}, "search.trials: .*trials is 0: a search needs at least one draw"),
        (
            {"trials": 2, "spaces": {"kd": {"temprature": {"uniform": [1, 4]}}}},
            "search.spaces.kd.temprature: method 'kd' has no parameter 'temprature'; did you "
            "mean 'temperature'",
        ),
        (
            {"trials": 2, "spaces": {"kd": {"temperature": {"uniform": [4, 4]}}}},
            r"method 'kd', temperature: uniform \[4, 4\] is an empty range",
        ),
        (
            {"trials": 2, "spaces": {"kd": {"temperature": {"log_uniform": [0, 4]}}}},
            "method 'kd', temperature: log_uniform .* cannot be sampled",
        ),
        (
            {"trials": 2, "spaces": {"kd": {"temperature": {"normal": [0, 4]}}}},
            "method 'kd', temperature: .* is not a distribution",
        ),
        (
            {"trials": 2, "spaces": {"kd": {"temperature": {"choice": []}}}},
            "method 'kd', temperature: choice has no values",
        ),
        (
            {"trials": 2, "spaces": {"dkd": {"beta": {"uniform": [1, 4]}}}},
            "search.spaces.dkd: 'dkd' is not one of the suite's methods",
        ),
        ({"trials": 2, "select": "best"}, "unknown selection rule 'best'"),
    ],
)
def test_a_bad_search_stops_the_suite_with_one_line_naming_it(
    tmp_path: Path, search: dict, says: str
) -> None:
    raw = suite(["source_only", "kd"]).model_dump(mode="json", exclude={"search"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw | {"search": search}, sort_keys=False))
    with pytest.raises(XdkdError, match=says) as raised:
        load_suite(path)
    assert "\n" not in str(raised.value)


def test_a_plug_in_space_that_cannot_be_sampled_is_refused_before_training() -> None:
    known = catalogue()
    broken = {"temperature": Distribution("log_uniform", (0.0, 8.0)).as_dict()}
    cards = known.methods | {"kd": dataclasses.replace(known.methods["kd"], search=broken)}
    with pytest.raises(XdkdError, match="method 'kd' declares a search over temperature"):
        check_suite(suite(["kd"]), dataclasses.replace(known, methods=cards))


# --- a search run end to end --------------------------------------------------------------

TRIALS = 2


@dataclasses.dataclass
class Searched:
    root: Path  # runs/ and results/ of the finished search
    kept: dict[Path, bytes]  # the records written before the kill, as they were


@pytest.fixture(scope="session")
def searched(built_once, suite_files, domain_cache) -> Searched:
    """The tiny suite with source_only and kd, one seed, a search of 2 trials: killed with
    SIGKILL once its first record is written, then run again to the end (once a session; the
    records written before the kill are kept in `kept/` as they were)."""

    def build(out: Path) -> None:
        path = suite_files(out)(
            methods=["source_only", "kd"],
            seeds=[0],
            corruptions=[],
            search={"trials": TRIALS, "seed": 0},
            controls=["aa"],
        )
        argv = ["run", str(path), "--out", str(out / "runs"), "--results", str(out / "results")]
        argv += ["--device", "cpu", "--no-progress", "--workers", "0"]
        run = xdkd_process(argv)
        deadline = time.monotonic() + 300
        while not list(out.glob("runs/runs/*/record.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait()
        (out / "kept").mkdir()
        for record in out.glob("runs/runs/*/record.json"):
            shutil.copyfile(record, out / "kept" / f"{record.parent.name}.json")
        assert main(argv) == 0

    out = built_once("searched", build)
    kept = {
        out / "runs" / "runs" / p.stem / "record.json": p.read_bytes()
        for p in (out / "kept").glob("*.json")
    }
    return Searched(out, kept)


@pytest.mark.long
def test_a_search_reports_the_defaults_and_the_tuned_leaderboards(searched: Searched) -> None:
    defaults = json.loads((searched.root / "results" / "report.json").read_text())
    tuned_board = json.loads((searched.root / "results" / "tuned" / "report.json").read_text())
    assert defaults["search"] == "defaults" and tuned_board["search"] == "tuned"
    # the null spread is the A/A control against the defaults' run it repeats, in both
    assert defaults["null"] == tuned_board["null"] and "of 1 A/A" in defaults["null"]
    assert defaults["runs"] == tuned_board["runs"] == 2  # 2 methods, one draw each
    assert "Defaults' leaderboard" in (searched.root / "results" / "leaderboard.md").read_text()
    page = (searched.root / "results" / "tuned" / "leaderboard.md").read_text()
    assert "Tuned leaderboard" in page and "Fragility over the search" in page
    assert (searched.root / "results" / "tuned" / "plots" / "sensitivity.png").is_file()
    fragility = (searched.root / "results" / "tuned" / "fragility.csv").read_text().splitlines()
    assert len(fragility) == 3 and fragility[0].startswith("method,pair")


def test_the_tuned_choice_reads_validation_never_target_labels(searched: Searched) -> None:
    records, errors = load_runs(searched.root / "runs")
    test = records_table(records).set_index("key")["target_acc"]
    chosen = {
        r.key
        for r in tuned(records, errors, "source-val", test).records
        if not r.spec.method.stream
    }
    assert len(chosen) == 2 and chosen != {r.key for r in defaults_only(records).records}
    # a draw the choice passed over gets perfect target labels: under source-val (and with
    # every run's test accuracy reversed) nothing moves; under the flagged oracle it wins
    kd_chosen = {
        r.spec.method.trial or 0 for r in records if r.key in chosen and r.spec.method.name == "kd"
    }
    boost = next(t for t in range(TRIALS + 1) if t not in kd_chosen)

    def boosted(record):
        if record.spec.method.name != "kd" or (record.spec.method.trial or 0) != boost:
            return record
        perfect = [1.0] * len(record.curves["target_val_acc"])
        return record.model_copy(update={"curves": record.curves | {"target_val_acc": perfect}})

    changed = [boosted(r) for r in records]
    reversed_test = 1 - test
    again = tuned(changed, errors, "source-val", reversed_test)
    assert {r.key for r in again.records if not r.spec.method.stream} == chosen
    oracle = tuned(changed, errors, "oracle", test).records
    boosted_keys = {
        r.key
        for r in records
        if r.spec.method.name == "kd"
        and (r.spec.method.trial or 0) == boost
        and not r.spec.method.stream
    }
    assert {r.key for r in oracle if r.spec.method.name == "kd" and not r.spec.method.stream} == (
        boosted_keys
    )


def test_report_tuned_without_search_draws_says_what_makes_them(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", str(tiny_sweep / "runs"), "--out", str(tmp_path / "r"), "--tuned"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("xdkd: error: --tuned: these runs hold no search draws")
    assert "\n" not in error


def test_a_search_killed_mid_sweep_resumes_and_keeps_what_was_recorded(searched: Searched):
    assert 1 <= len(searched.kept) < 2 * (TRIALS + 1) + 1, "the sweep was not killed midway"
    assert all(p.read_bytes() == data for p, data in searched.kept.items())
    records, errors = load_runs(searched.root / "runs")
    assert not errors
    kd = [r for r in records if r.spec.method.name == "kd" and not r.spec.method.stream]
    assert sorted(r.spec.method.trial or 0 for r in kd) == list(range(TRIALS + 1))


def test_xdkd_methods_name_prints_its_search_space(capsys) -> None:
    assert main(["methods", "kd"]) == 0
    shown = capsys.readouterr().out
    assert "temperature" in shown and "log-uniform" in shown and "recipe.lr" in shown
    assert main(["methods", "kdd"]) == 2
    assert "unknown method 'kdd'; did you mean 'kd'" in capsys.readouterr().err


def test_draws_are_spread_over_a_log_range() -> None:
    values = [log_uniform(0.01, 100.0).sample(random.Random(seed)) for seed in range(400)]
    below_one = sum(v < 1 for v in values) / len(values)
    assert 0.4 < below_one < 0.6  # log-uniform: half the draws below the geometric middle


def test_claims_about_the_tuned_leaderboard_are_not_judged_on_the_defaults(
    searched: Searched, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = {
        "tuned": True,
        "claims": [{"method": "kd", "against": "source_only", "verdict": "above"}],
    }
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump(claims))
    argv = ["report", str(searched.root / "runs"), "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "claims are about the tuned leaderboard: add --tuned" in capsys.readouterr().err
    assert main([*argv, "--tuned"]) == 0
    assert "`kd` against `source_only`" in (tmp_path / "README.md").read_text()
