"""Suites: their forms, one-line errors with file:line or the --set that caused them, what
expands into runs, and what is refused before anything trains."""

from pathlib import Path

import pytest

from benchmark.errors import XdkdError
from benchmark.suite.config import EvalSpec
from benchmark.suite.expansion import expand, expand_runs
from benchmark.suite.loader import load_suite
from benchmark.suite.specs import RunSpec

QUICK = Path(__file__).resolve().parents[1] / "baselines" / "quick.yaml"

GOOD = """\
name: s
pairs:
  - {source: mnist, target: mnistm}
teachers: [lenet]
students: [lenet]
methods:
  - kd
  - source_only
"""


def load_text(tmp_path: Path, text: str, overrides: list[str] | None = None):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return load_suite(path, overrides)


def error_of(tmp_path: Path, text: str, overrides: list[str] | None = None) -> str:
    with pytest.raises(XdkdError) as error:
        load_text(tmp_path, text, overrides)
    return str(error.value).replace(str(tmp_path), "DIR")


def test_quick_suite_loads_and_expands_with_one_teacher_row_per_pair():
    suite = load_suite(QUICK)
    specs = expand(suite)
    methods = len(suite.methods) + len(suite.controls)  # an A/A control repeats one method
    assert len(specs) == len(suite.pairs) * len(suite.seeds) * methods
    teacher_rows = [s for s in specs if s.method.name == "teacher"]
    assert teacher_rows and all(s.student == s.teacher for s in teacher_rows)


def test_unknown_method_names_file_line_and_field(tmp_path):
    message = error_of(tmp_path, GOOD.replace("  - source_only", "  - sorce_only"))
    assert message == (
        "DIR/suite.yaml:8: methods.1: unknown method 'sorce_only'; "
        "did you mean 'source_only'? valid: " + message.split("valid: ")[1]
    )


def test_unknown_field_and_bad_value_name_their_line(tmp_path):
    assert error_of(tmp_path, GOOD + "sedes: [0]\n") == (
        "DIR/suite.yaml:9: sedes: unknown field; remove it or check its spelling"
    )
    text = GOOD + "student_recipe:\n  epochs: 0\n"
    assert error_of(tmp_path, text) == (
        "DIR/suite.yaml:10: student_recipe.epochs: Input should be greater than or equal to 1"
    )
    assert error_of(tmp_path, GOOD.replace("target: mnistm", "target: mnist_m")).startswith(
        "DIR/suite.yaml:3: pairs.0.target: unknown domain 'mnist_m'; did you mean 'mnistm'?"
    )


def test_a_method_parameter_typo_or_wrong_type_names_the_parameter(tmp_path):
    typo = GOOD.replace("  - kd\n", "  - {name: kd, params: {temprature: 2}}\n")
    assert error_of(tmp_path, typo).startswith(
        "DIR/suite.yaml:7: methods.0: method 'kd' has no parameter 'temprature'; did you mean "
        "'temperature'? its parameters: temperature, ce_weight, kd_weight"
    )
    wrong = GOOD.replace("  - kd\n", "  - {name: kd, params: {temperature: hot}}\n")
    assert "kd': temperature is 'hot', not a number (its default is 4.0)" in error_of(
        tmp_path, wrong
    )


