import pytest

from benchmark.errors import XdkdError
from benchmark.methods import METHODS
from benchmark.models import backbone_names, create_backbone
from benchmark.registry import Registry, UnknownNameError
from benchmark.suite.config import BackboneSpec
from benchmark.suite.families import domain_info


def test_unknown_name_lists_valid_names_and_closest_match():
    registry: Registry[int] = Registry("colour")
    for name, value in [("red", 1), ("green", 2), ("blue", 3)]:
        registry.register(name)(value)
    with pytest.raises(UnknownNameError) as error:
        registry.get("gren")
    expected = "unknown colour 'gren'; did you mean 'green'? valid: blue, green, red"
    assert str(error.value) == expected


def test_unknown_name_without_close_match_has_no_hint():
    registry: Registry[int] = Registry("colour")
    registry.register("red")(1)
    assert str(pytest.raises(UnknownNameError, registry.get, "zzz").value) == (
        "unknown colour 'zzz' valid: red"
    )


def test_registering_a_name_twice_fails():
    registry: Registry[int] = Registry("colour")
    registry.register("red")(1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("red")(2)


def test_unknown_method_domain_backbone_name_the_closest_match():
    assert "did you mean 'kd'?" in str(pytest.raises(XdkdError, METHODS.get, "kdd").value)
    assert "did you mean 'mnistm'?" in str(pytest.raises(XdkdError, domain_info, "mnist_m").value)
    with pytest.raises(XdkdError, match="unknown backbone 'resnet181'; did you mean 'resnet18"):
        create_backbone(BackboneSpec.model_construct(name="resnet181", kwargs={}), 10)


def test_digit_cnns_are_timm_models_with_the_feature_interface():
    assert backbone_names("lenet") == ["lenet"]
    assert {"dtn", "lenet", "resnet18"} <= set(backbone_names())
    model = create_backbone(BackboneSpec(name="dtn"), num_classes=7)
    final, stages = model.forward_intermediates(__import__("torch").zeros(2, 3, 32, 32))
    assert [s.shape[1] for s in stages] == [64, 128, 256]
    assert model.get_classifier().out_features == 7


def test_backbone_kwargs_it_does_not_take_give_one_line():
    with pytest.raises(XdkdError, match="backbone 'lenet' rejected its kwargs \\['depth'\\]"):
        create_backbone(BackboneSpec(name="lenet", kwargs={"depth": 3}), 10)


ISSUE_14_METHODS = {
    "ssl_rotation": "self-supervised",
    "sskd": "self-supervised",
    "adda_kd": "generative-adversarial",
    "dafl": "generative-adversarial",
    "zskt": "generative-adversarial",
    "meta_dmoe": "meta-learning",
    "ft": "feature",
    "ab": "feature",
    "nst": "feature",
    "cc": "feature",
    "reviewkd": "feature",
    "mlkd": "logit",
}


def test_the_listings_name_each_transfer_family_with_needs_and_paper(capsys):
    from benchmark.cli import main
    from benchmark.methods.base import FAMILIES

    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, family in ISSUE_14_METHODS.items():
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{name} "))
        assert lines[start].split()[:2] == [name, family] and family in FAMILIES
        assert "needs: " in lines[start] and lines[start + 2].strip()  # the paper line
    assert "no real image: makes its own (data_free)" in _line(lines, "dafl")
    assert "adapts at test time" in _line(lines, "meta_dmoe")
    assert main(["protocols"]) == 0
    protocols = capsys.readouterr().out
    assert "real images: none (the teacher only)" in protocols.split("data_free:")[1]


def _line(lines: list[str], name: str) -> str:
    return next(line for line in lines if line.startswith(f"{name} "))
