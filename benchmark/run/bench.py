"""`xdkd bench`: the suite's training loop against a plain PyTorch loop on the same job, side by
side in one process; evaluation throughput; a scaling table over batch and image size.

The reference loop is written the way torchdistill and DomainBed train: a torchvision
`Dataset` over host uint8 images, `transforms.v2` augmentation of the suite's strength on the
CPU (±10° rotation, ±10% scale and shift, brightness and contrast jitter), a `DataLoader` with
worker processes and pinned memory, NCHW networks, the teacher under `no_grad`, the loss read
with `.item()` every step (DomainBed's `update` returns it). Both loops start the same student
from the same weights, with the same teacher, AdamW and KD loss (Hinton et al. 2015), so their
ratio is what the suite's data path (device-resident uint8 splits, augmentation on the device)
and its fast path (`benchmark.run.fastpath`) buy. The suite's loop is timed once per fast-path
variant, each adding one setting to the one before, so each setting's share is measured.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.setting import Part
from benchmark.data.tensors import MEAN, STD, DeviceSplit
from benchmark.methods import create_method
from benchmark.methods.kd import KD, kd_loss
from benchmark.methods.teachers import Member, Teachers, freeze
from benchmark.models import create_backbone
from benchmark.provenance import device_description
from benchmark.run.cost import synchronize
from benchmark.run.evaluate import corruption_accuracy
from benchmark.run.fastpath import FastPath
from benchmark.run.train import Batches, TrainData, make_optimizer, train_step
from benchmark.seeding import generator
from benchmark.suite.config import BackboneSpec, MethodSpec, Recipe

REFERENCE_LOOP = "reference (DataLoader, v2, NCHW)"
BENCH_CORRUPTIONS = ("gaussian_noise", "defocus_blur", "fog", "contrast", "pixelate")


@dataclass(frozen=True)
class Job:
    """What is trained: a student distilled from a teacher, one source and one target domain
    (embedded ones, or None: images generated in memory)."""

    name: str
    student: str
    teacher: str
    image_size: int
    batch_size: int
    classes: int
    source: str | None = None
    target: str | None = None
    images: int = 1024  # per generated domain


JOBS = {
    "digits": Job("digits", "lenet", "resnet18", 32, 128, 10, "mnist", "mnistm"),
    "office": Job("office", "resnet18", "resnet50", 224, 32, 31, images=256),
}
SCALING_MODELS = ("resnet18", "resnet18")  # student, teacher: any image size


@dataclass(frozen=True)
class Domains:
    """Host uint8 (N, H, W, 3) images and labels of the job's source and target."""

    source_images: np.ndarray
    source_labels: np.ndarray
    target_images: np.ndarray
    target_labels: np.ndarray


def generated_images(count: int, size: int, classes: int, seed: int) -> tuple[np.ndarray, ...]:
    """Images whose class sets their mean colour, with noise: learnable, needing no files."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    palette = rng.integers(40, 216, (classes, 3))
    noise = rng.integers(-40, 40, (count, size, size, 3))
    images = np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def job_domains(job: Job, size: int | None = None) -> Domains:
    size = size or job.image_size
    if job.source is None or job.target is None:
        source = generated_images(job.images, size, job.classes, 0)
        target = generated_images(job.images, size, job.classes, 1)
        return Domains(*source, *target)
    from benchmark.data.domains import load_domain

    source, target = load_domain(job.source), load_domain(job.target)
    return Domains(
        source.train_images, source.train_labels, target.train_images, target.train_labels
    )


@dataclass
class Models:
    """The job's networks at their initial weights (both loops start from these)."""

    student: dict[str, torch.Tensor]
    teacher: dict[str, torch.Tensor]


def initial_models(job: Job) -> Models:
    torch.manual_seed(0)
    student = create_backbone(BackboneSpec(name=job.student), job.classes)
    teacher = create_backbone(BackboneSpec(name=job.teacher), job.classes)
    return Models(student.state_dict(), teacher.state_dict())


def _network(name: str, state: dict[str, torch.Tensor], classes: int, device) -> nn.Module:
    network = create_backbone(BackboneSpec(name=name), classes)
    network.load_state_dict(state)
    return network.to(device)


def timed(
    step: Callable[[], None], warmup: int, steps: int, device: torch.device
) -> tuple[float, float]:
    """(seconds of `warmup` first calls of `step`, seconds of the `steps` calls after them):
    the first holds one-off costs (DataLoader workers starting, torch.compile)."""
    started = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warm = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return warm - started, time.perf_counter() - warm


def recipe(job: Job) -> Recipe:
    return Recipe(batch_size=job.batch_size, schedule="constant")


