"""Pretrained backbones come from local files only: a path in the suite, or timm's default
weights already in the Hugging Face cache; otherwise one clear error, never a download."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from safetensors.torch import save_file

from benchmark.errors import XdkdError
from benchmark.models import create_backbone, input_normalisation
from benchmark.suite.config import BackboneSpec


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Empty Hugging Face and torch hub caches, and no network access for the hub."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch_home = tmp_path / "torch"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(torch_home))
    return tmp_path


def reference_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return timm.create_model("resnet18", num_classes=1000).state_dict()


def test_weights_from_a_file_are_loaded_with_a_new_head(tmp_path):
    weights = reference_weights()
    path = tmp_path / "resnet18.safetensors"
    save_file(weights, str(path))
    model = create_backbone(BackboneSpec(name="resnet18", pretrained=str(path)), num_classes=31)
    state = model.state_dict()
    assert torch.equal(state["conv1.weight"], weights["conv1.weight"])
    assert torch.equal(state["layer4.1.bn2.running_var"], weights["layer4.1.bn2.running_var"])
    assert state["fc.weight"].shape == (31, 512)  # the family's classes, not ImageNet's


def test_a_missing_weights_file_is_one_clear_error(tmp_path):
    spec = BackboneSpec(name="resnet18", pretrained=str(tmp_path / "nope.pth"))
    with pytest.raises(XdkdError) as error:
        create_backbone(spec, num_classes=10)
    assert str(error.value) == (
        f"backbone 'resnet18': no weights file {tmp_path / 'nope.pth'} (pretrained: in the "
        "suite); give the path of a .safetensors, .pth or .bin state dict, or pretrained: true "
        "for timm's default weights from the local Hugging Face cache"
    )


def test_weights_of_another_architecture_are_refused_by_name(tmp_path):
    path = tmp_path / "resnet18.safetensors"
    save_file(reference_weights(), str(path))
    with pytest.raises(XdkdError, match=r"^backbone 'resnet34': the weights in .* do not fit"):
        create_backbone(BackboneSpec(name="resnet34", pretrained=str(path)), num_classes=10)


def test_default_weights_offline_and_not_cached_name_the_files_looked_for(empty_caches):
    with pytest.raises(XdkdError) as error:
        create_backbone(BackboneSpec(name="resnet18", pretrained=True), num_classes=10)
    message = str(error.value)
    hf = empty_caches / "hf" / "models--timm--resnet18.a1_in1k"
    assert message.startswith(
        "backbone 'resnet18': pretrained weights are not on this machine (looked for "
        f"{hf / 'model.safetensors'}, {hf / 'pytorch_model.bin'}, "
        f"{empty_caches / 'torch' / 'checkpoints' / 'resnet18_a1_0-d63eafa0.pth'}); "
        "nothing is downloaded: fetch timm/resnet18.a1_in1k where there is network"
    )


def test_default_weights_come_from_the_local_hugging_face_cache(empty_caches):
    snapshot = empty_caches / "hf" / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    weights = reference_weights()
    save_file(weights, str(snapshot / "model.safetensors"))
    model = create_backbone(BackboneSpec(name="resnet18", pretrained=True), num_classes=10)
    assert torch.equal(model.state_dict()["conv1.weight"], weights["conv1.weight"])


def test_a_model_without_published_weights_says_so():
    with pytest.raises(XdkdError, match="timm has no pretrained weights for it"):
        create_backbone(BackboneSpec(name="lenet", pretrained=True), num_classes=10)


def first_layer_inputs(model: torch.nn.Module, layer: str, call) -> torch.Tensor:
    """What the named layer receives when `call(model)` runs."""
    seen = []
    handle = model.get_submodule(layer).register_forward_pre_hook(lambda _, a: seen.append(a[0]))
    call(model)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize(("name", "layer"), [("resnet18", "conv1"), ("convnext_atto", "stem.0")])
def test_a_pretrained_backbone_sees_its_own_normalisation_in_every_call(tmp_path, name, layer):
    """timm's pretrained mean/std at the first convolution, through forward and through
    forward_intermediates (the feature methods' call), also in a deep copy (EMA teachers);
    a backbone trained from scratch sees the suite's [-1, 1] images as they are."""
    torch.manual_seed(0)
    path = tmp_path / f"{name}.safetensors"
    save_file(timm.create_model(name, num_classes=1000).state_dict(), str(path))
    pretrained = create_backbone(BackboneSpec(name=name, pretrained=str(path)), num_classes=10)
    scratch = create_backbone(BackboneSpec(name=name), num_classes=10)
    images = torch.rand(2, 3, 32, 32) * 2 - 1  # the suite's [-1, 1]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = ((images + 1) / 2 - mean) / std
    for model in (pretrained, copy.deepcopy(pretrained)):
        model.eval()
        for call in (lambda m: m(images), lambda m: m.forward_intermediates(images)):
            assert torch.allclose(first_layer_inputs(model, layer, call), expected, atol=1e-5)
    assert torch.equal(first_layer_inputs(scratch.eval(), layer, lambda m: m(images)), images)
    assert input_normalisation(pretrained).endswith(
        "mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)"
    )
    assert input_normalisation(scratch) == "[-1, 1] (mean 0.5, std 0.5)"
