"""`crd`: Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020.

The student's representation should carry as much information about the teacher's as it
can; CRD bounds that mutual information with noise-contrastive estimation (NCE). Pooled
features of each network pass through a linear embedding to 128-d, L2-normalised; for a
student anchor the positive is the teacher embedding of the same image, the negatives are
teacher embeddings of other images held in memory (and symmetrically with the roles
swapped). Scores are exp(<a, c> / T) / Z; NCE with m negatives drawn from noise Pn gives
-log(P_pos / (P_pos + m Pn)) - sum_k log(m Pn / (P_k + m Pn)) per anchor (eps 1e-7).
Defaults: K=16384 negatives, T=0.07, weight 0.8 on the sum of both directions, CE weight 1.

Deviations, forced by batches that carry no sample indices (CRD's bank is indexed by them):
- the memory is a FIFO queue of past embeddings (as in MoCo) holding the last min(K,
  samples seen) of them, current batch included, rather than one slot per training sample;
- every queue entry is a negative, so the noise distribution is uniform over the queue
  (m Pn = 1), and Z = (queue length) * mean score is re-estimated each step, detached,
  because the queue grows at first (CRD fixes Z once from its first batch);
- positives are the other network's current embeddings (detached, like CRD's memory
  entries), so CRD's memory momentum (0.5), which blends a sample's slot with its new
  embedding, has no counterpart and is not a parameter here.

The CRD term applies to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.adapters import probe_pair
from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import int_uniform, log_uniform


def crd_nce_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    eps: float = 1e-7,
) -> torch.Tensor:
    """NCE loss, batch mean, of anchors (B, D) against their positives (B, D) and the shared
    negatives (N, D): all N entries of a uniform noise distribution, so m * Pn = N / N = 1."""
    positive_scores = torch.exp((anchors * positives).sum(dim=1) / temperature)
    negative_scores = torch.exp(anchors @ negatives.T / temperature)
    all_scores = torch.cat([positive_scores[:, None], negative_scores], dim=1)
    partition = len(negatives) * all_scores.mean().detach()
    p_positive, p_negative = positive_scores / partition, negative_scores / partition
    log_positive = torch.log(p_positive / (p_positive + 1 + eps))
    log_negative = torch.log(1 / (p_negative + 1 + eps))
    return -(log_positive.sum() + log_negative.sum()) / len(anchors)


class FifoQueue(nn.Module):
    """The last `capacity` rows pushed, oldest overwritten first; a buffer, never trained."""

    def __init__(self, capacity: int, dim: int, device: torch.device) -> None:
        super().__init__()
        self.register_buffer("rows", torch.zeros(capacity, dim, device=device))
        self.register_buffer("pushed", torch.zeros((), dtype=torch.long, device=device))

    def push(self, rows: torch.Tensor) -> torch.Tensor:
        """Store `rows` (detached) and return every stored row."""
        capacity = len(self.rows)
        rows = rows.detach()[-capacity:]
        slots = (int(self.pushed) + torch.arange(len(rows), device=rows.device)) % capacity
        self.rows = self.rows.index_copy(0, slots, rows)  # out of place: earlier graphs keep theirs
        self.pushed += len(rows)
        return self.rows[: min(int(self.pushed), capacity)]


@METHODS.register("crd")
class CRD(Method):
    family = "feature"
    paper = "Tian et al. ICLR 2020, Contrastive Representation Distillation"
    needs = Needs(teacher="features", teachers="one")
    defaults = {
        "embed_dim": 128,
        "negatives": 16384,
        "temperature": 0.07,
        "ce_weight": 1.0,
        "weight": 0.8,
    }
    search = {
        "embed_dim": int_uniform(
            32, 512, "the embedding's width: a factor 4 either side of the paper's 128"
        ),
        "temperature": log_uniform(0.02, 0.3, "a factor 3-4 either side of the paper's 0.07"),
        "weight": log_uniform(0.08, 8.0, "a decade either side of the paper's 0.8"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        student_probe, teacher_probe = probe_pair(student, teacher, batch)
        dim, capacity = self.params["embed_dim"], self.params["negatives"]
        device = batch.source_images.device
        self.student_embed = nn.Linear(student_probe.pooled.shape[1], dim).to(device)
        self.teacher_embed = nn.Linear(teacher_probe.pooled.shape[1], dim).to(device)
        self.student_queue = FifoQueue(capacity, dim, device)
        self.teacher_queue = FifoQueue(capacity, dim, device)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        student_out, teacher_out = step.student_outputs, step.teacher_outputs
        student_z = F.normalize(self.student_embed(student_out.pooled), dim=1)
        teacher_z = F.normalize(self.teacher_embed(teacher_out.pooled), dim=1)
        temperature = self.params["temperature"]
        student_anchored = crd_nce_loss(
            student_z, teacher_z.detach(), self.teacher_queue.push(teacher_z), temperature
        )
        teacher_anchored = crd_nce_loss(
            teacher_z, student_z.detach(), self.student_queue.push(student_z), temperature
        )
        crd = student_anchored + teacher_anchored
        return {"ce": self.params["ce_weight"] * step.source_ce, "crd": self.params["weight"] * crd}
