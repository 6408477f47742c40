"""The fast path: settings that make the same training cheaper, chosen per device and named in
every record (`training.fast_path`, `evaluation_fast_path`).

- `channels_last`: convolution weights (and so activations) in NHWC, the layout oneDNN's and
  cuDNN's fastest convolution kernels use (PyTorch's channels-last tutorial). On this
  project's 2-core CPU a resnet18 forward of 256 32-px images took 307 ms in NCHW and 174 ms
  in NHWC, a training step 1.15x less; `xdkd bench` measures it on any machine.
- evaluation runs under `torch.inference_mode` (always: it changes no number); teachers in
  training under `no_grad`, since a loss may not use inference-mode tensors without a copy,
  and inference mode measured no faster here.
- CUDA only: bf16 autocast of forward passes and losses (no loss scaling is needed for bf16),
  TF32 matmuls and convolutions, fused AdamW (one kernel for the whole update).
- `max` adds cuDNN autotuning (`cudnn.benchmark`), which picks convolution algorithms by timing
  them, so two runs may pick differently; and on a CPU with bf16 units (AVX512-BF16 or AMX),
  bf16 autocast. On this project's 2-core AVX512-BF16 CPU it made the digits bench's training
  loop 1.65-1.98x faster (four paired calls); it is not in `auto` on CPU because the committed
  results were trained in fp32 on CPU, and `auto` reproduces them bit for bit. A CPU without
  bf16 units would emulate it (3.6x slower, measured on an earlier machine), so it is never
  used there.

Determinism policy: on one device, `auto` (the default) and `off` give bit-identical numbers
for the same spec and seed: every setting of `auto` is a fixed choice of kernels, and cuDNN
stays in deterministic mode. `max` gives that up for cuDNN's autotuner (its CPU bf16 stays
bit-identical run to run, a fixed choice of kernels too). The layout and the CUDA settings
round differently from `off`, so `auto` and `off` differ from each other within floating-point
noise; the mode is recorded, never hashed into the run key. `torch.compile` is a recipe setting
(`compile: true`), hashed into the key since it changes the numbers.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from benchmark.errors import XdkdError

if TYPE_CHECKING:  # torch is imported where it is used: `xdkd --help` checks the mode
    import torch
    from torch import nn

MODES = ("auto", "max", "off")


def fast_path_mode() -> str:
    """$XDKD_FAST_PATH (`xdkd run --fast-path`): auto (default), max or off, read in every
    process of a sweep so workers and cluster tasks run like the driver asked."""
    mode = os.environ.get("XDKD_FAST_PATH") or "auto"
    if mode not in MODES:
        raise XdkdError(f"XDKD_FAST_PATH={mode!r} is not a fast-path mode; use auto, max or off")
    return mode


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX tiles), as PyTorch's
    CPU capability checks report it."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def has_convolutions(model: nn.Module) -> bool:
    from torch import nn

    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@dataclass(frozen=True)
class FastPath:
    """Which fast-path settings are on (see the module docstring)."""

    mode: str = "off"
    channels_last: bool = False
    bf16_autocast: bool = False
    tf32: bool = False
    fused_adamw: bool = False
    cudnn_benchmark: bool = False

    @classmethod
    def for_device(cls, device: torch.device, mode: str | None = None) -> FastPath:
        import torch

        mode = mode or fast_path_mode()
        if mode == "off":
            return cls()
        cuda = device.type == "cuda"
        cpu_bf16 = device.type == "cpu" and mode == "max" and cpu_has_bf16_units()
        return cls(
            mode=mode,
            channels_last=True,
            bf16_autocast=(cuda and torch.cuda.is_bf16_supported()) or cpu_bf16,
            tf32=cuda,
            fused_adamw=cuda,
            cudnn_benchmark=cuda and mode == "max",
        )

    def settings(self) -> dict[str, object]:
        """What a record says about the fast path of the run."""
        return {**asdict(self), "inference_mode": True}

    def configure_backends(self) -> None:
        """Process-wide switches: cuDNN's algorithm choice and TF32."""
        import torch

        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.deterministic = not self.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32

    def prepare(self, model: nn.Module) -> nn.Module:
        """The network in the layout of this fast path (in place; returned for chaining).
        Activations follow the weights' layout, so inputs need no conversion."""
        import torch

        if self.channels_last and has_convolutions(model):
            model.to(memory_format=torch.channels_last)
        return model

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The forward passes' precision: bf16 autocast where it is on, else as they are."""
        import torch

        if self.bf16_autocast and device.type in ("cuda", "cpu"):
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()
