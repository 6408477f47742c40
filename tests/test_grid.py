"""Suite grids (ShiftKD's data and optimisation factors as axes) and the augmentation
policies they sweep: expansion into the product, stable keys, one-line errors, the policies'
images and soft labels, and one tiny sweep whose leaderboard tells the cells apart."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from benchmark.data.augment import mix, transformed
from benchmark.data.tensors import Stream
from benchmark.errors import XdkdError
from benchmark.methods.base import Method
from benchmark.suite.config import AUGMENT_POLICIES, Recipe
from benchmark.suite.expansion import expand
from benchmark.suite.loader import load_suite

SUITE = {
    "name": "g",
    "pairs": [{"source": "mnist", "target": "mnistm"}],
    "teachers": ["lenet"],
    "students": ["lenet"],
    "methods": ["kd", "source_only"],
}
GRID = {
    "student_recipe.augment": ["none", "mixup", "randaugment"],
    "student_recipe.optimizer": ["adamw", "sgd"],
}


def write(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**SUITE, **fields}, sort_keys=False))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(XdkdError) as error:
        load_suite(path)
    return str(error.value)


def test_a_grid_expands_into_its_product_with_distinct_keys_and_rows(tmp_path: Path):
    specs = expand(load_suite(write(tmp_path, grid=GRID)))
    assert len(specs) == 2 * 3 * 2
    assert len({s.key for s in specs}) == len(specs)
    rows = {s.method.row for s in specs}
    assert len(rows) == len(specs)
    assert "kd [augment=mixup, optimizer=sgd]" in rows
    cell = next(s for s in specs if s.method.row == "kd [augment=mixup, optimizer=sgd]")
    assert (cell.student_recipe.augment, cell.student_recipe.optimizer) == ("mixup", "sgd")


def test_keys_outside_a_grid_and_of_true_and_standard_stay_as_they_were(tmp_path: Path):
    plain = expand(load_suite(write(tmp_path)))
    named = expand(load_suite(write(tmp_path, student_recipe={"augment": "standard"})))
    assert [s.key for s in plain] == [s.key for s in named]
    assert Recipe(augment="standard") == Recipe(augment=True)
    assert Recipe(augment="none").model_dump()["augment"] is False
    assert "grid" not in plain[0].method.model_dump()


def test_shared_last_parts_keep_their_whole_keys(tmp_path: Path):
    grid = {"student_recipe.augment": ["none"], "teacher_recipe.augment": ["none", "mixup"]}
    rows = {s.method.row for s in expand(load_suite(write(tmp_path, grid=grid)))}
    assert "kd [student_recipe.augment=none, teacher_recipe.augment=mixup]" in rows


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        ({"student_recipe.nope": [1]}, "grid.student_recipe.nope: value 1: unknown field"),
        (
            {"student_recipe.augment": ["none", "blur"]},
            "grid.student_recipe.augment: value 'blur': unknown augmentation policy 'blur'",
        ),
        ({"methods.5.name": ["kd"]}, "grid.methods.5.name: methods.5.name='kd': '5' is not"),
        ({"corruptions": [["contrast"]]}, "grid: 'corruptions' cannot be swept"),
    ],
)
def test_a_bad_grid_key_or_value_is_one_line_naming_it(tmp_path: Path, grid, expected):
    message = error_of(write(tmp_path, grid=grid))
    assert "\n" not in message
    assert expected in message


IMAGES = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)


def stream_batch(policy: str | bool, seed: int) -> torch.Tensor:
    from benchmark.data.tensors import DeviceSplit

    split = DeviceSplit(IMAGES, torch.arange(6))
    generator = torch.Generator().manual_seed(seed)
    images, _ = next(Stream(split, 6, generator, policy))
    return images


@pytest.mark.parametrize("policy", AUGMENT_POLICIES)
def test_each_policy_changes_the_images_but_none_and_is_deterministic(policy: str):
    plain = stream_batch(False, 0)
    once, again = stream_batch(policy, 0), stream_batch(policy, 0)
    assert torch.equal(once, again)
    assert once.dtype == torch.float32 and once.shape == plain.shape
    assert once.min() >= -1 and once.max() <= 1
    assert torch.equal(once, plain) == (policy == "none")
    assert torch.equal(stream_batch(True, 0), stream_batch("standard", 0))


@pytest.mark.parametrize("policy", ["randaugment", "autoaugment"])
def test_device_policies_keep_uint8_and_leave_the_global_generator(policy: str):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    out = transformed(IMAGES, policy, torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(3), expected)
    assert out.dtype == torch.uint8 and out.shape == IMAGES.shape
    other = transformed(IMAGES, policy, torch.Generator().manual_seed(2))
    assert not torch.equal(out, other)


@pytest.mark.parametrize("policy", ["mixup", "cutmix"])
def test_mixing_gives_soft_labels_and_changes_only_images(policy: str):
    images = IMAGES.float() / 127.5 - 1
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    mixed, soft = mix(images, labels, 10, policy, torch.Generator().manual_seed(0))
    again, soft_again = mix(images, labels, 10, policy, torch.Generator().manual_seed(0))
    assert torch.equal(mixed, again) and torch.equal(soft, soft_again)
    assert soft.shape == (6, 10)
    assert torch.allclose(soft.sum(1), torch.ones(6))
    assert not torch.equal(mixed, images)
    assert mixed.min() >= -1 and mixed.max() <= 1


def test_soft_label_cross_entropy_is_the_formula():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.25, 0.75]])
    method = Method("m")
    expected = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(method.cross_entropy(logits, soft), expected)
    method.label_smoothing = 0.1
    smoothed = 0.9 * soft + 0.1 / 3
    expected = -(smoothed * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(method.cross_entropy(logits, soft), expected)


@pytest.mark.long
def test_a_grid_sweep_labels_both_cells_in_its_leaderboard(tmp_path: Path, tiny_suite):
    from benchmark.cli import main

    suite = tiny_suite(methods=["source_only"], grid={"student_recipe.augment": ["none", "mixup"]})
    argv = ["run", str(suite), "--out", str(tmp_path / "runs")]
    argv += ["--results", str(tmp_path / "results"), "--workers", "0", "--no-progress"]
    assert main([*argv, "--device", "cpu"]) == 0
    board = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "source_only [augment=none]" in board
    assert "source_only [augment=mixup]" in board
