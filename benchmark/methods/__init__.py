"""Distillation methods: one file each, registered by name on import."""

from benchmark.methods import kd, source_only, teacher  # noqa: F401  (registration)
from benchmark.methods.base import Batch, Method
from benchmark.methods.registry import METHODS, create_method

__all__ = ["METHODS", "Batch", "Method", "create_method"]
