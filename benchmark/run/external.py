"""A model trained outside the suite, evaluated under the suite's protocol: the same metrics
block a run record has (target accuracy, ECE and NLL; source accuracy when its source is
named; held-out domains; corruptions; cost), as a record `xdkd report` reads beside the
suite's runs, marked external (`RunRecord.external`).

The record is a normal `RunRecord`: its spec names the setting the model is scored in (a
source, when given, puts its row in that pair's column), the backbone as teacher and
student, and the method `external` labelled by the model's name. Evaluation is the suite's
own, `evaluate_run` with no teachers and no training, on the device and fast path a run
would use, so a suite's saved student evaluated here gets its record's numbers exactly.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from benchmark.errors import XdkdError
from benchmark.files import sha256_file
from benchmark.run.fastpath import FastPath
from benchmark.suite.config import (
    SAFE_NAME,
    BackboneSpec,
    EvalSpec,
    MethodSpec,
    ProtocolSpec,
    Suite,
    safe_name,
)
from benchmark.suite.specs import RunRecord, RunSpec, Setting

METHOD = "external"
CHECKPOINT_KEYS = ("state_dict", "model")  # where checkpoints usually keep the weights
MIN_IMAGE_SIZE = 8  # a suite's smallest image_size (config.Suite)


def _suite_default(field: str) -> Any:
    """A suite's default for `field`, so an external run is specified like a suite's run."""
    return Suite.model_fields[field].get_default(call_default_factory=True)


def label_of(name: str | None, weights: Path | None, backbone: str) -> str:
    """The row label: `name`, else the weights file's stem (else the backbone) made usable
    as a name (other characters become `_`)."""
    if name is not None:
        try:
            return safe_name(name, "--name")
        except ValueError as error:
            raise XdkdError(str(error)) from None
    stem = weights.stem if weights is not None else backbone
    usable = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-")[:64]
    return usable if SAFE_NAME.match(usable) else "model"


def protocol_spec(protocol: str | dict[str, Any]) -> ProtocolSpec:
    """A protocol by name (`uda`) or with parameters (`{name: few_shot, shots: 5}`)."""
    try:
        spec = ProtocolSpec.model_validate(protocol)
    except ValidationError as error:
        from benchmark.suite.yaml_text import first_problem

        raise XdkdError(f"--protocol: {first_problem(error)[1]}") from None
    if spec.name == "multi_task":
        raise XdkdError("--protocol multi_task scores tasks; evaluate-model scores a domain")
    return spec


def external_spec(
    backbone: str,
    domain: str,
    source: str | None,
    label: str,
    image_size: int,
    suite: str,
    protocol: str | dict[str, Any],
) -> RunSpec:
    """The spec of the setting the model is scored in; the rest are a suite's defaults."""
    from benchmark.suite.families import domain_info

    family = domain_info(domain).family
    if source is not None and domain_info(source).family != family:
        raise XdkdError(
            f"--source {source} ({domain_info(source).family}) and --domain {domain} ({family}) "
            "are of different families; their classes differ"
        )
    if image_size < MIN_IMAGE_SIZE:
        raise XdkdError(f"--image-size {image_size}: give {MIN_IMAGE_SIZE} or more")
    try:
        suite = safe_name(suite, "--suite")
    except ValueError as error:
        raise XdkdError(str(error)) from None
    model = BackboneSpec(name=backbone)
    return RunSpec(
        suite=suite,
        setting=Setting(
            protocol=protocol_spec(protocol),
            sources=[source] if source is not None else [],
            targets=[domain],
        ),
        teacher=model,
        student=model,
        method=MethodSpec(name=METHOD, label=label),
        seed=0,
        image_size=image_size,
        **{
            field: _suite_default(field)
            for field in (
                "source_validation",
                "target_validation",
                "teacher_recipe",
                "student_recipe",
            )
        },
    )


def evaluation_spec(
    corruptions: list[str] | None, corruption_images: int | None, family_heldout: bool
) -> EvalSpec:
    """The suite's evaluation defaults with these corruptions; held-out domains: the
    family's other domains of the target's provenance, or none."""
    from benchmark.run.robustness import resolve_corruptions

    defaults = EvalSpec()
    corruptions = defaults.corruptions if corruptions is None else list(corruptions)
    images = defaults.corruption_images if corruption_images is None else corruption_images
    if images < 0:
        raise XdkdError(f"--corruption-images {images}: give 0 (no robustness) or more")
    resolve_corruptions(corruptions)  # an unknown name fails here, before anything loads
    return EvalSpec(
        corruptions=corruptions,
        corruption_images=images,
        heldout=None if family_heldout else [],
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a .safetensors file or a torch file (tensors and plain types only),
    unwrapped from a checkpoint that keeps it under `state_dict` or `model`."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise XdkdError(f"--weights {path} {what}; give a .pt, .pth or .safetensors state dict")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(path)
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise several kinds for a bad file
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise XdkdError(
            f"--weights {path} cannot be read as a state dict ({reason}); save the model's "
            "state_dict() with torch.save or safetensors"
        ) from None
    for key in CHECKPOINT_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not (
        isinstance(loaded, dict)
        and loaded
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())
    ):
        raise XdkdError(
            f"--weights {path} holds a {type(loaded).__name__}, not a state dict (tensor names "
            f"to tensors, or a checkpoint holding one under {' or '.join(CHECKPOINT_KEYS)})"
        )
    return loaded