def suite_step(
    job: Job,
    domains: Domains,
    models: Models,
    device: torch.device,
    fast: FastPath,
    compile_student: bool = False,
) -> Callable[[], None]:
    """One step of the suite's loop (`benchmark.run.train.train_step`) on the job, ready to call."""
    fast.configure_backends()
    student = fast.prepare(_network(job.student, models.student, job.classes, device))
    if compile_student:
        student.compile()
    teacher = freeze(fast.prepare(_network(job.teacher, models.teacher, job.classes, device)))
    teachers = Teachers([Member("source", teacher)], job.classes)
    size = job.image_size
    data = TrainData(
        sources=[
            Part("source", "source", DeviceSplit.from_numpy(*_pair(domains, 0), device, size))
        ],
        targets=[
            Part("target", "target", DeviceSplit.from_numpy(*_pair(domains, 1), device, size))
        ],
        num_classes=job.classes,
    )
    batches = Batches(data, job.batch_size, generator(0, device, "bench"), augment=True)
    method = create_method(MethodSpec(name="kd")).to(device)
    optimizer, scheduler = make_optimizer(
        list(student.parameters()), recipe(job), 10**6, fast.fused_adamw
    )
    student.train()

    def step() -> None:
        train_step(method, student, teachers, batches.next(0.5), optimizer, scheduler, fast, device)

    return step


def _pair(domains: Domains, index: int) -> tuple[np.ndarray, np.ndarray]:
    if index == 0:
        return domains.source_images, domains.source_labels
    return domains.target_images, domains.target_labels


class HostImages(torch.utils.data.Dataset):
    """A torchvision-style dataset: host uint8 images, a `transforms.v2` pipeline per item."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int) -> None:
        from torchvision.transforms import v2

        self.images, self.labels = images, labels
        self.transform = v2.Compose(
            [
                v2.Resize((size, size), antialias=True),
                v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)),
                v2.ColorJitter(brightness=0.1, contrast=0.2),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize([MEAN] * 3, [STD] * 3),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from torchvision import tv_tensors

        image = tv_tensors.Image(torch.from_numpy(self.images[index]).permute(2, 0, 1))
        return self.transform(image), int(self.labels[index])


def _endless(loader: torch.utils.data.DataLoader) -> Iterator:
    while True:
        yield from loader


def reference_step(
    job: Job, domains: Domains, models: Models, device: torch.device, workers: int
) -> Callable[[], None]:
    """One step of a plain PyTorch KD loop on the job (see the module docstring)."""
    FastPath().configure_backends()
    student = _network(job.student, models.student, job.classes, device).train()
    teacher = freeze(_network(job.teacher, models.teacher, job.classes, device))
    loaders = []
    for index in (0, 1):
        dataset = HostImages(*_pair(domains, index), job.image_size)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=job.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(index),
        )
        loaders.append(_endless(loader))
    source, target = loaders
    optimizer = torch.optim.AdamW(student.parameters(), lr=recipe(job).lr, weight_decay=5e-4)
    params = KD.defaults

    def step() -> None:
        source_images, source_labels = next(source)
        target_images, _ = next(target)
        images = torch.cat([source_images, target_images]).to(device, non_blocking=True)
        labels = source_labels.to(device, non_blocking=True)
        logits = student(images)
        with torch.no_grad():
            teacher_logits = teacher(images)
        ce = F.cross_entropy(logits[: len(labels)], labels)
        kd = kd_loss(logits, teacher_logits, params["temperature"])
        loss = params["ce_weight"] * ce + params["kd_weight"] * kd
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()

    return step


def fast_path_variants(device: torch.device) -> list[tuple[str, FastPath]]:
    """`off`, then one setting added at a time up to `max` (`auto`'s settings first, then
    those only `max` has on this device): what each setting buys."""
    auto, full = FastPath.for_device(device, "auto"), FastPath.for_device(device, "max")
    settings = ("channels_last", "tf32", "bf16_autocast", "fused_adamw", "cudnn_benchmark")
    in_order = [s for s in settings if getattr(auto, s)]
    in_order += [s for s in settings if getattr(full, s) and not getattr(auto, s)]
    variants, current = [("off", FastPath())], FastPath(mode="auto")
    for setting in in_order:
        mode = "auto" if getattr(auto, setting) else "max"
        current = replace(current, mode=mode, **{setting: True})
        variants.append((f"+{setting}", current))
    return variants


@dataclass
class Row:
    """One timed loop: what it is, images and steps per second, and its warm-up's seconds."""

    loop: str
    img_s: float
    steps_s: float
    warmup_s: float
    fast_path: str = ""  # the suite's loops: the mode their settings belong to (off, auto, max)


