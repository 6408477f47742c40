"""Shared fixtures: one domain cache per test session, tiny suites written to tmp_path, and
one finished tiny sweep that every test reading real records shares (copy it to change it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import yaml


def pin_to_own_cores() -> int:
    """Pin this pytest-xdist worker, and so every `xdkd` subprocess it starts, to its own share
    of the cores; return that share's size. Unpinned, a subprocess's two compute threads and
    the other worker's thread share 2 cores, and OpenMP threads that wait on a preempted
    sibling made a training step 2x slower than a fair share of the cores would."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not hasattr(os, "sched_setaffinity") or not worker.startswith("gw"):
        return max(1, (os.cpu_count() or 1) // workers)
    cores = sorted(os.sched_getaffinity(0))
    share = len(cores) // workers
    if share == 0:  # more workers than cores: sharing cannot be avoided
        return 1
    index = int(worker[2:]) % workers
    os.sched_setaffinity(0, cores[index * share : (index + 1) * share])
    return share


# `make test` runs pytest-xdist's workers, one a core: each takes one thread then
torch.set_num_threads(pin_to_own_cores())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "long: runs for tens of seconds (subprocesses, whole sweeps); started first"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests first, the rest in their order: xdist's workers then share out the
    short ones at the end, and no long test runs alone on one core while the other idles
    (longest-processing-time-first scheduling)."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def session_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test session's temporary directory, the one all xdist workers of it share."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@pytest.fixture(scope="session", autouse=True)
def domain_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test builds domains into the same session cache, never the user's; the workers
    of one xdist session share it (a build holds a file lock, so each domain is built once)."""
    root = session_directory(tmp_path_factory) / "xdkd-cache"
    root.mkdir(exist_ok=True)
    patch = pytest.MonkeyPatch()
    patch.setenv("XDKD_CACHE", str(root))
    yield root
    patch.undo()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """The machine is shared: one core is enough for tiny networks (a module opts in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_RECIPE = {"epochs": 1, "batch_size": 64, "lr": 0.003}
# optdigits' 1,295 training images make a LeNet epoch of 20 steps; mnist is the target
TINY_PAIR = {"source": "optdigits", "target": "mnist"}


def suite_writer(directory: Path):
    """Write a small suite YAML (lenet teacher, 1 epoch) into `directory`; fields override."""

    def write(**fields) -> Path:
        suite = {
            "name": "tiny",
            "pairs": [TINY_PAIR],
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
        path = directory / "tiny.yaml"
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        return path

    return write


@pytest.fixture
def tiny_suite(tmp_path: Path):
    return suite_writer(tmp_path)


@pytest.fixture(scope="module")
def tiny_suite_module(tmp_path_factory: pytest.TempPathFactory):
    """`tiny_suite` for module-scoped fixtures (one sweep shared by a module's tests)."""
    return suite_writer(tmp_path_factory.mktemp("suite"))


@pytest.fixture(scope="session")
def suite_files():
    """`suite_writer` for session-scoped fixtures: `suite_files(directory)(**fields)`."""
    return suite_writer


@pytest.fixture(scope="session")
def built_once(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`built_once(name, build)`: the session directory `name`, made by `build(directory)` in
    the first xdist worker that asks for it; the others wait on its lock, then read it. (A
    module-scoped fixture is built again in every worker that draws one of its tests.)"""
    from benchmark.locks import file_lock

    def get(name: str, build: Callable[[Path], None]) -> Path:
        directory = session_directory(tmp_path_factory) / name
        with file_lock(directory.with_suffix(".lock")):
            if not (directory / ".built").is_file():
                shutil.rmtree(directory, ignore_errors=True)  # a build that failed midway
                directory.mkdir()
                build(directory)
                (directory / ".built").touch()
        return directory

    return get


@pytest.fixture(scope="session")
def tiny_sweep(built_once, domain_cache: Path) -> Path:
    """A finished sweep of the tiny suite (teacher, source_only, kd): `runs/`, `results/`
    and the suite file `tiny.yaml` under the returned directory. Read it; copy it to change
    it."""
    from benchmark.cli import main

    def build(directory: Path) -> None:
        suite = suite_writer(directory)()
        argv = ["run", str(suite), "--out", str(directory / "runs")]
        argv += ["--results", str(directory / "results"), "--workers", "0", "--no-progress"]
        assert main([*argv, "--device", "cpu"]) == 0

    return built_once("tiny-sweep", build)
