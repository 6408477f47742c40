"""What several cross-domain and transfer methods share: gradient reversal and its ramp, an EMA
copy of the student, MMD and CORAL distances, a domain discriminator, weight copying, the
probe forward and seeds their `setup` needs, and the image generator of the data-free methods.

Each is a small function or module with its paper cited, so a method file reads as the
paper's loss and nothing else.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import XdkdError
from benchmark.methods.base import Batch, DomainBatch, Synthetic
from benchmark.models.features import ModelOutputs, forward_outputs


class _GradientReversal(torch.autograd.Function):
    """Identity forward, gradient times -scale backward (Ganin et al. JMLR 2016, eq. 14)."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return features.view_as(features)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(features: torch.Tensor, scale: float) -> torch.Tensor:
    """Pass features on unchanged, so the discriminator above learns to tell domains apart
    while the network below receives the reversed gradient and learns to confuse it."""
    return _GradientReversal.apply(features, scale)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s ramp 2 / (1 + exp(-gamma p)) - 1, from 0 to ~1 over training: the
    discriminator's early, noisy signal barely reaches the features."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def domain_discriminator(in_features: int, hidden: int = 1024) -> nn.Sequential:
    """Ganin et al.'s domain classifier for Office (in -> 1024 -> 1024 -> domain, ReLU and
    dropout 0.5), with one logit (source vs target) for a binary cross-entropy."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(hidden, 1),
    )


class EmaCopy(nn.Module):
    """A frozen copy of a network whose parameters track an exponential moving average of the
    original's (Tarvainen & Valpola 2017; French et al. ICLR 2018). As in French et al.'s
    WeightEMA only parameters are averaged; buffers (BatchNorm statistics) stay the copy's own,
    updated by its own forward passes."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema <- decay * ema + (1 - decay) * current."""
        for averaged, current in zip(self.model.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current, 1.0 - self.decay)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def gaussian_mmd(
    source: torch.Tensor, target: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5
) -> torch.Tensor:
    """Squared MMD with a sum of Gaussian kernels (Long et al. ICML 2015, DAN): bandwidths
    are the mean pairwise squared distance of the joint sample times kernel_mul^i,
    i = -kernel_num//2 .. kernel_num//2; the biased (quadratic) estimator
    mean K_ss + mean K_tt - 2 mean K_st, which is exactly 0 for identical samples."""
    joint = torch.cat([source, target])
    distances = torch.cdist(joint, joint, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    count = len(joint)
    base = (distances.detach().sum() / (count * count - count)).clamp_min(1e-12)
    exponents = torch.arange(kernel_num, device=joint.device) - kernel_num // 2
    bandwidths = base * kernel_mul**exponents
    kernels = torch.exp(-distances.unsqueeze(0) / bandwidths.view(-1, 1, 1)).sum(0)
    split = len(source)
    return (
        kernels[:split, :split].mean()
        + kernels[split:, split:].mean()
        - 2 * kernels[:split, split:].mean()
    )


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko, ECCV-W 2016): ||C_s - C_t||_F^2 / (4 d^2), with C the
    unbiased (n - 1) feature covariance of each domain's batch."""
    dim = source.shape[1]
    difference = torch.cov(source.T) - torch.cov(target.T)
    return difference.pow(2).sum() / (4 * dim * dim)


def copy_matching_weights(source: nn.Module, destination: nn.Module) -> list[str]:
    """Copy every state entry (parameters and buffers) whose name and shape match; returns the
    names copied. Architectures that match copy everything; others copy what they share."""
    wanted = destination.state_dict()
    matching = {
        name: tensor
        for name, tensor in source.state_dict().items()
        if name in wanted and wanted[name].shape == tensor.shape
    }
    destination.load_state_dict(matching, strict=False)
    return sorted(matching)


