from pathlib import Path

import pytest

from benchmark.config import RunSpec, load_suite
from benchmark.errors import XdkdError
from benchmark.harness import expand, method_protocols

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
    assert len(specs) == len(suite.pairs) * (1 + 2 * len(suite.students))
    teacher_rows = [s for s in specs if s.method.name == "teacher"]
    assert all(s.student == s.teacher for s in teacher_rows)


def test_unknown_method_names_file_line_and_field(tmp_path):
    message = error_of(tmp_path, GOOD.replace("  - source_only", "  - sorce_only"))
    assert message == (
        "DIR/suite.yaml:8: methods.1.name: unknown method 'sorce_only'; "
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


def test_malformed_yaml_names_the_line(tmp_path):
    assert error_of(tmp_path, GOOD + "seeds: [0, 1\n").startswith("DIR/suite.yaml:")
    assert "not valid YAML" in error_of(tmp_path, "name: [\n")


def test_overrides_apply_yaml_values_at_dotted_keys(tmp_path):
    suite = load_text(tmp_path, GOOD, ["seeds=[1,2]", "student_recipe.epochs=3"])
    assert suite.seeds == [1, 2] and suite.student_recipe.epochs == 3
    assert "is not key=value" in error_of(tmp_path, GOOD, ["seeds"])


def test_spec_hash_is_stable_and_ignores_the_suite_name(tmp_path):
    spec = expand(load_text(tmp_path, GOOD))[0]
    renamed = RunSpec.model_validate({**spec.model_dump(), "suite": "other"})
    assert spec.key == renamed.key and len(spec.key) == 16
    changed = RunSpec.model_validate({**spec.model_dump(), "seed": 5})
    assert changed.key != spec.key
    assert changed.teacher_spec.key != spec.teacher_spec.key


def test_a_protocol_a_method_cannot_run_under_is_refused_at_expansion(tmp_path, monkeypatch):
    from benchmark.methods.kd import KD

    monkeypatch.setattr(KD, "protocols", ("uda",))
    suite = load_text(tmp_path, GOOD + "protocol: zero_shot\n")
    with pytest.raises(XdkdError, match="method 'kd' cannot run under protocol 'zero_shot'"):
        expand(suite)
    both = load_text(tmp_path, GOOD + "protocol: [uda, zero_shot]\n")
    runnable, notes = method_protocols(both)
    assert runnable == {"kd": ["uda"], "source_only": ["uda", "zero_shot"]}
    assert notes == ["method 'kd' skipped under protocol 'zero_shot' (it supports uda)"]
    assert sorted(s.protocol for s in expand(both)) == ["uda", "uda", "zero_shot"]