def load_weights(
    model: nn.Module, state: dict[str, torch.Tensor], path: Path, backbone: str, classes: int
) -> None:
    """Every tensor of the model from the file, with its shape, and nothing else: a partial
    load would score a model that is not the checkpoint."""
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    fits = f"{path} does not fit backbone '{backbone}' built with {classes} classes"
    if missing or unexpected:
        parts = [f"{len(missing)} of its tensors missing (first: {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (first: {unexpected[0]})"] if unexpected else []
        raise XdkdError(f"{fits}: {', '.join(parts)}; is it another architecture's?")
    for key, tensor in state.items():
        if tensor.shape != own[key].shape:
            raise XdkdError(
                f"{fits}: {key} is {list(tensor.shape)} in the file, {list(own[key].shape)} "
                "in the model"
            )
    model.load_state_dict(state)


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of a state dict's names, dtypes, shapes and values: a model given as a module
    has no file to hash."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_outputs(network: nn.Module, classes: int, image_size: int, device: torch.device) -> None:
    """A module's logits must number the domain family's classes."""
    with torch.inference_mode():
        logits = network.eval()(torch.zeros(2, 3, image_size, image_size, device=device))
    if logits.ndim != 2 or logits.shape[1] != classes:
        raise XdkdError(
            f"the model gives outputs of shape {list(logits.shape)} for a batch of 2; the "
            f"domain's family has {classes} classes: it needs logits of shape [2, {classes}]"
        )


def external_key(spec: RunSpec, sha256: str) -> str:
    """The record's key: the spec's with the weights' digest, so two checkpoints scored in
    the same setting never share a record (one checkpoint scored again replaces its own)."""
    payload = json.dumps({"spec": spec.key, "weights_sha256": sha256}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def scored_network(
    model: nn.Module | Path, spec: RunSpec, fast: FastPath, device: torch.device
) -> tuple[nn.Module, str]:
    """(the network to score: on the device, in the fast path's layout, in eval mode; the
    sha256 of its weights file, or of its state dict for a module, which is left as it is)."""
    from benchmark.data.setting import class_space
    from benchmark.models import create_backbone

    classes = len(class_space(spec.setting))
    if isinstance(model, nn.Module):
        network = fast.prepare(copy.deepcopy(model).to(device))
        check_outputs(network, classes, spec.image_size, device)
        return network.eval(), state_sha256(model.state_dict())
    state = read_state_dict(model)
    network = fast.prepare(create_backbone(spec.student, classes).to(device))
    load_weights(network, state, model, spec.student.name, classes)
    return network.eval(), sha256_file(model)


def evaluate_model(
    model: nn.Module | Path | str,
    *,
    backbone: str | None,
    domain: str,
    source: str | None = None,
    family_heldout: bool = False,
    corruptions: list[str] | None = None,
    corruption_images: int | None = None,
    image_size: int | None = None,
    name: str | None = None,
    suite: str = "external",
    protocol: str | dict[str, Any] = "uda",
    device: str = "auto",
) -> RunRecord:
    """The external record of a model: a weights file (`backbone` names the architecture to
    build, with a fresh head of the family's classes) or a module already built (`backbone`
    names it in the record; default its class name). Unset corruption settings and image size
    are a suite's defaults. Nothing is written (`write_external`)."""
    from benchmark.data.provider import SplitProvider
    from benchmark.provenance import resolve_device
    from benchmark.run.evaluation import evaluate_run

    given = model if isinstance(model, nn.Module) else None
    weights = None if given is not None else Path(model).expanduser()
    if backbone is None:
        if given is None:
            raise XdkdError("--backbone is needed to build the model its weights are for")
        backbone = type(given).__name__.lower()
    size = _suite_default("image_size") if image_size is None else image_size
    label = label_of(name, weights, backbone)
    spec = external_spec(backbone, domain, source, label, size, suite, protocol)
    evaluation = evaluation_spec(corruptions, corruption_images, family_heldout)
    target = resolve_device(device)
    fast = FastPath.for_device(target)
    fast.configure_backends()
    network, digest = scored_network(weights if given is None else given, spec, fast, target)
    provider = SplitProvider(target)
    with fast.autocast(target):
        record = evaluate_run(spec, evaluation, network, None, {}, [], provider, target, fast)
    saw = {k: record.saw[k] for k in ("protocol", "sources", "targets", "classes", "teachers")}
    return record.model_copy(
        update={
            "key": external_key(spec, digest),
            "saw": saw | {"trained": "outside the suite: what it trained on is not known"},
            "external": {
                "weights": str(weights.resolve()) if weights is not None else None,
                "sha256": digest,
                "sha256_of": "file" if weights is not None else "state_dict",
                "backbone": backbone,
            },
        }
    )


def write_external(record: RunRecord, out: Path) -> Path:
    """Write the record into the runs directory `out` (atomically, as a run's); its path."""
    from benchmark.store import RECORD, RunStore

    store = RunStore(out)
    store.write_record(record)
    return store.run_dir(record.key) / RECORD