@torch.no_grad()
def probe_outputs(model: nn.Module, images: torch.Tensor) -> ModelOutputs:
    """One forward pass in eval mode, to size a method's own parts in `setup` without moving
    the model's BatchNorm statistics; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    outputs = forward_outputs(model, images)
    model.train(was_training)
    return outputs


def method_seed() -> int:
    """A seed for a method's own random draws, taken from the global generator, which the
    harness seeds per run (`derive_seed(seed, "student-train", key)`): reproducible per run,
    with no seed setting in the method."""
    return int(torch.randint(0, 2**62, (1,)).item())


# --- data-free methods ---------------------------------------------------------------------

GENERATOR_OUTPUTS = ("tanh", "tanh+batchnorm", "batchnorm")


class ImageGenerator(nn.Module):
    """The generator of DAFL (Chen et al. ICCV 2019; the authors' `DAFL_train.py`), which ZSKT
    (Micaelli & Storkey NeurIPS 2019; the authors' `models/generator.py`) shares but for its
    first map and its output: z -> linear to 128 x (H/4) x (W/4) -> BN -> nearest upsampling
    x2 -> conv3x3 128 -> BN -> LeakyReLU(0.2) -> upsampling x2 -> conv3x3 64 -> BN ->
    LeakyReLU(0.2) -> conv3x3 to the image channels -> `output`.

    `output`: "tanh" (images in the students' input range [-1, 1]), "tanh+batchnorm" (tanh,
    then a BatchNorm without affine parameters that standardises each channel over the batch:
    DAFL's code) or "batchnorm" (no tanh, the standardising BatchNorm only: ZSKT's code).
    `batchnorm_eps`: the eps of the two BatchNorms after the convolutions (DAFL's code passes
    0.8 there, `nn.BatchNorm2d(128, 0.8)`, the second positional argument being eps; ZSKT's
    keeps the default 1e-5); the first BatchNorm and the output one keep PyTorch's default.
    `width`: the channels of the first map and the first convolution (both papers' 128), the
    second convolution half of them; a smaller generator is cheaper, not either paper's."""

    def __init__(
        self,
        latent_dim: int,
        shape: tuple[int, int, int],
        output: str = "tanh",
        batchnorm_eps: float = 1e-5,
        width: int = 128,
    ) -> None:
        super().__init__()
        channels, height, side = shape
        if height % 4 or side % 4:
            raise XdkdError(
                f"the data-free generator makes images whose sides are multiples of 4 (it "
                f"upsamples a (H/4, W/4) map twice); {height}x{side} is not"
            )
        if output not in GENERATOR_OUTPUTS:
            raise XdkdError(
                f"unknown generator output '{output}'; choose one of {', '.join(GENERATOR_OUTPUTS)}"
            )
        if width < 2:
            raise XdkdError(f"generator_width must be 2 or more (128 in both papers), got {width}")
        self.first_size = (height // 4, side // 4)
        self.width = width
        self.project = nn.Linear(latent_dim, width * height // 4 * side // 4)
        self.first_norm = nn.BatchNorm2d(width)
        self.block1 = nn.Sequential(
            nn.Conv2d(width, width, 3, stride=1, padding=1),
            nn.BatchNorm2d(width, eps=batchnorm_eps),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(width, width // 2, 3, stride=1, padding=1),
            nn.BatchNorm2d(width // 2, eps=batchnorm_eps),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width // 2, channels, 3, stride=1, padding=1),
        )
        self.squash = nn.Tanh() if output.startswith("tanh") else nn.Identity()
        self.standardise = (
            nn.BatchNorm2d(channels, affine=False)
            if output.endswith("batchnorm")
            else nn.Identity()
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        maps = self.project(latent).view(len(latent), self.width, *self.first_size)
        maps = F.interpolate(self.first_norm(maps), scale_factor=2)
        maps = F.interpolate(self.block1(maps), scale_factor=2)
        return self.standardise(self.squash(self.block2(maps)))


def synthetic_of(batch: Batch, method: str) -> Synthetic:
    """What a data-free step may generate; a clear error where the batch has real images."""
    if batch.synthetic is None:
        raise XdkdError(
            f"method '{method}' learns from images its generator makes; it runs under the "
            "data_free protocol only"
        )
    return batch.synthetic


def synthetic_probe(synthetic: Synthetic) -> Batch:
    """A probe batch of two blank images of the generated shape, for the shapes a method's
    `setup` reads (`adapters.spatial_pairs`), drawing nothing from any generator."""
    images = torch.zeros((2, *synthetic.shape), device=synthetic.generator.device)
    return Batch([DomainBatch("synthetic", images)])
