"""`kd3a`: Feng et al., "KD3A: Unsupervised Multi-Source Decentralized Domain Adaptation via
Knowledge Distillation", ICML 2021.

Each source teacher is right on some target images and wrong on others; where several
teachers independently agree with high confidence, their answer is far more often right than
any single teacher's. KD3A's "knowledge vote" keeps exactly that: on each unlabelled target
image a teacher is confident when its top probability exceeds a gate; the consensus class is
the class most confident teachers vote for; the consensus knowledge is the mean probability
vector of the confident teachers that agree with it, and its weight the number of them over
the number of teachers (0 where no teacher is confident), so images with a broad, confident
consensus teach the most. The student minimises the consensus-weighted soft cross-entropy
on mixup'd target images against the mixed consensus, beside cross-entropy on the labelled
source images. "Consensus focus" then weights the teachers by how much each one contributes
to the consensus, so a teacher whose confident answers nobody shares (an irrelevant or
poisoned domain) loses its say.

Defaults, from the paper's code (digits configuration): gate 0.9 rising linearly to 0.95
over training; mixup lambda ~ Beta(2, 2) with a random permutation of the target batch;
knowledge-vote weight 1; source CE weight 1 (a parameter: the protocol grants the labelled
sources); consensus focus on.

What is implemented, exactly:
- Vote (weights w_k, uniform 1/K without focus): confident_k = max_c p_k,c > gate; class
  score sum_k w_k [confident_k][argmax p_k = c]; ties between classes go to the one with the
  larger sum of w_k * (top probability) of its voters; knowledge = w-weighted mean of the
  agreeing teachers' p_k, weight = sum of their w_k (= count / K for uniform w). Where no
  teacher agrees the weight is 0 and the knowledge is the w-weighted mean of every teacher
  (it still enters a neighbour's mixed label; the code's fallback there is the one-hot of
  the class with the most summed top probability).
- Consensus focus, per batch: quality Q(S) = sum over the batch of the uniform-vote weights
  (count / K) using teachers S only; CF_k = Q(all) - Q(all without k) >= 0; the vote's
  teacher weights are CF_k / sum CF (uniform if every CF is 0).
- The mixed image i gets the weight of its unmixed image i, as in the code.

Deviations: the paper uses consensus focus to weight the federated aggregation of models
and estimates it over an epoch (the code: Shapley values over teacher subsets, quality
summed confidences, an EMA across epochs); here teachers are frozen and nothing is
aggregated, so the leave-one-out CF of each batch weights the teachers' votes instead.
BatchNorm-MMD, the decentralised model aggregation and the source models' local training
are left out: they belong to the federated setting, where no source data leaves its owner.
The paper's code trains on the one-hot of the consensus class with a 0/1 weight; here the
paper's mean probability vector and count weight are used. The gate rises per step, not per
epoch. Mixup draws come from torch's global generator, which checkpoints restore.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform, uniform


def confidence_gate(progress: float, start: float, end: float) -> float:
    """The gate rises linearly from `start` to `end` over training."""
    return start + (end - start) * progress


def knowledge_vote(
    probabilities: torch.Tensor, gate: float, teacher_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(consensus knowledge (B, C), its weight (B,)) from the teachers' (K, B, C) probabilities;
    `teacher_weights` (K,), uniform 1/K by default (see the module docstring)."""
    teachers, _, classes = probabilities.shape
    if teacher_weights is None:
        teacher_weights = probabilities.new_full((teachers,), 1.0 / teachers)
    top, choice = probabilities.max(dim=-1)  # (K, B)
    confident = (top > gate).to(probabilities.dtype)
    ballots = (teacher_weights.view(-1, 1) * confident).unsqueeze(-1) * F.one_hot(
        choice, classes
    ).to(probabilities.dtype)  # (K, B, C)
    score = ballots.sum(dim=0)
    support = (ballots * top.unsqueeze(-1)).sum(dim=0)
    tied = score == score.max(dim=1, keepdim=True).values
    consensus = support.masked_fill(~tied, -1.0).argmax(dim=1)  # (B,)
    share = teacher_weights.view(-1, 1) * confident * (choice == consensus).to(confident.dtype)
    weight = share.sum(dim=0)
    agreeing = (share.unsqueeze(-1) * probabilities).sum(dim=0) / weight.clamp_min(1e-12)[:, None]
    everyone = (teacher_weights.view(-1, 1, 1) * probabilities).sum(dim=0)
    return torch.where((weight > 0).unsqueeze(1), agreeing, everyone), weight


