"""The fast path: what each mode turns on per device, the layout it gives networks, the
one-stream corruption evaluation, and that it leaves run keys and determinism alone."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from benchmark.data.tensors import DeviceSplit
from benchmark.errors import XdkdError
from benchmark.methods.source_only import SourceOnly
from benchmark.models.digit_cnns import lenet
from benchmark.run import fastpath
from benchmark.run.evaluate import accuracy, corruption_accuracy
from benchmark.run.fastpath import FastPath, fast_path_mode
from benchmark.run.train import TrainData, fit
from benchmark.seeding import generator
from benchmark.suite.config import Recipe

CPU = torch.device("cpu")


def test_auto_on_cpu_is_channels_last_only_and_off_is_nothing():
    auto = FastPath.for_device(CPU, "auto")
    assert auto.channels_last and auto.mode == "auto"
    assert not (auto.bf16_autocast or auto.tf32 or auto.fused_adamw or auto.cudnn_benchmark)
    assert FastPath.for_device(CPU, "off") == FastPath()
    switches = {k: v for k, v in FastPath().settings().items() if k != "mode"}
    assert switches == {k: k == "inference_mode" for k in switches}
    assert FastPath.for_device(CPU, "max").cudnn_benchmark is False  # CUDA only


@pytest.mark.parametrize("bf16_units", [False, True])
def test_max_on_cpu_adds_bf16_only_where_the_cpu_has_bf16_units(monkeypatch, bf16_units):
    monkeypatch.setattr(fastpath, "cpu_has_bf16_units", lambda: bf16_units)
    full = FastPath.for_device(CPU, "max")
    assert full.bf16_autocast is bf16_units and full.channels_last
    assert not FastPath.for_device(CPU, "auto").bf16_autocast  # auto keeps fp32 on CPU
    assert torch.is_autocast_enabled("cpu") is False
    with full.autocast(CPU):
        assert torch.is_autocast_enabled("cpu") is bf16_units


def test_the_mode_comes_from_the_environment_and_a_bad_one_is_one_line(monkeypatch):
    monkeypatch.setenv("XDKD_FAST_PATH", "off")
    assert fast_path_mode() == "off" and FastPath.for_device(CPU) == FastPath()
    monkeypatch.setenv("XDKD_FAST_PATH", "fastest")
    with pytest.raises(XdkdError, match="XDKD_FAST_PATH='fastest'.*auto, max or off"):
        fast_path_mode()


def test_prepare_puts_convolutions_in_channels_last_and_leaves_other_networks():
    network = FastPath.for_device(CPU, "auto").prepare(lenet(num_classes=10))
    conv = next(m for m in network.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    mlp = FastPath.for_device(CPU, "auto").prepare(nn.Sequential(nn.Linear(4, 4)))
    assert mlp[0].weight.is_contiguous()
    plain = FastPath().prepare(lenet(num_classes=10))
    assert next(m for m in plain.modules() if isinstance(m, nn.Conv2d)).weight.is_contiguous()


def _split(count: int, seed: int) -> DeviceSplit:
    draw = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=draw)
    return DeviceSplit(images, torch.randint(0, 10, (count,), generator=draw))


def test_one_stream_over_the_cells_gives_each_cell_its_own_accuracy():
    torch.manual_seed(0)
    network = lenet(num_classes=10).eval()
    cells = {("a", 1): _split(3, 1), ("b", 2): _split(45, 2), ("c", 1): _split(7, 3)}
    streamed = corruption_accuracy(network, cells, batch_size=16)
    alone = {cell: accuracy(network, split, batch_size=16) for cell, split in cells.items()}
    assert streamed == pytest.approx(alone, abs=1e-6)
    assert len({round(v, 4) for v in streamed.values()}) > 1  # the cells are told apart


def _train(fast: FastPath) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    network = fast.prepare(lenet(num_classes=10))
    from benchmark.data.setting import Part

    data = TrainData(sources=[Part("s", "s", _split(96, 4))], num_classes=10)
    recipe = Recipe(epochs=2, batch_size=32)
    result = fit(
        network,
        None,
        SourceOnly("source_only"),
        data,
        recipe,
        generator(0, CPU, "fast"),
        "t",
        select=False,
        progress=False,
        fast=fast,
    )
    return result.states[2]


def test_the_fast_path_is_bit_identical_run_to_run_and_keeps_its_layout():
    auto = FastPath.for_device(CPU, "auto")
    first, second = _train(auto), _train(auto)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert first["stages.0.0.weight"].is_contiguous(memory_format=torch.channels_last)


def test_cpu_bf16_training_is_bit_identical_run_to_run_and_differs_from_fp32():
    """`max` on a CPU with bf16 units: a fixed choice of kernels, so the same numbers every
    run, and other numbers than auto's (why it is not in auto)."""
    bf16 = FastPath(mode="max", channels_last=True, bf16_autocast=True)
    first, second = _train(bf16), _train(bf16)
    assert all(torch.equal(first[k], second[k]) for k in first)
    fp32 = _train(FastPath.for_device(CPU, "auto"))
    assert not torch.equal(first["fc.weight"], fp32["fc.weight"])
    assert first["fc.weight"].dtype == torch.float32  # autocast: the weights stay fp32


def test_compile_is_written_only_when_on_so_old_keys_stand():
    assert "compile" not in Recipe().model_dump(mode="json")
    assert Recipe(compile=True).model_dump(mode="json")["compile"] is True
    assert Recipe.model_validate(Recipe().model_dump(mode="json")) == Recipe()


def test_xdkd_run_rejects_an_unknown_fast_path_mode_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "run", "--fast-path", "turbo"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "invalid choice: 'turbo'" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_jobs_per_gpu_auto_fills_a_big_gpu_with_small_runs_and_one_core_each():
    from benchmark.executors.sizing import CUDA_CONTEXT_BYTES, jobs_for_memory

    gib = 2**30
    assert jobs_for_memory(141 * gib, 300 * 2**20, cpus=16, gpus=1) == 16  # the cores bind
    assert jobs_for_memory(141 * gib, 300 * 2**20, cpus=64, gpus=1) == 16  # the cap binds
    assert jobs_for_memory(24 * gib, 10 * gib, cpus=16, gpus=1) == 1  # memory binds
    run = 4 * gib - CUDA_CONTEXT_BYTES
    assert jobs_for_memory(40 * gib, run, cpus=64, gpus=1) == 8  # 0.85 * 40 // 4
    assert jobs_for_memory(141 * gib, 300 * 2**20, cpus=8, gpus=4) == 2  # cores per GPU
    assert jobs_for_memory(8 * gib, 80 * gib, cpus=8, gpus=1) == 1  # never none


def test_jobs_per_gpu_auto_is_one_worker_without_a_gpu():
    from benchmark.executors.sizing import auto_jobs_per_gpu

    assert auto_jobs_per_gpu([], CPU) == (1, "one worker (no GPU)")
