"""The method registry and its one door, `create_method`."""

from __future__ import annotations

from benchmark.methods.base import Method
from benchmark.registry import Registry
from benchmark.suite.config import MethodSpec

METHODS: Registry[type[Method]] = Registry("method")


def create_method(spec: MethodSpec) -> Method:
    return METHODS.get(spec.name)(spec.name, **spec.params)