def consensus_focus(probabilities: torch.Tensor, gate: float) -> torch.Tensor:
    """Each teacher's share of the consensus quality (K,), summing to 1: the drop in the
    batch's summed uniform-vote weights when that teacher is left out, normalised."""
    teachers = len(probabilities)
    uniform = probabilities.new_full((teachers,), 1.0 / teachers)
    quality = knowledge_vote(probabilities, gate, uniform)[1].sum()
    drops = []
    for left_out in range(teachers):
        without = uniform.clone()
        without[left_out] = 0.0
        drops.append(quality - knowledge_vote(probabilities, gate, without)[1].sum())
    focus = torch.stack(drops).clamp_min(0.0)
    total = focus.sum()
    return torch.where(total > 0, focus / total.clamp_min(1e-12), uniform)


def kd3a_loss(
    mixed_student_logits: torch.Tensor,
    teacher_probabilities: torch.Tensor,
    order: torch.Tensor,
    gate: float,
    lam: float,
    focus: bool,
) -> torch.Tensor:
    """mean_i w_i * sum_c -(lam k_i + (1 - lam) k_order(i))_c log softmax(z_i)_c, where z are
    the student's logits on the mixed images lam x_i + (1 - lam) x_order(i) and (k, w) the
    knowledge vote on the unmixed images (teachers weighted by consensus focus if `focus`)."""
    weights = consensus_focus(teacher_probabilities, gate) if focus else None
    knowledge, weight = knowledge_vote(teacher_probabilities, gate, weights)
    mixed = lam * knowledge + (1 - lam) * knowledge[order]
    soft_ce = -(mixed * F.log_softmax(mixed_student_logits, dim=1)).sum(dim=1)
    return (weight * soft_ce).mean()


@METHODS.register("kd3a")
class KD3A(Method):
    family = "multi-teacher"
    paper = "Feng et al. ICML 2021, KD3A: Multi-Source Decentralized DA via Knowledge Distillation"
    needs = Needs(teacher="probabilities", teachers="several", target_images=True)
    defaults = {
        "gate_start": 0.9,
        "gate_end": 0.95,
        "mix_alpha": 2.0,
        "consensus_focus": True,
        "vote_weight": 1.0,
        "ce_weight": 1.0,
    }
    search = {
        "gate_start": uniform(0.8, 0.9, "the code's 0.9, below the end's range"),
        "gate_end": uniform(0.9, 0.99, "the code's 0.95, above the start's range"),
        "mix_alpha": log_uniform(0.1, 10.0, "DomainBed's Mixup alpha range, 10^U(-1, 1)"),
        "vote_weight": log_uniform(0.1, 10.0, "a decade either side of the code's 1"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        p = self.params
        target = batch.target_images
        # global generator (CPU): restored from checkpoints, so a resumed run draws the same
        lam = float(torch.distributions.Beta(p["mix_alpha"], p["mix_alpha"]).sample())
        order = torch.randperm(len(target)).to(target.device)
        mixed_images = lam * target + (1 - lam) * target[order]
        logits = student(torch.cat([batch.source_images, mixed_images]))
        source_count = len(batch.source_labels)
        with torch.no_grad():
            probabilities = teacher.place(teacher.member_probabilities(target), 0.0)
        gate = confidence_gate(batch.progress, p["gate_start"], p["gate_end"])
        vote = kd3a_loss(
            logits[source_count:], probabilities, order, gate, lam, p["consensus_focus"]
        )
        ce = self.cross_entropy(logits[:source_count], batch.source_labels)
        return {"ce": p["ce_weight"] * ce, "knowledge_vote": p["vote_weight"] * vote}