def train_rows(
    job: Job,
    device: torch.device,
    steps: int,
    warmup: int,
    workers: int,
    compile_student: bool = False,
) -> list[Row]:
    """The suite's loop per fast-path variant, then the reference loop."""
    domains, models = job_domains(job), initial_models(job)
    per_step = 2 * job.batch_size  # a source and a target batch
    builders: list[tuple[str, str, Callable[[], Callable[[], None]]]] = [
        (
            f"suite, fast path {name}",
            fast.mode,
            partial(suite_step, job, domains, models, device, fast),
        )
        for name, fast in fast_path_variants(device)
    ]
    if compile_student:
        fast = FastPath.for_device(device, "auto")
        compiled = partial(suite_step, job, domains, models, device, fast, True)
        builders.append(("suite, auto + compile", "auto", compiled))
    reference = partial(reference_step, job, domains, models, device, workers)
    builders.append((REFERENCE_LOOP, "", reference))
    rows = []
    for name, mode, build in builders:  # each built just before it is timed (backend switches)
        warm, seconds = timed(build(), warmup, steps, device)
        rows.append(Row(name, steps * per_step / seconds, steps / seconds, warm, mode))
    return rows


def eval_throughput(
    job: Job, device: torch.device, images: int, batch_size: int = 512
) -> dict[str, float]:
    """Images per second of the student and of the teacher over clean and corrupted cells
    (`BENCH_CORRUPTIONS` at severities 1-5), read as one stream, fast path `auto`."""
    from benchmark.corruptions.registry import apply_corruption

    domains, models = job_domains(job), initial_models(job)
    fast = FastPath.for_device(device, "auto")
    fast.configure_backends()
    test = DeviceSplit.from_numpy(
        domains.target_images[:images], domains.target_labels[:images], device, job.image_size
    )
    seeds = torch.arange(len(test))
    cells = {("clean", 0): test}
    for name, severity in itertools.product(BENCH_CORRUPTIONS, range(1, 6)):
        cells[name, severity] = DeviceSplit(
            apply_corruption(test.images, name, severity, seeds), test.labels
        )
    count = sum(len(split) for split in cells.values())
    out = {}
    for role, name, state in (
        ("eval_img_s", job.student, models.student),
        ("teacher_eval_img_s", job.teacher, models.teacher),
    ):
        network = fast.prepare(_network(name, state, job.classes, device)).eval()
        evaluate = partial(corruption_accuracy, network, cells, batch_size)
        _, seconds = timed(evaluate, 1, 1, device)
        out[role] = count / seconds
    return out


def scaling_rows(
    device: torch.device,
    steps: int,
    warmup: int,
    sizes: tuple[int, ...],
    batches: tuple[int, ...],
) -> list[dict[str, float | int | str]]:
    """Images per second of the suite's loop (fast path `auto`) for each image size and batch
    size, with `SCALING_MODELS`, on generated images."""
    student, teacher = SCALING_MODELS
    rows = []
    for size, batch in itertools.product(sizes, batches):
        job = Job("scaling", student, teacher, size, batch, 10, images=max(2 * batch, 64))
        fast = FastPath.for_device(device, "auto")
        step = suite_step(job, job_domains(job), initial_models(job), device, fast)
        _, seconds = timed(step, warmup, steps, device)
        rows.append(
            {
                "image_size": size,
                "batch_size": batch,
                "train_img_s": steps * 2 * batch / seconds,
                "step_ms": 1000 * seconds / steps,
            }
        )
    return rows


def summary(job: Job, device: torch.device, rows: list[Row], evaluation: dict) -> dict:
    """The JSON of one bench: the job, the device, every loop, and the keys the issue asks."""
    suite = next(r for r in rows if r.loop == "suite, fast path off")
    best = max((r for r in rows if r.fast_path), key=lambda r: r.img_s)
    default = [r for r in rows if r.fast_path == "auto" and "compile" not in r.loop]
    chosen = default[-1] if default else suite  # all of `auto`'s settings: what a run uses
    full = [r for r in rows if r.fast_path == "max"]  # all of `max`'s, where it adds any
    reference = rows[-1]
    return {
        "job": job.name,
        "student": job.student,
        "teacher": job.teacher,
        "image_size": job.image_size,
        "batch_size": job.batch_size,
        "device": device_description(device),
        "suite_train_img_s": chosen.img_s,
        "suite_train_steps_s": chosen.steps_s,
        "suite_fast_path": chosen.loop.removeprefix("suite, fast path "),
        "reference_train_img_s": reference.img_s,
        "reference_train_steps_s": reference.steps_s,
        "train_ratio": chosen.img_s / reference.img_s,
        "fast_path_gain": chosen.img_s / suite.img_s,
        "best_suite_loop": best.loop,
        **(
            {"max_fast_path": full[-1].loop, "max_train_ratio": full[-1].img_s / reference.img_s}
            if full
            else {}
        ),
        **evaluation,
        "loops": [vars(r) for r in rows],
    }
