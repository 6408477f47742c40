"""The registries write the catalogue of names (`benchmark.suite.catalogue`): methods with
their declarations, backbones and corruptions. `python -m benchmark.methods` prints it as
JSON; that is how a torch-free process gets it when no cached copy fits the code."""

from __future__ import annotations

import functools

from benchmark.corruptions.catalogue import live_corruptions
from benchmark.methods.registry import METHODS
from benchmark.models import backbone_names
from benchmark.suite.catalogue import Catalogue, MethodCard


def live_catalogue() -> Catalogue:
    """Built from the registries (imports torch, timm, every method and corruption); methods
    registered at run time (test doubles, plug-ins) are in it."""
    methods = {}
    for name, cls in METHODS.items():
        origin = METHODS.origin_of(name)
        methods[name] = MethodCard(
            name=name,
            family=cls.family,
            paper=cls.paper,
            defaults=dict(cls.defaults),
            needs=cls.needs.as_dict(),
            trains_student=cls.trains_student,
            student_is_teacher_architecture=cls.student_is_teacher_architecture,
            origin=origin.label if origin else cls.__module__,
            plugin=origin.version if origin else None,
            adapts_at_test=cls.adapts_at_test,
            search={name: d.as_dict() for name, d in cls.search.items()},
        )
    parts = _live_parts()
    return Catalogue(methods, parts.backbones, parts.corruptions, parts.groups)


@functools.cache
def _live_parts() -> Catalogue:
    """Backbones and corruptions, which nothing registers after import."""
    corruptions = live_corruptions()
    return Catalogue(
        backbones=backbone_names(), corruptions=corruptions.corruptions, groups=corruptions.groups
    )
