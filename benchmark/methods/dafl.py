"""`dafl`: Chen et al., "Data-Free Learning of Student Networks", ICCV 2019 (DAFL).

No real image is used. A generator G turns standard normal codes z into images, and the
frozen teacher T, acting as a fixed discriminator, trains it with three terms on its outputs
y_T = T(G(z)) and pooled features f_T (the classifier's input):

    one-hot:     L_oh = mean_i CE(y_T^i, argmax_c y_T^i)    the teacher is confident on G(z)
    activation:  L_a  = -mean |f_T|                         its features respond strongly
    entropy:     L_ie = sum_c p_c log10 p_c,  p = mean_i softmax(y_T^i)
                                                            (the negative entropy of the mean
                                                            prediction: classes come balanced)

    L_G = L_oh + alpha L_a + beta L_ie,  alpha = 0.1, beta = 5 (the authors' MNIST setting)

while the student S learns from the same images, detached, by KD at temperature 1:
L_KD = mean_i KL(softmax(y_T^i) || softmax(y_S^i)) (the authors' `kdloss`; the paper writes
it as a cross-entropy to the teacher's outputs, which has the same gradient). Both players are
updated every step, as in the authors' code (`optimizer_G.step(); optimizer_S.step()` after
one backward of the sum).

One backward pass, each player its own gradient: G's terms run the teacher's frozen network
(`teachers.module()`, through `forward_outputs` with gradients on, so they reach the images
and through them G; the teacher's parameters need none) on G's images, and the student never
sees them; the student's KD term takes the images and the teacher's logits detached, so it
sends nothing to G. `tests/test_methods_transfer.py` checks the separation.

Defaults and their sources (the authors' `DAFL_train.py`, its MNIST defaults): latent 100,
weights one-hot 1, activation 0.1, entropy 5 (`--oh 1 --a 0.1 --ie 5`; their CIFAR command
uses 0.05 / 0.01 / 5 with latent 1000); KD at T=1. Formulas are the code's: the activation
term is the mean of |f_T| over images and feature dimensions (the paper's batch mean of the
L1 norm, divided by the feature dimension), the entropy term uses log10 (the code's
`torch.log10`; the weight 5 goes with it), and the one-hot term is the batch-mean CE.

Deviations: the paper trains G with Adam at lr_G 0.2 and the student with Adam at lr_S 2e-3
(SGD 0.1 on CIFAR) at batch 512; here the suite's recipe sets one optimizer, learning rate,
schedule and batch size (`Synthetic.count`) for G and the student alike. An epoch is as many
generated images as the teacher's training domain holds (the loop's count), where the authors
run 120 iterations an epoch. The generator (`parts.ImageGenerator`, the code's layout and its
BatchNorm eps 0.8) is sized from `Synthetic.shape` (32 px in the suite, 32 px in the paper's
MNIST and CIFAR runs). Its output is tanh by default, images in the students' input range
[-1, 1] as `Synthetic` promises; the authors' code adds a BatchNorm without affine parameters
after the tanh, which standardises each channel over the batch to the statistics of their
mean/std-normalised inputs, where this suite normalises by a fixed (x - 0.5) / 0.5 and real
images are not unit-variance; `generator_output: tanh+batchnorm` restores it. The paper's
teacher is a single network: `teachers: one`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.kd import kd_loss
from benchmark.methods.parts import ImageGenerator, synthetic_of
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform

DAFL_BATCHNORM_EPS = 0.8  # the authors' `nn.BatchNorm2d(128, 0.8)`: eps, positionally


def dafl_one_hot_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """L_oh: batch-mean cross-entropy of the teacher's logits to its own top class."""
    return F.cross_entropy(teacher_logits, teacher_logits.detach().argmax(1))


def dafl_activation_loss(teacher_features: torch.Tensor) -> torch.Tensor:
    """L_a: minus the mean absolute value of the teacher's pooled features."""
    return -teacher_features.abs().mean()


def dafl_information_entropy_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """L_ie: sum_c p_c log10 p_c of the batch-mean teacher prediction p (the negative
    entropy, in base 10 as the authors' code; minimal for balanced classes)."""
    mean = teacher_logits.softmax(1).mean(0)
    return (mean * mean.clamp_min(torch.finfo(mean.dtype).tiny).log10()).sum()


@METHODS.register("dafl")
class DAFL(Method):
    family = "generative-adversarial"
    paper = "Chen et al. ICCV 2019, Data-Free Learning of Student Networks"
    needs = Needs(teacher="features", teachers="one", data_free=True)
    defaults = {
        "latent_dim": 100,
        "one_hot_weight": 1.0,
        "activation_weight": 0.1,
        "entropy_weight": 5.0,
        "temperature": 1.0,
        "generator_output": "tanh",
        "generator_width": 128,
    }
    search = {
        "one_hot_weight": log_uniform(0.03, 3.0, "the authors' commands: 1 (MNIST), 0.05 (CIFAR)"),
        "activation_weight": log_uniform(
            0.01, 1.0, "the authors' commands: 0.1 (MNIST), 0.01 (CIFAR)"
        ),
        "entropy_weight": log_uniform(
            0.5, 50.0, "5 in both of the authors' commands; a decade either side"
        ),
        "temperature": log_uniform(1.0, 8.0, "the authors' KD at 1; KD practice up to 8"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        synthetic = synthetic_of(batch, self.name)
        self.generator = ImageGenerator(
            self.params["latent_dim"],
            synthetic.shape,
            self.params["generator_output"],
            batchnorm_eps=DAFL_BATCHNORM_EPS,
            width=self.params["generator_width"],
        ).to(synthetic.generator.device)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        params = self.params
        synthetic = synthetic_of(batch, self.name)
        images = self.generator(synthetic.latent(params["latent_dim"]))
        # with gradients: they reach G through the frozen teacher (Teachers' views run without)
        outputs = forward_outputs(teacher.module(), images)
        student_logits = student(images.detach())
        kd = kd_loss(student_logits, outputs.logits.detach(), params["temperature"])
        return {
            "one_hot": params["one_hot_weight"] * dafl_one_hot_loss(outputs.logits),
            "activation": params["activation_weight"] * dafl_activation_loss(outputs.pooled),
            "entropy": params["entropy_weight"] * dafl_information_entropy_loss(outputs.logits),
            "kd": kd,
        }