def test_malformed_yaml_and_unreadable_files_name_the_file(tmp_path):
    assert error_of(tmp_path, GOOD + "seeds: [0, 1\n").startswith("DIR/suite.yaml:")
    assert "not valid YAML" in error_of(tmp_path, "name: [\n")
    (tmp_path / "latin.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(XdkdError, match="is not UTF-8 text .* save it as UTF-8"):
        load_suite(tmp_path / "latin.yaml")


def test_overrides_apply_and_errors_in_them_blame_the_override(tmp_path):
    suite = load_text(tmp_path, GOOD, ["seeds=[1,2]", "student_recipe.epochs=3", "methods.1=kd_ls"])
    assert suite.seeds == [1, 2] and suite.student_recipe.epochs == 3
    assert [m.name for m in suite.methods] == ["kd", "kd_ls"]
    assert "is not key=value" in error_of(tmp_path, GOOD, ["seeds"])
    assert error_of(tmp_path, GOOD, ["student_recipe.epochs=0"]) == (
        "--set student_recipe.epochs=0: student_recipe.epochs: Input should be greater than or "
        "equal to 1"
    )
    assert "the value is not valid YAML" in error_of(tmp_path, GOOD, ["seeds=[0,"])
    assert "not an index of a list of 2" in error_of(tmp_path, GOOD, ["methods.5=kd"])


def test_an_override_of_a_yaml_alias_changes_only_the_key_it_names(tmp_path):
    shared = GOOD + "teacher_recipe: &recipe {epochs: 2, lr: 0.003}\nstudent_recipe: *recipe\n"
    suite = load_text(tmp_path, shared, ["student_recipe.epochs=30"])
    assert suite.student_recipe.epochs == 30 and suite.teacher_recipe.epochs == 2
    assert suite.teacher_recipe.lr == suite.student_recipe.lr == 0.003
    both = load_text(tmp_path, shared, ["teacher_recipe.lr=0.01", "student_recipe.epochs=5"])
    assert (both.teacher_recipe.lr, both.teacher_recipe.epochs) == (0.01, 2)
    assert (both.student_recipe.lr, both.student_recipe.epochs) == (0.003, 5)


def test_spec_key_ignores_suite_name_row_label_and_every_evaluation_setting(tmp_path):
    spec = expand(load_text(tmp_path, GOOD))[0]
    renamed = RunSpec.model_validate({**spec.model_dump(), "suite": "other"})
    labelled = spec.model_copy(update={"method": spec.method.model_copy(update={"label": "x"})})
    assert spec.key == renamed.key == labelled.key and len(spec.key) == 16
    changed = RunSpec.model_validate({**spec.model_dump(), "seed": 5})
    assert changed.key != spec.key
    assert changed.teacher_specs[0].key != spec.teacher_specs[0].key
    other = GOOD + "corruptions: [fog]\ncorruption_images: 7\nteacher_floor: 0.1\nheldout: [usps]\n"
    again = expand(load_text(tmp_path, other))[0]
    assert again.key == spec.key
    assert load_text(tmp_path, other).evaluation.key != EvalSpec().key


def test_pair_forms_expand_into_settings_under_the_protocols_they_fit(tmp_path):
    text = GOOD.replace(
        "  - {source: mnist, target: mnistm}\n",
        "  - {source: mnist, target: mnistm}\n"
        "  - {source: [mnist, syndigits], target: mnistm}\n"
        "  - {source: mnist, target: [mnistm, syndigits]}\n"
        "  - {source: mnist}\n"
        "  - {leave_one_out: [mnist, syndigits, optdigits]}\n",
    )
    text += "protocol: [uda, multi_source, multi_target, in_domain]\n"
    expansion = expand_runs(load_text(tmp_path, text), _catalogue())
    settings = sorted({(s.setting.protocol.label, s.setting.label) for s in expansion.specs})
    assert settings == [
        ("in_domain", "mnist→mnist"),
        ("multi_source", "mnist+optdigits→syndigits"),
        ("multi_source", "mnist+syndigits→mnistm"),
        ("multi_source", "mnist+syndigits→optdigits"),
        ("multi_source", "syndigits+optdigits→mnist"),
        ("multi_target", "mnist→mnistm+syndigits"),
        ("uda", "mnist→mnistm"),
    ]
    assert any("pairs.3: not run under uda" in note for note in expansion.notes)
    teachers = {s.setting.label: len(s.teacher_specs) for s in expansion.specs}
    assert teachers["mnist+syndigits→mnistm"] == 2 and teachers["mnist→mnistm+syndigits"] == 1


def _catalogue():
    from benchmark.suite.catalogue import catalogue

    return catalogue()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("target: mnistm", "target: mnist"),
            "pairs.0: not run under uda: its source and target are the same domain, so there "
            "is no shift (protocol in_domain distils on one domain)",
        ),
        (
            (
                "{source: mnist, target: mnistm}",
                "{source: [mnist], target: mnistm}\nprotocol: multi_source",
            ),
            "pairs.0: not run under multi_source: multi_source needs several sources; this "
            "pair has one",
        ),
        (
            (
                "{source: mnist, target: mnistm}",
                "{source: mnist, target: [mnistm, mnist]}\nprotocol: multi_target",
            ),
            "pairs.0: 'mnist' is both a source and a target; a domain is one or the other",
        ),
        (
            (
                "{source: mnist, target: mnistm}",
                "{source: mnist, target: mnistm}\n  - {source: mnist, target: mnistm}",
            ),
            "pairs.1: repeats pairs.0",
        ),
        (("  - source_only", "  - kd"), "methods.1: repeats methods.0 (kd)"),
        (
            ("students: [lenet]", "students: [lenet]\nseeds: [0, 1, 0]"),
            "seeds.2: repeats seeds.0 (0)",
        ),
        (
            ("students: [lenet]", "students: [lenet]\nprotocol: {name: few_shot}"),
            "protocol.0: protocol 'few_shot' needs shots: e.g. {name: few_shot, shots: 5}",
        ),
        (
            ("students: [lenet]", "students: [lenet]\nprotocol: {name: uda, teacher_access: x}"),
            "protocol 'uda': teacher_access is 'x'; choose probabilities, logits, features",
        ),
        (
            ("students: [lenet]", "students: [lenet]\nprotocol: zero_shot\nmethods: [dine]"),
            "methods.0: method 'dine' fits no setting of this suite: under zero_shot on "
            "mnist→mnistm it needs unlabelled target images",
        ),
        (
            (
                "students: [lenet]",
                "students: [lenet]\ntasks: [{name: a, source: mnist, classes: [0]}]",
            ),
            "tasks: tasks are for protocol multi_task",
        ),
        (("target: mnistm", "target: amazon"), "domains of different families in one pair"),
        (("name: s", "name: ../up"), "suite name '../up' is not a usable name"),
    ],
)
def test_nonsense_and_repeats_are_refused_at_load_in_one_line(tmp_path, change, expected):
    old, new = change
    assert old in GOOD
    text = GOOD.replace(old, new)
    if "methods: [dine]" in new:
        text = text.replace("methods:\n  - kd\n  - source_only\n", "")
    message = error_of(tmp_path, text)
    assert expected in message and message.count("\n") == 0


def test_task_classes_are_checked_against_the_family(tmp_path):
    tasks = (
        "protocol: multi_task\n"
        "tasks:\n"
        "  - {name: low, source: mnist, target: mnistm, classes: [0, 1, 2, 3, 4]}\n"
        "  - {name: high, source: mnist, target: mnistm, classes: [5, 6, 7, 8, ten]}\n"
    )
    message = error_of(
        tmp_path, GOOD.replace("pairs:\n  - {source: mnist, target: mnistm}\n", "") + tasks
    )
    assert message.startswith("DIR/suite.yaml:10: tasks.1.classes.4: 'ten' is not a class of mnist")
    good = load_text(
        tmp_path,
        GOOD.replace("pairs:\n  - {source: mnist, target: mnistm}\n", "")
        + tasks.replace("ten", "9"),
    )
    (spec, *_) = expand(good)
    assert spec.setting.label == "low+high" and [t.classes for t in spec.teacher_specs] == [
        ["0", "1", "2", "3", "4"],
        ["5", "6", "7", "8", "9"],
    ]
