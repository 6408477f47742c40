"""`meta_dmoe`: Zhong, Chi, Gu, Wang, Yu & Tang, "Meta-DMoE: Adapting to Domain Shift by
Meta-Distillation from Mixture-of-Experts", NeurIPS 2022 (code: github.com/n3il666/Meta-DMoE).

One expert per source domain, each trained on its domain alone, knows that domain best; a
target domain resembles some sources more than others. A transformer aggregator reads the
experts' features of an image and turns them into one target feature; at test time a
handful of unlabelled images of the new domain pull the student's features towards the
aggregate for one gradient step, and the adapted student classifies that domain. Training is
meta-learned so that this one unsupervised step helps: per source domain, the step is taken
on a support half of its minibatch with that domain's own expert masked (at test the target
has no expert), and the adapted student is scored by cross-entropy on the labelled query
half.

What is implemented, exactly (the run's teachers are the experts, one per source; a source's
minibatch is named after its domain, and so is its expert):
- aggregator A_phi: each expert's pooled features projected to a common token width W (a
  linear layer per expert; none where its width is W), a pre-norm transformer encoder of
  `aggregator_depth` blocks (`aggregator_heads`-head self-attention, then a GELU MLP of
  width 2W, dropout `aggregator_dropout`) over the tokens of the experts present, the mean
  of the tokens, projected to the student's pooled width (none where that is W). Token
  width: `aggregator_width`, or 0 (default) for the experts' widest pooled features rounded
  up to a multiple of the heads: the paper's tokens are the experts' features themselves
  (2048, ResNet-50), and with experts and student of one width both projections vanish, as
  in the code. A LayerNorm + linear head on A's output gives class scores for its
  pretraining (the code's `fa_selector.mlp`).
- stage 1 (progress < `pretrain_fraction`), the code's two pretraining runs side by side:
  cross-entropy of the student on every source image (its ERM pretraining) and of the
  aggregator's head on every source image with every expert present (as the code pretrains
  it, no mask).
- stage 2, meta-training, per source domain d: support = the first min(`support_size`,
  half) images of d's minibatch (labels unused), query = the rest; target
  a = A_phi(experts except d's, on the support); inner loss = mean over images and features
  of (f_theta(support) - a)^2 (the code's `l2_loss`), f the student's pooled features;
  theta' = theta - `inner_lr` * grad_theta inner; meta term = cross-entropy of the student
  at theta' (`torch.func.functional_call`, with the student's buffers) on the query, mean
  over the sources. The student runs in eval mode (BatchNorm on the running statistics
  stage 1 estimated, no dropout) and so does the aggregator, as in the code's meta-training.
- gradients: first order in theta, exact in phi. The inner gradient is taken at detached
  copies of theta (create_graph through the aggregator's output only), so d theta'/d theta
  = I and the student gets grad_theta' of the query loss (first-order MAML), while phi,
  which enters only through the inner gradient, gets its exact meta-gradient
  -inner_lr * (d grad/d phi)^T grad_theta' CE: the code's aggregator learns only this way
  (learn2learn's MAML, second order). It costs a double backward through the student on
  the support images (run with PyTorch's math attention kernels, which have one).
- test time (`adapt`): a copy of the student in eval mode, `adaptation_steps` steps of the
  inner update on `support_size` unlabelled images of the scored domain, every expert
  present (the target has none of its own), the trained aggregator's output as the target.

Defaults and their sources (the code's `configs.py`, its iWildCam entry; the other WILDS
sets use support 64-75 and inner rates 1e-4-1e-3): support 24 images, inner learning rate
3e-4, one adaptation step, aggregator depth 1, 16 heads, dropout 0.1, MLP width 2W; 12
pretraining epochs before 20 of meta-training: `pretrain_fraction` 12/32 = 0.375; every loss
unweighted (weight 1).

Simplifications: one run with one optimizer, learning rate and schedule (the suite's recipe)
for the student and the aggregator, where the code pretrains each separately and meta-trains
with Adam at separate rates (student 3e-5, aggregator 1e-6), and stages it by
`pretrain_fraction`; the experts are the suite's per-source teachers, each trained on its
source only (the code trains them the same way, but groups WILDS domains into a few
super-domains); every source's minibatch is one meta-task of the step (the code: one domain
per step). As in the code: support and query are two disjoint parts of one minibatch, one
inner step, BatchNorm in eval mode throughout meta-training and adaptation (so the inner
step never moves its statistics), and at test the step runs on the support images only
(the first `support_size` of what `adapt` is given). The inner and test-time updates move
every student parameter, which equals the code's feature-extractor-only update because the
classifier does not enter the inner loss. Unlabelled target training images, where the
protocol grants them, are not used: the target is seen only at test, through its support
images (the paper's setting, domain generalisation with test-time adaptation). A source
with no expert of its name masks none, and masking never removes the only expert.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmark.errors import XdkdError
from benchmark.methods.base import Batch, DomainBatch, Method
from benchmark.methods.parts import probe_outputs
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import ModelOutputs, forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import int_uniform, log_uniform, uniform

MLP_RATIO = 2  # the code's transformer: mlp_dim = 2 * feature width


def meta_dmoe_inner_loss(student_pooled: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean over images and features of (student - target)^2: the code's `l2_loss`."""
    return F.mse_loss(student_pooled, target)


