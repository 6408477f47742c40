"""Distillation methods: one file each, registering itself by name when imported.

Every module of this package is imported here, so adding a method is adding one file.
"""

import importlib
import pkgutil

from benchmark.methods.base import Batch, Method
from benchmark.methods.catalogue import live_catalogue
from benchmark.methods.registry import METHODS, create_method
from benchmark.plugins import load_plugins
from benchmark.suite.catalogue import serve_live

_SHARED = {"base", "registry", "parts", "adapters", "teachers", "catalogue", "__main__"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SHARED:
        importlib.import_module(f"{__name__}.{_module.name}")

load_plugins()  # methods of installed plug-ins and --plugin modules, after the package's own
serve_live(live_catalogue)  # this process's catalogue is the registries themselves

__all__ = ["METHODS", "Batch", "Method", "create_method"]
