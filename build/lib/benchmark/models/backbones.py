"""One door for every backbone: `create_backbone(spec, num_classes)` over timm's registry.

Small inputs: timm's ImageNet architectures are used unchanged (so their pretrained weights
still apply) and see the suite's image size as it is. At 32 px an ImageNet stem shrinks the
image to 1x1 by the last stage (resnet18: 16, 8, 4, 2, 1), which is enough for digits; a ViT
is given the size and a patch size through the spec's kwargs (`img_size: 32, patch_size: 4`).

Pretrained weights never come from the network: `pretrained: true` takes timm's default
weights for the model from the local Hugging Face cache (or torch hub's checkpoint folder),
`pretrained: /path/to/weights.safetensors` (or .pth/.bin) takes a file; when neither is
there the error names every file looked for, at once, instead of hanging on a download.
The classifier is always new (`num_classes` of the domain family).

Inputs: every network is fed the suite's [-1, 1] images (`benchmark.data.tensors.normalize`),
which is what a network trained from scratch here learns on. A pretrained backbone learnt on
its own normalisation, so its first convolution is given the images renormalised with the mean
and std of timm's pretrained config for the model (ImageNet's for most), whichever network
(teacher or student) it is and whichever call (`forward`, `forward_intermediates`) feeds it.
`input_normalisation(model)` says which a network got; the records state it.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import timm
import torch
from torch import nn

from benchmark.data.tensors import MEAN, STD
from benchmark.errors import XdkdError
from benchmark.plugins import load_plugins
from benchmark.registry import unknown_name_message
from benchmark.suite.config import BackboneSpec

DIGIT_BACKBONES = ("lenet", "dtn")


def backbone_names(pattern: str = "*") -> list[str]:
    """Every backbone name matching a glob pattern: the digit CNNs first, then timm's (with
    the ones plug-ins register)."""
    load_plugins()
    digit = [name for name in DIGIT_BACKBONES if fnmatch.fnmatch(name, pattern)]
    others = [name for name in timm.list_models(pattern) if name not in DIGIT_BACKBONES]
    return digit + others


def check_backbone_name(name: str) -> str:
    load_plugins()
    if not timm.is_model(name):
        raise XdkdError(unknown_name_message("backbone", name, timm.list_models()))
    return name


HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def local_weight_candidates(name: str) -> list[Path]:
    """Where timm's default weights for `name` would be on this machine, most likely first:
    the Hugging Face cache (HF_HUB_CACHE / HF_HOME) and torch hub's checkpoints folder."""
    from huggingface_hub import constants, try_to_load_from_cache

    config = timm.models.get_pretrained_cfg(name)
    if config is None:
        return []
    candidates = []
    if config.hf_hub_id:
        repo = config.hf_hub_id.split("@")[0]
        for filename in HF_WEIGHT_FILES:
            cached = try_to_load_from_cache(repo, filename)
            candidates.append(
                Path(cached)
                if isinstance(cached, str)
                else Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / filename
            )
    if config.url:
        candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(config.url))
    return candidates


def pretrained_file(spec: BackboneSpec) -> Path:
    """The local weights file for a spec with `pretrained` set, or a clear error."""
    if isinstance(spec.pretrained, str):
        path = Path(spec.pretrained).expanduser()
        if not path.is_file():
            raise XdkdError(
                f"backbone '{spec.name}': no weights file {path} (pretrained: in the suite); "
                "give the path of a .safetensors, .pth or .bin state dict, or pretrained: true "
                "for timm's default weights from the local Hugging Face cache"
            )
        return path
    candidates = local_weight_candidates(spec.name)
    for path in candidates:
        if path.is_file():
            return path
    config = timm.models.get_pretrained_cfg(spec.name)
    source = (config.hf_hub_id or config.url) if config else None
    if source is None:
        raise XdkdError(
            f"backbone '{spec.name}': timm has no pretrained weights for it; set "
            "pretrained: false or give a weights file (pretrained: /path/to/weights.safetensors)"
        )
    looked = ", ".join(str(path) for path in candidates)
    raise XdkdError(
        f"backbone '{spec.name}': pretrained weights are not on this machine (looked for "
        f"{looked}); nothing is downloaded: fetch {source} where there is network (e.g. "
        f"huggingface-cli download {source}) into that cache, or give a file with "
        "pretrained: /path/to/weights.safetensors"
    )


def create_backbone(spec: BackboneSpec, num_classes: int) -> nn.Module:
    """A timm model with a fresh `num_classes` head, randomly initialised or from local
    pretrained weights (see the module docstring)."""
    check_backbone_name(spec.name)
    try:
        model = timm.create_model(
            spec.name, pretrained=False, num_classes=num_classes, **spec.kwargs
        )
    except TypeError as error:
        raise XdkdError(
            f"backbone '{spec.name}' rejected its kwargs {sorted(spec.kwargs)}: {error}"
        ) from None
    if spec.pretrained:
        load_pretrained(model, spec.name, pretrained_file(spec))
        renormalise_inputs(model)
    return model


SUITE_NORMALISATION = f"[-1, 1] (mean {MEAN:g}, std {STD:g})"


def input_normalisation(model: nn.Module) -> str:
    """How the images reach the network's first layer, as the records state it."""
    return getattr(model, "xdkd_input_normalisation", SUITE_NORMALISATION)


def renormalise_inputs(model: nn.Module) -> None:
    """Feed the first convolution (timm's `first_conv`) the images in the normalisation the
    pretrained weights learnt on: x in [-1, 1] is mapped to (x * STD + MEAN - mean) / std per
    channel. A hook on that layer, not on the model, so that `forward_intermediates` (which
    feature methods call) sees it as `forward` does; exact at the borders, unlike folding the
    map into the weights, since padding stays zero after the map."""
    config = model.pretrained_cfg
    mean = torch.tensor(config["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(config["std"], dtype=torch.float32).view(1, -1, 1, 1)
    scale, shift = STD / std, (MEAN - mean) / std

    def renormalise(_: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        images = args[0]
        return (images * scale.to(images) + shift.to(images), *args[1:])

    model.get_submodule(config["first_conv"]).register_forward_pre_hook(renormalise)
    model.xdkd_input_normalisation = (
        f"timm's pretrained config ({config.get('architecture')}.{config.get('tag')}): "
        f"mean {tuple(config['mean'])}, std {tuple(config['std'])}"
    )


def load_pretrained(model: nn.Module, name: str, path: Path) -> None:
    """Every tensor but the classifier's must come from the file, with its shape: timm's own
    loader relaxes to a partial load when the head changes, which would quietly accept
    another architecture's weights."""
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)

    def in_head(key: str) -> bool:
        return any(key.startswith(head + ".") for head in heads)

    state = {k: v for k, v in timm.models.load_state_dict(str(path)).items() if not in_head(k)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise XdkdError(
            f"backbone '{name}': the weights in {path} do not fit it: "
            f"{[line.strip() for line in str(error).splitlines() if line.strip()][-1]}"
        ) from None
    missing = [key for key in missing if not in_head(key)]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise XdkdError(
            f"backbone '{name}': the weights in {path} do not fit it: {len(missing)} of its "
            f"tensors missing, {len(unexpected)} unknown (e.g. {example}); are they another "
            "architecture's?"
        )
