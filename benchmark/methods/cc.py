"""`cc`: Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019.

Beyond each image's own output (instance congruence, KD), the student keeps the teacher's
correlations between images: on the L2-normalised pooled features f_i, a Gaussian RBF
kernel k(f_i, f_j) = exp(-gamma ||f_i - f_j||^2) = exp(-2 gamma) exp(2 gamma f_i^T f_j),
approximated by its order-P Taylor series as in the paper,

    k(f_i, f_j) ~ sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! (f_i^T f_j)^p,

gives a b x b correlation matrix per network, and the loss is their mean squared difference,
(1 / b^2) ||K_t - K_s||_F^2. The matrices are b x b whatever the feature widths, so no
embedding is needed. (The paper weights its CC term by a beta beside cross-entropy and KD;
its text was not in the material checked, only its abstract, so its beta, its normalisation
and its gamma could not be checked against it.)

Defaults: P = 2, gamma = 0.4, CC weight 100, CE weight 1: the setting of
Knowledge-Distillation-Zoo (AberHu), the public code with this formula (its README: CC without
instance congruence, the order-2 Taylor series of the Gaussian RBF kernel; `train_kd.py`:
gamma 0.4 and P 2 by default, the CC term on the pooled features times `--lambda_kd`, plus
cross-entropy; `example_train_script.sh`: `--lambda_kd 100.0`, ResNet-110 -> ResNet-20 on
CIFAR-10). Its loss file itself was not in the material checked; the same loss, the mean over
the b x b entries on L2-normalised features, is JDAI-CV/FaceX-Zoo's KDF `loss/cc.py`. The
weight so gives the term the scale that public code gives this formula, which the formula
bounds: on unit features K_ij = e^-0.8 (1 + 0.8 s + 0.32 s^2) of the cosine s, dK/ds from 0.36
(s = 0) to 0.65 (s = 1) for the non-negative (post-ReLU) features of the suite's CNNs, so L_CC
is 0.13 to 0.42 times the mean squared difference of the two networks' cosines: about 4e-3
to 3e-2 for randomly initialised suite backbones on noise images (lenet / resnet18, resnet10t
/ dtn, dtn / lenet, 64 images), so 0.4 to 2.7 at weight 100, beside a cross-entropy of
ln 10 = 2.3, but 1e-4 to 5e-4 at RepDistiller's 0.02, where `cc` trains almost as
cross-entropy alone.

RepDistiller's 0.02 (`-b 0.02` in `scripts/run_cifar_distill.sh`) is the weight of another
loss, its `Correlation` (`distiller_zoo/CC.py`, the code the CCKD authors sent RepDistiller's
author: its issues #15 and #18): each network's pooled features pass through a trained linear
map to 128 dimensions (`LinearEmbed`, no normalisation), d_i = |e_s,i - e_t,i| entrywise, and
the loss is the batch mean of d_i . d_(i+1) over consecutive images i, i + 1: products of two
neighbouring images' embedding errors, with no kernel and no b x b matrix. It does not carry
over to this formula.

Deviations from the paper: it adds CC to KD (instance congruence) and draws its batches with a
class-aware sampler (class- or superclass-uniform, RepDistiller issue #18); as
Knowledge-Distillation-Zoo and RepDistiller do, the CC term stands beside cross-entropy alone
here (combine with `kd` by a method of its own if wanted), on the suite's batches as drawn.

The CC term applies to every image of the batch, source and unlabelled target (so the
correlations span both domains), beside cross-entropy on the labelled source images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


def correlation_matrix(features: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """(B, B): the order-P Taylor expansion of the Gaussian kernel on unit features."""
    unit = F.normalize(features, dim=1)
    similarity = unit @ unit.T
    return sum(
        math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * similarity.pow(p)
        for p in range(order + 1)
    )


def cc_loss(student: torch.Tensor, teacher: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """Mean squared difference of the two correlation matrices."""
    return F.mse_loss(
        correlation_matrix(student, gamma, order), correlation_matrix(teacher, gamma, order)
    )


@METHODS.register("cc")
class CC(Method):
    family = "feature"
    paper = "Peng et al. ICCV 2019, Correlation Congruence for Knowledge Distillation"
    needs = Needs(teacher="features", teachers="one")
    defaults = {"gamma": 0.4, "order": 2, "ce_weight": 1.0, "weight": 100.0}
    search = {
        "gamma": log_uniform(
            0.1, 1.6, "the kernel's width: a factor 4 either side of the code's 0.4"
        ),
        "weight": log_uniform(10.0, 1000.0, "a decade either side of the code's 100"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        cc = cc_loss(
            step.student_outputs.pooled,
            step.teacher_outputs.pooled,
            self.params["gamma"],
            int(self.params["order"]),
        )
        return {"ce": self.params["ce_weight"] * step.source_ce, "cc": self.params["weight"] * cc}
