"""`sskd`: Xu, Liu, Li & Loy, "Knowledge Distillation Meets Self-Supervision", ECCV 2020.

Each image x_i (i = 1..N) comes with three transformed copies, its rotations by 90, 180 and
270 degrees (the paper's default transformation). The self-supervision signal is contrastive:
row j of the similarity matrix A (3N x N) holds the cosine similarity between the embedding of
transformed copy j and of every normal image, A_ji = cos(phi(t(x)_j), phi(x_i)), and the
teacher's row distribution softmax(A_t / tau) is distilled into the student's:

    L = 0.1 CE(y, z_s(x)) + 0.9 T^2 KL(p_t(x) || p_s(x))                      (normal images)
        + 2.7 T^2 KL(p_t(t(x)) || p_s(t(x)))       (transformed images, kept rows, "tf")
        + 10 tau^2 KL(softmax(A_t / tau) || softmax(A_s / tau))      (kept rows, "ss")

with T = 4 (KD and tf) and tau = 0.5 (SS). Error filtering: where the teacher is wrong its
knowledge is not all passed on. For the tf term a transformed copy's teacher prediction is
wrong when its true class is not the top class; for the SS term a row is wrong when the
copy's own normal image is not the most similar. Every correct row is kept, and of the wrong
rows the fraction `tf_keep_ratio` (1.0) / `ss_keep_ratio` (0.75), those whose true class or
image ranks highest in the teacher's row; each KL is a mean over its kept rows.

Defaults and their source: the authors' `student.py` (github.com/xuguodong03/SSKD): weights
`--ce-weight 0.1 --kd-weight 0.9 --tf-weight 2.7 --ss-weight 10.0`, temperatures `--kd-T 4
--tf-T 4 --ss-T 0.5`, keep ratios `--ratio-tf 1.0 --ratio-ss 0.75`; the student's embedding
phi is its pooled features through the authors' projection head (`wrapper.py`: Linear(d, d),
ReLU, Linear(d, d)), built here from a probe forward's width.

Deviations (what the suite allows): the paper first trains a projection head on the frozen
teacher (the same contrastive task, `--t-epoch 60`) and takes the teacher's phi from it. Here
the teacher is frozen and shared by every method of a suite, so its phi is its pooled
features themselves, with no head (cosine similarity is taken on them directly); the
student's head stays, trained by the SS term. In the cross-domain setting the N images are
the source images and the unlabelled target images together (one similarity matrix over
both domains); CE is on the source rows, KD, tf and SS on all. The tf term's error filter
needs labels: it ranks the source rows' copies by their true class; target copies have no
label and count as correct (always kept), which is exact at the default ratio 1.0 (every row
is kept). Ties in a rank count as the better rank (the number of strictly larger entries),
and among equally ranked wrong rows the earlier ones are kept (a stable sort): the authors'
`argsort` leaves both unspecified. The copies are laid out rotation by rotation (row
j's normal image is j mod N), not image by image as in the authors' code; the kept rows and
the loss are the same. Images must be square (the suite's are).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import XdkdError
from benchmark.methods.base import Batch, Method, class_indices
from benchmark.methods.kd import kd_loss
from benchmark.methods.parts import probe_outputs
from benchmark.methods.registry import METHODS
from benchmark.methods.ssl_rotation import ROTATIONS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform, uniform

UNLABELLED = -1


def with_rotations(images: torch.Tensor) -> torch.Tensor:
    """The N images, then their 90, 180 and 270 degree rotations: 4N images, copy j of the
    3N transformed ones being a rotation of image j mod N."""
    height, width = images.shape[-2:]
    if height != width:
        raise XdkdError(f"rotation needs square images; these are {height}x{width}")
    turned = [torch.rot90(images, quarter, dims=(2, 3)) for quarter in range(1, ROTATIONS)]
    return torch.cat([images, *turned])


def similarity_matrix(normal: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    """A (M x N): A_ji = cos(transformed_j, normal_i), the SS module's logits."""
    return F.normalize(transformed, dim=1, eps=1e-8) @ F.normalize(normal, dim=1, eps=1e-8).T


