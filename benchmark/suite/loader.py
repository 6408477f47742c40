"""Suites from YAML, with one line per mistake: `file:line: field: problem` for what the
file says, `--set key=value: field: problem` for what an override set. After the fields,
`benchmark.suite.expansion.check_suite` checks what they mean together. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from benchmark.errors import XdkdError
from benchmark.suite.catalogue import Catalogue
from benchmark.suite.config import Suite
from benchmark.suite.expansion import SuiteProblem, check_suite
from benchmark.suite.yaml_text import Source, apply_overrides, pydantic_message, read_yaml


def load_suite(
    path: str | Path, overrides: list[str] | None = None, catalogue: Catalogue | None = None
) -> Suite:
    """A validated suite; every name checked against `catalogue` (default: the cached one)."""
    from benchmark.suite.catalogue import catalogue as cached

    path = Path(path)
    _, raw, root = read_yaml(path, "suite file")
    if not isinstance(raw, dict):
        raise XdkdError(f"{path}: a suite is a YAML mapping with name, pairs, teachers, ...")
    source = Source(path, root, apply_overrides(raw, overrides or []))
    raw.setdefault("name", path.stem)
    known = catalogue or cached()
    try:
        suite = Suite.model_validate(raw, context={"catalogue": known})
    except ValidationError as error:
        raise XdkdError(pydantic_message(source, error)) from None
    try:
        check_suite(suite, known)
    except SuiteProblem as problem:
        raise XdkdError(source.message(problem.location, problem.message)) from None
    return suite
