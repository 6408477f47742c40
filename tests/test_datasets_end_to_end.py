"""A family added as one YAML file, its images in an Office-31 layout under a data root, runs
through `xdkd run` like an embedded one."""

from __future__ import annotations

import json

import pytest
import yaml
from dataset_writers import OFFICE_CLASSES, office_family, save_image, write_family

from benchmark.cli import main

DOMAINS = ("amazon", "webcam", "dslr")
RECIPE = {"epochs": 1, "batch_size": 16, "lr": 0.003}


@pytest.mark.long
def test_an_image_folder_family_runs_end_to_end(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    for domain_index, domain in enumerate(DOMAINS):
        for label, cls in enumerate(OFFICE_CLASSES):
            for index in range(10):
                path = root / "fxe" / domain / "images" / cls / f"frame_{index:04d}.jpg"
                save_image(path, label + domain_index, (36 + index, 28))
    datasets = tmp_path / "datasets"
    family = office_family("fxe", DOMAINS)
    for entry in family["domains"].values():
        entry["images"] = 30
    write_family(datasets, family)
    monkeypatch.setenv("XDKD_DATASETS", str(datasets))
    monkeypatch.setenv("XDKD_CACHE", str(tmp_path / "cache"))
    suite = {
        "name": "fxe",
        "pairs": [{"source": "fxe_amazon", "target": "fxe_webcam"}],
        "teachers": ["lenet"],
        "students": ["lenet"],
        "methods": ["teacher", "source_only", "kd"],
        "image_size": 32,
        "teacher_recipe": RECIPE,
        "student_recipe": RECIPE,
        "corruptions": ["gaussian_noise"],
        "corruption_images": 20,
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    argv = ["run", str(tmp_path / "suite.yaml"), "--out", str(tmp_path / "runs")]
    argv += ["--results", str(tmp_path / "results"), "--data-root", str(root)]
    assert main([*argv, "--device", "cpu", "--no-progress"]) == 0
    assert "3 runs done" in capsys.readouterr().out
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("record.json")]
    assert len(records) == 3
    for record in records:
        assert set(record["per_domain"]) == {"fxe_amazon", "fxe_webcam", "fxe_dslr"}
        assert 0 <= record["metrics"]["target_acc"] <= 1
        assert record["robustness"]["items"]["fxe_webcam"]["images"] == 6  # 20% of 30
