"""`ssl_rotation`: self-supervised domain adaptation by rotation prediction, plus KD.

Sun, Tzeng, Darrell & Efros, "Unsupervised Domain Adaptation through Self-Supervision",
arXiv 2019: beside the main task (cross-entropy on source labels), self-supervised heads on
the shared features are trained on source AND unlabelled target images, so that the shared
features align the two domains along the directions the self-supervised tasks need. The
rotation task: each image is turned by r * 90 degrees, r drawn uniformly from {0, 1, 2, 3},
and a linear head on the pooled features predicts r (4-way cross-entropy):

    L = ce_weight * CE(C(f(x_s)), y_s) + kd_weight * T^2 KL(p_t^T || p_s^T)  (source and target)
        + rotation_weight * CE(H(f(rot(x, r))), r)   (x: the source and target images joined)

`ssl_rotation` is Sun et al.'s rotation task + Hinton KD. The paper has no teacher; in this
suite's cross-domain setting the source-trained teacher is there, so, as in the suite's
other "(+ KD)" methods, the task loss is `kd`'s (Hinton et al. 2015: T=4, 0.1 * CE + 0.9 *
KD on source and target images). `kd_weight: 0, ce_weight: 1` gives Sun et al.'s rotation
method exactly (the teacher is then never run).

Defaults and their sources: the head is linear on the pooled features (the authors' code,
`uda_release/utils/SSHead.py`, `linear_on_layer3`: average pooling, then one linear layer);
one uniformly drawn rotation per image, and one mean cross-entropy over the joined source and
target half-batches (`DsetSSRotRand`, `SSTask.train_batch`); rotation weight 1 (the authors
train each task with its own optimizer at the main task's learning rate, i.e. equal weight).

Deviations: the paper's quadrant (location) and flip tasks are left out: rotation only. The
authors take turns between the main task's and each
self-supervised task's optimizer step; here both losses are summed into the loop's single
step. The head sits on the pooled embedding (for their ResNet-26, after layer 3; the same
features as the classifier's input here). For digit domains the authors' code replaces 90
and 180 degrees by a transpose and a vertical flip (6 vs 9); here true quarter turns
(`torch.rot90`) are used everywhere. The rotated copies pass through the student in one
forward of their own; images must be square (the suite's are: `image_size`).

Rotations are drawn from the method's own generator, seeded in `setup` from the run's seeded
global generator (`parts.method_seed`) and saved in checkpoints (`get_extra_state`), so the
same spec and seed draw the same rotations and a resumed run draws on where it stopped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import XdkdError
from benchmark.methods.base import Batch, Method
from benchmark.methods.kd import kd_loss
from benchmark.methods.parts import method_seed, probe_outputs
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform

ROTATIONS = 4  # 0, 90, 180, 270 degrees


def rotate(images: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Image i turned by rotations[i] quarter turns (`torch.rot90` over H, W: counter-
    clockwise on screen). Square images only: a turned batch must keep one shape."""
    height, width = images.shape[-2:]
    if height != width:
        raise XdkdError(f"rotation needs square images; these are {height}x{width}")
    turned = torch.empty_like(images)
    for quarter in range(ROTATIONS):
        index = (rotations == quarter).nonzero().squeeze(1).to(images.device)
        turned[index] = torch.rot90(images[index], quarter, dims=(2, 3))
    return turned


def rotation_loss(rotation_logits: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Sun et al. 2019: mean 4-way cross-entropy of the rotation head's logits against the
    quarter turns each image was given."""
    return F.cross_entropy(rotation_logits, rotations)


@METHODS.register("ssl_rotation")
class SSLRotation(Method):
    family = "self-supervised"
    paper = (
        "Sun et al. 2019, Unsupervised Domain Adaptation through Self-Supervision "
        "(rotation task; + KD)"
    )
    needs = Needs(teacher="logits", target_images=True)
    defaults = {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9, "rotation_weight": 1.0}
    search = {
        "temperature": log_uniform(1.0, 8.0, "Hinton et al. use 1-20; CIFAR practice 2-8"),
        "kd_weight": log_uniform(0.1, 10.0, "a decade either side of the default"),
        "rotation_weight": log_uniform(
            0.1, 10.0, "equal weight (1) in the authors' code; a decade either side"
        ),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        pooled = probe_outputs(student, batch.all_images()[:2]).pooled
        self.rotation_head = nn.Linear(pooled.shape[1], ROTATIONS).to(pooled.device)
        self.rotation_generator = torch.Generator().manual_seed(method_seed())

    def get_extra_state(self) -> dict:
        """The rotation draws' generator, saved in checkpoints so a resumed run draws on."""
        if not hasattr(self, "rotation_generator"):
            return {}
        return {"rotations": self.rotation_generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        if state:
            self.rotation_generator.set_state(state["rotations"])

    def draw_rotations(self, count: int) -> torch.Tensor:
        """One quarter-turn count per image, uniform over 0..3, from the method's generator
        (on the CPU: the same draws on any device)."""
        return torch.randint(ROTATIONS, (count,), generator=self.rotation_generator)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        images = batch.all_images()
        source_count = len(batch.source_labels)
        logits = student(images)
        rotations = self.draw_rotations(len(images))
        turned = forward_outputs(student, rotate(images, rotations)).pooled
        rotation_logits = self.rotation_head(turned)
        terms = {
            "ce": self.params["ce_weight"]
            * self.cross_entropy(logits[:source_count], batch.source_labels),
            "rotation": self.params["rotation_weight"]
            * rotation_loss(rotation_logits, rotations.to(rotation_logits.device)),
        }
        if self.params["kd_weight"] > 0:
            kd = kd_loss(logits, teacher(images), self.params["temperature"])
            terms["kd"] = self.params["kd_weight"] * kd
        return terms
