"""CI's regression check without training: the `ci` suite still expands to exactly the runs
its committed reference holds, so `make regression` (which trains the suite and runs `xdkd
check` against baselines/ci.reference.json; CI runs it after `make test`) compares like with
like. A change to a run's spec changes its key and fails here at once; after an intended
change, remake the reference as baselines/ci.yaml explains, and say why in the commit.
"""

import json
from pathlib import Path

from benchmark.expansion import expand
from benchmark.suites import load_suite

BASELINES = Path(__file__).resolve().parents[1] / "baselines"


def test_the_ci_suite_expands_to_the_runs_of_its_reference():
    reference = json.loads((BASELINES / "ci.reference.json").read_text())
    committed = {
        (cell["method"], int(seed), run["key"])
        for cell in reference["cells"]
        for seed, run in cell["seeds"].items()
    }
    specs = expand(load_suite(BASELINES / "ci.yaml"))
    assert {(s.method.name, s.seed, s.key) for s in specs} == committed
