import math

import pytest
import torch

from benchmark.models import create_backbone
from benchmark.run.calibration import expected_calibration_error, negative_log_likelihood
from benchmark.run.cost import flops_per_image, parameter_count
from benchmark.suite.config import BackboneSpec
from benchmark.suite.metrics import corruption_errors, mean_corruption_accuracy


def test_ece_worked_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.88, 0.12]])
    labels = torch.tensor([0, 0, 1, 0, 1])
    # bins of width 1/15: 0.9 and 0.88 share (0.867, 0.933]: accuracy 1/2, confidence 0.89;
    # 0.8 (wrong), 0.7 (right), 0.6 (right) sit alone.
    expected = (2 * abs(0.5 - 0.89) + 0.8 + 0.3 + 0.4) / 5
    assert expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-6)


def test_ece_is_zero_when_confidence_equals_accuracy():
    probs = torch.tensor([[0.5, 0.5]] * 4)
    assert expected_calibration_error(probs, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.0)


def test_nll_is_mean_negative_log_probability_of_the_label():
    logits = torch.tensor([[math.log(3), 0.0], [0.0, 0.0]])
    expected = (-math.log(0.75) - math.log(0.5)) / 2
    assert negative_log_likelihood(logits, torch.tensor([0, 1])) == pytest.approx(expected)


def test_corruption_error_and_relative_error_worked_by_hand():
    cells = {("fog", 1): 0.8, ("fog", 2): 0.6}
    reference = {("fog", 1): 0.7, ("fog", 2): 0.5}
    errors = corruption_errors(cells, 0.95, reference, 0.8)["fog"]
    assert errors["ce"] == pytest.approx((0.2 + 0.4) / (0.3 + 0.5))
    assert errors["relative_ce"] == pytest.approx((0.15 + 0.35) / (0.1 + 0.3))
    assert mean_corruption_accuracy(cells) == pytest.approx(0.7)


def test_relative_error_is_undefined_where_the_reference_barely_degrades():
    cells = {("fog", 1): 0.5, ("fog", 2): 0.4}
    reference = {("fog", 1): 0.79, ("fog", 2): 0.78}  # 1 + 2 = 3 points below its clean 0.8
    errors = corruption_errors(cells, 0.6, reference, 0.8)["fog"]
    assert math.isnan(errors["relative_ce"])
    assert errors["ce"] == pytest.approx((0.5 + 0.6) / (0.21 + 0.22))


def test_cost_counts_parameters_and_flops_of_a_linear_model():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    assert parameter_count(model) == 48 * 10 + 10
    assert flops_per_image(model, 4, torch.device("cpu")) == 2 * 48 * 10
    lenet = create_backbone(BackboneSpec(name="lenet"), 10)
    # multiply-adds x 2: conv1 28*28*32*(3*25), conv2 10*10*64*(32*25), fc 1600*512 + 512*10
    by_hand = 2 * (28 * 28 * 32 * 75 + 10 * 10 * 64 * 800 + 1600 * 512 + 512 * 10)
    assert flops_per_image(lenet, 32, torch.device("cpu")) == by_hand
