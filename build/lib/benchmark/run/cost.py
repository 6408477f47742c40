"""What a network costs: parameters, FLOPs (torch's own counter), inference latency."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def flops_per_image(model: nn.Module, image_size: int, device: torch.device) -> int:
    """FLOPs of one 3 x size x size forward pass (a multiply-add counts as 2)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a timing is true."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def latency_ms(
    model: nn.Module, batch_size: int, image_size: int, device: torch.device, repeats: int = 5
) -> float:
    """Median wall time of one eval-mode forward pass of a batch, after two warm-up passes."""
    was_training = model.training
    model.eval()
    images = torch.zeros(batch_size, 3, image_size, image_size, device=device)
    timings = []
    for attempt in range(repeats + 2):
        synchronize(device)
        started = time.perf_counter()
        model(images)
        synchronize(device)
        if attempt >= 2:
            timings.append((time.perf_counter() - started) * 1000)
    model.train(was_training)
    return statistics.median(timings)


def model_cost(model: nn.Module, image_size: int, device: torch.device) -> dict[str, float]:
    return {
        "params": float(parameter_count(model)),
        "flops": float(flops_per_image(model, image_size, device)),
        "latency_ms_b1": latency_ms(model, 1, image_size, device),
        "latency_ms_b256": latency_ms(model, 256, image_size, device, repeats=3),
    }
