import math

import torch

from benchmark.methods.kd import kd_loss


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_kd_loss_matches_hand_computed_kl_times_t_squared():
    student = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]
    teacher = [[3.0, 2.0, 1.0], [1.0, 0.0, -1.0]]
    temperature = 2.0
    expected = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        p_s = softmax([v / temperature for v in s_row])
        p_t = softmax([v / temperature for v in t_row])
        expected += sum(t * math.log(t / s) for t, s in zip(p_t, p_s, strict=True))
    expected = expected / 2 * temperature**2
    value = kd_loss(torch.tensor(student), torch.tensor(teacher), temperature)
    assert abs(float(value) - expected) < 1e-6


def test_kd_loss_worked_by_hand():
    # teacher logits (ln 3, 0) -> p_t = (3/4, 1/4); student (0, 0) -> p_s = (1/2, 1/2)
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812; at T = 2 the logits are halved first.
    value = kd_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3), 0.0]]), 1.0)
    assert abs(float(value) - 0.130812) < 1e-6
    halved = kd_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[2 * math.log(3), 0.0]]), 2.0)
    assert abs(float(halved) - 4 * 0.130812) < 1e-5


def test_kd_loss_is_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    assert float(kd_loss(logits, logits, 4.0)) < 1e-6
    assert float(kd_loss(logits, logits.flip(1), 4.0)) > 0.01
