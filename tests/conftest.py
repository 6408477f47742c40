"""Shared fixtures: one domain cache per test session, tiny suites written to tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def domain_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test builds domains into the same session cache, never the user's."""
    root = tmp_path_factory.mktemp("xdkd-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("XDKD_CACHE", str(root))
    yield root
    patch.undo()


TINY_RECIPE = {"epochs": 1, "batch_size": 64, "lr": 0.003}


@pytest.fixture
def tiny_suite(tmp_path: Path):
    """Write a small suite YAML (lenet teacher, 1 epoch) and return its path."""

    def write(**fields) -> Path:
        suite = {
            "name": "tiny",
            "pairs": [{"source": "mnist", "target": "mnistm"}],
            "teachers": ["lenet"],
            "students": ["lenet"],
            "methods": ["teacher", "source_only", "kd"],
            "seeds": [0],
            "teacher_recipe": TINY_RECIPE,
            "student_recipe": TINY_RECIPE,
            "teacher_floor": 0.5,
            "corruptions": ["gaussian_noise", "contrast", "rotate"],
            "corruption_images": 200,
            **fields,
        }
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        return path

    return write