def true_rank(scores: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per row, the rank of the true column among the row's scores (0: the top one): the
    number of entries strictly larger than the true one."""
    chosen = scores.gather(1, truth.clamp_min(0).unsqueeze(1))
    return (scores > chosen).sum(1)


def kept_rows(rank: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """SSKD's error filter: a 0/1 mask keeping every correct row (rank 0) and, of the W wrong
    ones, floor(W * keep_ratio), those of the smallest rank (earlier rows first among equal
    ranks). Computed on the device, with no host synchronisation."""
    wrong = (rank > 0).sum()
    limit = (len(rank) - wrong) + torch.floor(wrong.to(torch.float64) * keep_ratio).long()
    order = torch.sort(rank, stable=True).indices
    position = torch.empty_like(order)
    position[order] = torch.arange(len(rank), device=rank.device)
    return (position < limit).to(torch.float64)


def masked_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, temperature
) -> torch.Tensor:
    """T^2 KL(softmax(t / T) || softmax(s / T)), averaged over the rows the mask keeps."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    per_row = (log_teacher.exp() * (log_teacher - log_student)).sum(1)
    mask = mask.to(per_row.dtype)
    return (per_row * mask).sum() / mask.sum().clamp_min(1) * temperature**2


def sskd_ss_loss(
    student_normal: torch.Tensor,
    student_transformed: torch.Tensor,
    teacher_normal: torch.Tensor,
    teacher_transformed: torch.Tensor,
    temperature: float,
    keep_ratio: float,
) -> torch.Tensor:
    """The SS module: tau^2 KL between the teacher's and the student's softened similarity
    rows (transformed copy j against every normal image; copy j belongs to image j mod N),
    over the rows the teacher's error filter keeps."""
    student_similarity = similarity_matrix(student_normal, student_transformed)
    with torch.no_grad():
        teacher_similarity = similarity_matrix(teacher_normal, teacher_transformed)
        own = torch.arange(len(teacher_transformed), device=teacher_similarity.device)
        own = own % len(teacher_normal)
        mask = kept_rows(true_rank(teacher_similarity, own), keep_ratio)
    return masked_kl(student_similarity, teacher_similarity, mask, temperature)


def sskd_tf_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    keep_ratio: float,
) -> torch.Tensor:
    """KD on the transformed copies, over the rows the error filter keeps: a row is wrong
    where the teacher's top class is not its label; rows labelled -1 (target images) count
    as correct."""
    with torch.no_grad():
        rank = true_rank(teacher_logits, labels) * (labels != UNLABELLED)
        mask = kept_rows(rank, keep_ratio)
    return masked_kl(student_logits, teacher_logits, mask, temperature)


@METHODS.register("sskd")
class SSKD(Method):
    family = "self-supervised"
    paper = "Xu et al. ECCV 2020, Knowledge Distillation Meets Self-Supervision"
    needs = Needs(teacher="features", teachers="one")
    defaults = {
        "ce_weight": 0.1,
        "kd_weight": 0.9,
        "tf_weight": 2.7,
        "ss_weight": 10.0,
        "temperature": 4.0,
        "tf_temperature": 4.0,
        "ss_temperature": 0.5,
        "tf_keep_ratio": 1.0,
        "ss_keep_ratio": 0.75,
    }
    search = {
        "kd_weight": log_uniform(0.1, 10.0, "a decade either side of the default"),
        "tf_weight": log_uniform(0.27, 27.0, "a decade either side of the authors' 2.7"),
        "ss_weight": log_uniform(1.0, 100.0, "a decade either side of the authors' 10"),
        "temperature": log_uniform(1.0, 8.0, "Hinton et al. use 1-20; CIFAR practice 2-8"),
        "tf_temperature": log_uniform(1.0, 8.0, "the authors' 4, as KD's; KD practice 1-8"),
        "ss_temperature": log_uniform(
            0.1, 2.0, "the similarities' softmax: around the authors' 0.5"
        ),
        "tf_keep_ratio": uniform(0.5, 1.0, "the wrong rows kept: the authors' 1.0 (tf), 0.75 (ss)"),
        "ss_keep_ratio": uniform(0.5, 1.0, "the wrong rows kept: the authors' 1.0 (tf), 0.75 (ss)"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        width = probe_outputs(student, batch.all_images()[:2]).pooled.shape[1]
        self.projection = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, width)
        ).to(batch.source_images.device)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        images = batch.all_images()
        count, source_count = len(images), len(batch.source_labels)
        views = with_rotations(images)
        outputs = forward_outputs(student, views)
        teacher_outputs = teacher.outputs(views)
        logits, teacher_logits = outputs.logits, teacher_outputs.logits
        embeddings = self.projection(outputs.pooled)
        teacher_pooled = teacher_outputs.pooled
        labels = torch.full((count,), UNLABELLED, dtype=torch.long, device=logits.device)
        labels[:source_count] = class_indices(batch.source_labels)
        params = self.params
        ce = self.cross_entropy(logits[:source_count], batch.source_labels)
        kd = kd_loss(logits[:count], teacher_logits[:count], params["temperature"])
        tf = sskd_tf_loss(
            logits[count:],
            teacher_logits[count:],
            labels.repeat(ROTATIONS - 1),
            params["tf_temperature"],
            params["tf_keep_ratio"],
        )
        ss = sskd_ss_loss(
            embeddings[:count],
            embeddings[count:],
            teacher_pooled[:count],
            teacher_pooled[count:],
            params["ss_temperature"],
            params["ss_keep_ratio"],
        )
        return {
            "ce": params["ce_weight"] * ce,
            "kd": params["kd_weight"] * kd,
            "tf": params["tf_weight"] * tf,
            "ss": params["ss_weight"] * ss,
        }
