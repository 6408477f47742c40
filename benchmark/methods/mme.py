"""`mme`: Saito, Kim, Sclaroff, Darrell & Saenko, "Semi-supervised Domain Adaptation via
Minimax Entropy", ICCV 2019.

Few-shot adaptation: labelled source, k labelled target images per class, unlabelled target.
A cosine classifier's weight vectors act as class prototypes; trained on labelled data they
sit near the source features, because source labels dominate. MME plays a minimax game on the
entropy of the unlabelled target predictions: the classifier maximises it, which moves each
prototype towards the target features (they become representative of the target), and the
feature extractor minimises it, which clusters the target features around the moved
prototypes. The few labelled target images anchor the prototypes to the right classes.

Per step: logits = normalize(f) @ normalize(W).T / T on the student's pooled features f,
with the student's own classifier rows W as the prototypes;
ce_weight * CE(logits, y) on labelled source and labelled target images together, plus
-entropy_weight * mean_i H(softmax(logits_i)) on the unlabelled target images, whose features
pass through gradient reversal (scale 1) into the classifier: the classifier receives the
gradient of -lambda H (entropy maximised), the features that of +lambda H (minimised).
Defaults, the paper's: T=0.05, lambda=0.1, CE weight 1.

The suite scores the student's plain forward, W f + b, whose argmax equals the cosine
classifier's when W's rows have unit norm and b = 0 (the scale of f does not change an
argmax). So at the start of every step the head's rows are renormalised in place and its
bias zeroed (no gradient reaches b); after the last step this holds up to that step's update.

Deviations: the paper's code takes two optimiser steps per iteration (CE, then the entropy
term) and runs labelled and unlabelled images through the network separately; here the
terms are summed into the loop's one step and all images share one forward (one BatchNorm
pass). Its entropy uses log(p + 1e-5); here the exact log-softmax. The paper's few-shot
validation split and early stopping are the suite's selection rules' business.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method, join_labels
from benchmark.methods.parts import reverse_gradient
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


def cosine_logits(
    features: torch.Tensor, prototypes: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Cosine similarity of each feature to each class prototype, divided by T."""
    return F.normalize(features, dim=1) @ F.normalize(prototypes, dim=1).T / temperature


def minimax_entropy_loss(
    features: torch.Tensor, prototypes: torch.Tensor, temperature: float, entropy_weight: float
) -> torch.Tensor:
    """-lambda * mean entropy of the cosine classifier's predictions: minimised by the
    classifier (entropy up); the features, behind gradient reversal, push entropy down."""
    log_probs = F.log_softmax(cosine_logits(features, prototypes, temperature), dim=1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=1)
    return -entropy_weight * entropy.mean()


@torch.no_grad()
def unit_prototypes(head: nn.Linear) -> None:
    """Rows of the head's weight to unit norm, bias to zero: the plain forward then predicts
    what the cosine classifier predicts."""
    head.weight.div_(head.weight.norm(dim=1, keepdim=True).clamp_min(1e-12))
    if head.bias is not None:
        head.bias.zero_()


@METHODS.register("mme")
class MME(Method):
    family = "cross-domain"
    paper = "Saito et al. ICCV 2019, Semi-supervised Domain Adaptation via Minimax Entropy"
    needs = Needs(teacher=None, target_images=True, target_labels="few")
    defaults = {"temperature": 0.05, "entropy_weight": 0.1, "ce_weight": 1.0}
    search = {
        "temperature": log_uniform(0.02, 0.2, "the cosine classifier's: around the paper's 0.05"),
        "entropy_weight": log_uniform(0.01, 1.0, "a decade either side of the paper's lambda 0.1"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        p = self.params
        head = student.get_classifier()
        unit_prototypes(head)
        labelled = torch.cat([batch.source_images, batch.labelled_images])
        labels = join_labels([batch.source_labels, batch.labelled_labels], len(head.weight))
        pooled = forward_outputs(student, torch.cat([labelled, batch.target_images])).pooled
        count = len(labels)
        logits = cosine_logits(pooled[:count], head.weight, p["temperature"])
        unlabelled = reverse_gradient(pooled[count:], 1.0)
        entropy = minimax_entropy_loss(
            unlabelled, head.weight, p["temperature"], p["entropy_weight"]
        )
        return {"ce": p["ce_weight"] * self.cross_entropy(logits, labels), "entropy": entropy}
