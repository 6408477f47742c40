"""`xdkd bench`: its JSON, its table, its scaling files and its errors, on tiny step counts."""

import json

import pytest
import torch

from benchmark.cli import main
from benchmark.run import fastpath
from benchmark.run.bench import fast_path_variants, generated_images


@pytest.mark.long
def test_the_bench_prints_every_loop_and_writes_the_json_and_the_scaling_files(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(fastpath, "cpu_has_bf16_units", lambda: True)  # as this CPU of ours
    path = tmp_path / "out" / "bench.json"
    argv = ["bench", "--device", "cpu", "--steps", "1", "--eval-images", "20", "--workers", "1"]
    argv += ["--scaling", "--scaling-sizes", "32", "40", "--scaling-batches", "2", "4"]
    assert main([*argv, "--json", str(path), "--out", str(tmp_path)]) == 0
    result = json.loads(path.read_text())
    assert result["job"] == "digits" and result["device"].startswith("cpu")
    loops = [loop["loop"] for loop in result["loops"]]
    assert loops == [
        "suite, fast path off",
        "suite, fast path +channels_last",
        "suite, fast path +bf16_autocast",
        "reference (DataLoader, v2, NCHW)",
    ]
    assert [loop["fast_path"] for loop in result["loops"]] == ["off", "auto", "max", ""]
    for key in ("suite_train_img_s", "reference_train_img_s", "eval_img_s", "teacher_eval_img_s"):
        assert result[key] > 0
    assert result["train_ratio"] == pytest.approx(
        result["suite_train_img_s"] / result["reference_train_img_s"]
    )
    assert result["suite_fast_path"] == "+channels_last"  # auto's: what a run uses
    assert result["max_fast_path"] == "suite, fast path +bf16_autocast"
    assert result["max_train_ratio"] == pytest.approx(
        result["loops"][2]["img_s"] / result["reference_train_img_s"]
    )
    printed = capsys.readouterr().out
    assert "train_ratio" in printed and "reference (DataLoader, v2, NCHW)" in printed
    assert "max_train_ratio (suite, fast path +bf16_autocast" in printed
    lines = (tmp_path / "scaling.csv").read_text().splitlines()
    assert lines[0] == "image_size,batch_size,train_img_s,step_ms" and len(lines) == 5
    assert [row["image_size"] for row in result["scaling"]] == [32, 32, 40, 40]
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "scaling.md").read_text()
    assert "| batch \\ image size | 32 px | 40 px |" in table
    assert table.startswith("Training images per second of the suite's KD loop")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--job", "imagenet"], "unknown bench job 'imagenet'"),
        (["--steps", "0"], "--steps 0: give 1 or more"),
        (["--scaling-sizes", "0"], "--scaling-sizes 0: give numbers of 1 or more"),
        (["--job", "sweep", "--teacher", "resnet19x"], "unknown backbone 'resnet19x'"),
        (["--job", "sweep", "--epochs", "0"], "--epochs 0: give 1 or more"),
    ],
)
def test_bad_bench_options_are_one_line(argv, message, capsys):
    assert main(["bench", "--device", "cpu", *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


@pytest.mark.parametrize("bf16_units", [False, True])
def test_each_fast_path_variant_adds_one_setting(monkeypatch, bf16_units):
    monkeypatch.setattr(fastpath, "cpu_has_bf16_units", lambda: bf16_units)
    variants = fast_path_variants(torch.device("cpu"))
    names = ["off", "+channels_last"] + ["+bf16_autocast"] * bf16_units
    assert [name for name, _ in variants] == names
    assert [fast.mode for _, fast in variants] == ["off", "auto"] + ["max"] * bf16_units
    assert variants[1][1].channels_last and not variants[0][1].channels_last
    assert all(fast.channels_last for _, fast in variants[1:])


def test_generated_images_carry_their_class_in_their_colour():
    images, labels = generated_images(200, 8, 4, seed=0)
    assert images.shape == (200, 8, 8, 3) and images.dtype.name == "uint8"
    means = [images[labels == c].mean(axis=(0, 1, 2)) for c in range(4)]
    assert len({tuple(m.round()) for m in means}) == 4
