"""Each distillation loss on fixed small inputs equals the value the papers' formulas give.

The expected values in `fixtures/golden_losses.json` were computed in plain numpy by
`fixtures/make_golden.py`, independently of the torch code. The losses run in float64 here,
so a mismatch beyond 1e-5 is a formula error, not rounding. The `*_with_defaults` cases run a
method's loss functions with the weights of its `defaults`, against the published weights
written out in numpy: a changed default fails them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.methods.ab import ab_loss
from benchmark.methods.adda_kd import adda_discriminator_loss, adda_encoder_loss
from benchmark.methods.amalgamation import common_space_mmd, reconstruction_loss
from benchmark.methods.at import at_loss
from benchmark.methods.cc import CC, cc_loss
from benchmark.methods.crd import crd_nce_loss
from benchmark.methods.dafl import (
    dafl_activation_loss,
    dafl_information_entropy_loss,
    dafl_one_hot_loss,
)
from benchmark.methods.dist import dist_loss
from benchmark.methods.dkd import dkd_loss
from benchmark.methods.ensemble_kd import ensemble_kd_loss
from benchmark.methods.fitnet import fitnet_loss
from benchmark.methods.ft import FT, ft_loss
from benchmark.methods.kd import kd_loss
from benchmark.methods.kd3a import kd3a_loss
from benchmark.methods.kd_ls import kd_ls_loss
from benchmark.methods.meta_dmoe import meta_dmoe_inner_loss
from benchmark.methods.mlkd import MLKD, mlkd_loss, mlkd_weighted_terms
from benchmark.methods.mme import minimax_entropy_loss
from benchmark.methods.mt_mtda import mt_mtda_loss
from benchmark.methods.nst import nst_loss
from benchmark.methods.pkt import pkt_loss
from benchmark.methods.reviewkd import ReviewKD, hcl_loss, reviewkd_term
from benchmark.methods.rkd import rkd_angle_loss, rkd_distance_loss
from benchmark.methods.sp import sp_loss
from benchmark.methods.sskd import sskd_ss_loss, sskd_tf_loss
from benchmark.methods.ssl_rotation import rotation_loss
from benchmark.methods.vid import vid_loss
from benchmark.methods.zskt import zskt_divergence, zskt_generator_loss

GOLDEN = Path(__file__).parent / "fixtures" / "golden_losses.json"


def mlkd_with_defaults(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """MLKD's cross-entropy and three terms, weighted by `MLKD.defaults`."""
    p = MLKD.defaults
    terms = mlkd_weighted_terms(
        student_logits,
        teacher_logits,
        list(p["temperatures"]),
        p["instance_weight"],
        p["batch_weight"],
        p["class_weight"],
    )
    return p["ce_weight"] * F.cross_entropy(student_logits, labels) + sum(terms.values())


def reviewkd_with_defaults(
    student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor], progress: float
) -> torch.Tensor:
    """The ReviewKD term at `progress`, weighted and warmed up by `ReviewKD.defaults`."""
    p = ReviewKD.defaults
    return reviewkd_term(student_maps, teacher_maps, progress, p["weight"], p["warmup_fraction"])


def ft_with_defaults(student_factor: torch.Tensor, teacher_factor: torch.Tensor) -> torch.Tensor:
    return FT.defaults["weight"] * ft_loss(student_factor, teacher_factor)


def cc_with_defaults(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    p = CC.defaults
    return p["weight"] * cc_loss(student, teacher, p["gamma"], int(p["order"]))


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "kd_loss": kd_loss,
    "dkd_loss": dkd_loss,
    "dist_loss": dist_loss,
    "kd_ls_loss": kd_ls_loss,
    "fitnet_loss": fitnet_loss,
    "at_loss": at_loss,
    "sp_loss": sp_loss,
    "rkd_distance_loss": rkd_distance_loss,
    "rkd_angle_loss": rkd_angle_loss,
    "pkt_loss": pkt_loss,
    "vid_loss": vid_loss,
    "crd_nce_loss": crd_nce_loss,
    "ensemble_kd_loss": ensemble_kd_loss,
    "kd3a_loss": kd3a_loss,
    "mt_mtda_loss": mt_mtda_loss,
    "common_space_mmd": common_space_mmd,
    "reconstruction_loss": reconstruction_loss,
    "minimax_entropy_loss": minimax_entropy_loss,
    "ft_loss": ft_loss,
    "ab_loss": ab_loss,
    "nst_loss": nst_loss,
    "cc_loss": cc_loss,
    "hcl_loss": hcl_loss,
    "mlkd_loss": mlkd_loss,
    "rotation_loss": rotation_loss,
    "adda_discriminator_loss": adda_discriminator_loss,
    "adda_encoder_loss": adda_encoder_loss,
    "sskd_ss_loss": sskd_ss_loss,
    "sskd_tf_loss": sskd_tf_loss,
    "dafl_one_hot_loss": dafl_one_hot_loss,
    "dafl_activation_loss": dafl_activation_loss,
    "dafl_information_entropy_loss": dafl_information_entropy_loss,
    "zskt_divergence": zskt_divergence,
    "zskt_generator_loss": zskt_generator_loss,
    "meta_dmoe_inner_loss": meta_dmoe_inner_loss,
    "mlkd_with_defaults": mlkd_with_defaults,
    "reviewkd_with_defaults": reviewkd_with_defaults,
    "ft_with_defaults": ft_with_defaults,
    "cc_with_defaults": cc_with_defaults,
}
CASES = json.loads(GOLDEN.read_text())["cases"]


def as_tensor(value: list) -> torch.Tensor:
    """float64 for real values, int64 for labels (numpy keeps JSON's full precision)."""
    return torch.from_numpy(np.asarray(value))


def test_every_loss_has_a_golden_case() -> None:
    assert {case["loss"] for case in CASES} == set(LOSSES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['loss']}-{i}" for i, c in enumerate(CASES)])
def test_loss_matches_the_numpy_value(case: dict) -> None:
    tensors = {
        name: [as_tensor(v) for v in value] if name.endswith("_maps") else as_tensor(value)
        for name, value in case["tensors"].items()
    }
    value = LOSSES[case["loss"]](**tensors, **case["params"])
    assert float(value) == pytest.approx(case["expected"], abs=1e-5)
