"""`teacher`: the source-trained teacher itself, evaluated as a row of its own.

Not trained per run: the harness evaluates the shared teacher, so every table shows what the
students are distilled from (and whether that teacher cleared its accuracy floor).
"""

from __future__ import annotations

from benchmark.methods.base import Method
from benchmark.methods.registry import METHODS
from benchmark.suite.protocols import Needs


@METHODS.register("teacher")
class Teacher(Method):
    family = "baseline"
    paper = "reference row: the source-trained teacher, no student"
    needs = Needs(teacher=None, data_free=None)
    trains_student = False
