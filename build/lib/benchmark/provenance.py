"""Where a number came from: code version, library versions, device."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from benchmark.errors import XdkdError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else CPU (the fast path sets cuDNN's kernel policy)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise XdkdError(
            f"--device '{name}' is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise XdkdError(f"--device {name}: no CUDA GPU is visible here; use --device cpu or auto")
    return device


def device_description(device: torch.device) -> str:
    """The device as records state it. On CPU with the processor model and the instruction
    set PyTorch's kernels use (AVX2, AVX512, ...): the same spec and seed give other numbers
    on another kind of CPU, since other kernels sum in another order."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    kernels = torch.backends.cpu.get_cpu_capability()
    return f"cpu ({torch.get_num_threads()} threads, {cpu_model()}, {kernels} kernels)"


@functools.cache
def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else its architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def code_version() -> str:
    """The git commit of the checkout (with -dirty), or the installed package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return metadata.version("xdkd-bench")


def provenance() -> dict[str, str]:
    versions = {pkg: metadata.version(pkg) for pkg in ("torch", "timm", "numpy")}
    return {"code": code_version(), "python": platform.python_version(), **versions}