def split_support_query(
    images: torch.Tensor, labels: torch.Tensor, support_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(support images, query images, query labels): the first min(support_size, half)
    images support, the rest query; a single image is both."""
    count = min(support_size, len(images) // 2)
    if count == 0:
        return images, images, labels
    return images[:count], images[count:], labels[count:]


class _Block(nn.Module):
    """One pre-norm transformer block (the code's `Transformer` layer)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, MLP_RATIO * width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(MLP_RATIO * width, width),
            nn.Dropout(dropout),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        normed = self.attention_norm(tokens)
        tokens = tokens + self.attention(normed, normed, normed, need_weights=False)[0]
        return tokens + self.mlp(self.mlp_norm(tokens))


class ExpertAggregator(nn.Module):
    """The experts' pooled features of an image -> one target in the student's feature space
    (see the module docstring); `classify` is its pretraining head."""

    def __init__(
        self,
        expert_widths: list[int],
        width: int,
        depth: int,
        heads: int,
        dropout: float,
        out_width: int,
        classes: int,
    ) -> None:
        super().__init__()
        self.inputs = nn.ModuleList(
            nn.Identity() if w == width else nn.Linear(w, width) for w in expert_widths
        )
        self.blocks = nn.ModuleList(_Block(width, heads, dropout) for _ in range(depth))
        self.output = nn.Identity() if out_width == width else nn.Linear(width, out_width)
        self.head = nn.Sequential(nn.LayerNorm(out_width), nn.Linear(out_width, classes))

    def forward(self, features: dict[int, torch.Tensor]) -> torch.Tensor:
        """`features`: expert index -> its (B, D_k) pooled features, the experts present
        only (a masked expert's token is left out, as the code's `mask_feat` does)."""
        tokens = torch.stack([self.inputs[k](f) for k, f in sorted(features.items())], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.output(tokens.mean(dim=1))

    def classify(self, output: torch.Tensor) -> torch.Tensor:
        return self.head(output)


class _Outputs(nn.Module):
    """`forward_outputs` of a model as a module's forward, for `functional_call` (which
    swaps a module's parameters for one call of its forward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> ModelOutputs:
        return forward_outputs(self.model, images)


def outputs_at(
    model: nn.Module, tensors: dict[str, torch.Tensor], images: torch.Tensor
) -> ModelOutputs:
    """`forward_outputs(model, images)` with the named parameters and buffers in `tensors`
    in place of the model's own (the model is left unchanged)."""
    renamed = {f"model.{name}": value for name, value in tensors.items()}
    return functional_call(_Outputs(model), renamed, (images,))


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Eval mode for the block, each module's own mode restored afterwards."""
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.train(mode)


@METHODS.register("meta_dmoe")
class MetaDMoE(Method):
    family = "meta-learning"
    paper = "Zhong et al. NeurIPS 2022, Meta-DMoE: Meta-Distillation from Mixture-of-Experts"
    needs = Needs(teacher="features", teachers="several")
    adapts_at_test = True
    defaults = {
        "inner_lr": 3e-4,
        "support_size": 24,
        "adaptation_steps": 1,
        "pretrain_fraction": 0.375,
        "ce_weight": 1.0,
        "aggregator_ce_weight": 1.0,
        "meta_weight": 1.0,
        "aggregator_depth": 1,
        "aggregator_heads": 16,
        "aggregator_width": 0,
        "aggregator_dropout": 0.1,
    }
    search = {
        "inner_lr": log_uniform(1e-4, 1e-3, "the code's WILDS configs: 1e-4 to 1e-3"),
        "support_size": int_uniform(24, 75, "the code's WILDS configs: 24 to 75"),
        "pretrain_fraction": uniform(0.2, 0.6, "the code's 12 of 32 epochs; 0.2 to 0.6"),
        "aggregator_dropout": uniform(0.0, 0.3, "the code's 0.1; none to 0.3"),
    }

    def __init__(self, name: str, label_smoothing: float = 0.0, **params) -> None:
        super().__init__(name, label_smoothing, **params)
        p = self.params
        problems = [
            (p["support_size"] < 1, "support_size must be at least 1"),
            (p["adaptation_steps"] < 0, "adaptation_steps must be 0 or more"),
            (p["aggregator_heads"] < 1, "aggregator_heads must be at least 1"),
            (p["aggregator_depth"] < 0, "aggregator_depth must be 0 or more"),
            (
                p["aggregator_width"] % max(1, p["aggregator_heads"]) != 0,
                f"aggregator_width ({p['aggregator_width']}) must be a multiple of "
                f"aggregator_heads ({p['aggregator_heads']}), or 0 (the experts' width)",
            ),
        ]
        for bad, message in problems:
            if bad:
                raise XdkdError(f"method '{name}': {message}")

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        p = self.params
        probe = batch.all_images()[:2]
        student_outputs = probe_outputs(student, probe)
        self.expert_names = list(teacher.names)
        widths = [teacher.outputs(probe, name).pooled.shape[1] for name in self.expert_names]
        heads = p["aggregator_heads"]
        width = p["aggregator_width"] or -(-max(widths) // heads) * heads
        self.aggregator = ExpertAggregator(
            widths,
            width,
            p["aggregator_depth"],
            heads,
            p["aggregator_dropout"],
            student_outputs.pooled.shape[1],
            student_outputs.logits.shape[1],
        ).to(probe.device)

    def kept_experts(self, domain: str | None) -> list[int]:
        """The experts that speak for an image of `domain`: all but its own."""
        kept = [k for k, name in enumerate(self.expert_names) if name != domain]
        return kept or list(range(len(self.expert_names)))

    def expert_features(
        self, teacher: Teachers, images: torch.Tensor, kept: list[int]
    ) -> dict[int, torch.Tensor]:
        return {k: teacher.outputs(images, self.expert_names[k]).pooled for k in kept}

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        p = self.params
        if batch.progress < p["pretrain_fraction"]:
            return self.pretrain_losses(student, teacher, batch)
        parameters = {n: v for n, v in student.named_parameters() if v.requires_grad}
        buffers = dict(student.named_buffers())
        with _eval_mode(student, self.aggregator):
            outer = [
                self.query_loss(student, teacher, domain, parameters, buffers)
                for domain in batch.sources
            ]
        meta = torch.stack(outer).mean()
        zero = meta.new_zeros(())
        return {"ce": zero, "aggregator_ce": zero, "meta": p["meta_weight"] * meta}

    def pretrain_losses(
        self, student: nn.Module, teacher: Teachers, batch: Batch
    ) -> dict[str, torch.Tensor]:
        """Stage 1: the student's and the aggregator's supervised pretraining."""
        p = self.params
        images, labels = batch.source_images, batch.source_labels
        ce = self.cross_entropy(student(images), labels)
        every = self.expert_features(teacher, images, list(range(len(self.expert_names))))
        aggregator_ce = self.cross_entropy(self.aggregator.classify(self.aggregator(every)), labels)
        return {
            "ce": p["ce_weight"] * ce,
            "aggregator_ce": p["aggregator_ce_weight"] * aggregator_ce,
            "meta": ce.new_zeros(()),
        }

    def query_loss(
        self,
        student: nn.Module,
        teacher: Teachers,
        domain: DomainBatch,
        parameters: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """One meta-task: the query cross-entropy of the student after its inner step on
        the support, its own expert masked (first order in theta, exact in phi)."""
        p = self.params
        support, query, query_labels = split_support_query(
            domain.images, domain.labels, p["support_size"]
        )
        target = self.aggregator(
            self.expert_features(teacher, support, self.kept_experts(domain.name))
        )
        leaves = {n: v.detach().requires_grad_() for n, v in parameters.items()}
        with sdpa_kernel(SDPBackend.MATH):  # the one attention kernel with a double backward
            pooled = outputs_at(student, {**leaves, **buffers}, support).pooled
        inner = meta_dmoe_inner_loss(pooled, target)
        grads = torch.autograd.grad(
            inner, list(leaves.values()), create_graph=True, allow_unused=True
        )
        adapted = {
            name: value if grad is None else value - p["inner_lr"] * grad
            for (name, value), grad in zip(parameters.items(), grads, strict=True)
        }
        logits = outputs_at(student, {**adapted, **buffers}, query).logits
        return self.cross_entropy(logits, query_labels)

    def adapt(
        self, student: nn.Module, teacher: Teachers | None, support: torch.Tensor
    ) -> nn.Module:
        """A frozen copy of `student`, in eval mode, after `adaptation_steps` inner steps
        towards the aggregate of every expert on the unlabelled `support` images."""
        p = self.params
        with torch.inference_mode(False), torch.enable_grad():
            support = support[: p["support_size"]].clone()
            adapted = copy.deepcopy(student).eval().requires_grad_(True)
            with _eval_mode(self.aggregator), torch.no_grad():
                every = self.expert_features(teacher, support, list(range(len(self.expert_names))))
                target = self.aggregator(every)
            parameters = list(adapted.parameters())
            for _ in range(p["adaptation_steps"]):
                inner = meta_dmoe_inner_loss(forward_outputs(adapted, support).pooled, target)
                grads = torch.autograd.grad(inner, parameters, allow_unused=True)
                with torch.no_grad():
                    for parameter, grad in zip(parameters, grads, strict=True):
                        if grad is not None:
                            parameter.sub_(p["inner_lr"] * grad)
        return adapted.requires_grad_(False)

    def adaptation_budget(self) -> dict[str, object]:
        p = self.params
        return {
            "support_images": p["support_size"],
            "steps": p["adaptation_steps"],
            "lr": p["inner_lr"],
            "uses": "unlabelled images of the scored domain",
        }
