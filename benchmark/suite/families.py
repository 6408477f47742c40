"""The dataset families' declarations (datasets/*.yaml and the folders plug-ins and
`$XDKD_DATASETS` add): which domains exist, their family, classes and where their images come
from. Names and declarations only, torch-free and image-free: the schema layer checks a suite
against them; `benchmark.data` builds and loads the images."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from benchmark.errors import XdkdError
from benchmark.plugins import dataset_folders
from benchmark.registry import unknown_name_message
from benchmark.shipped import search_path
from benchmark.suite.family_schema import EmbeddedEntry, FamilyFile, PublishedEntry
from benchmark.suite.yaml_text import validation_message


@dataclass(frozen=True)
class DomainInfo:
    name: str
    family: str
    classes: tuple[str, ...]
    entry: EmbeddedEntry | PublishedEntry  # location fields filled in from the family
    file: Path  # the family file that declares it

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def embedded(self) -> bool:
        return isinstance(self.entry, EmbeddedEntry)

    @property
    def split_group(self) -> str:
        """The name that seeds this domain's splits: its own, or the domain it shares them with."""
        return getattr(self.entry, "split_group", None) or self.name


@functools.cache
def _registry(folders: tuple[Path, ...]) -> dict[str, DomainInfo]:
    domains: dict[str, DomainInfo] = {}
    searched = [*folders, *dataset_folders()]  # plug-ins' folders: asked once per search path
    files = [path for folder in searched for path in sorted(folder.glob("*.yaml"))]
    for path in files:
        text = path.read_text()
        try:
            family = FamilyFile.model_validate(yaml.safe_load(text))
        except yaml.YAMLError as error:
            raise XdkdError(f"{path}: not a valid dataset family file: {error}") from None
        except ValidationError as error:
            raise XdkdError(validation_message(path, yaml.compose(text), error)) from None
        for name in family.domains:
            if name in domains:
                raise XdkdError(
                    f"{path}: domain '{name}' is already declared in {domains[name].file}; "
                    "rename one of them"
                )
            entry = family.resolved(name)
            domains[name] = DomainInfo(name, family.family, tuple(family.classes), entry, path)
    if not domains:
        where = ", ".join(map(str, folders))
        raise XdkdError(f"no dataset family files (*.yaml) in {where}; add one to XDKD_DATASETS")
    return domains


def all_domains() -> dict[str, DomainInfo]:
    return _registry(tuple(search_path("datasets")))


def domain_info(name: str) -> DomainInfo:
    domains = all_domains()
    if name not in domains:
        raise XdkdError(unknown_name_message("domain", name, list(domains)))
    return domains[name]


def family_domains(family: str) -> list[str]:
    return [name for name, info in all_domains().items() if info.family == family]


def scored_domains(source: str, target: str) -> list[str]:
    """The domains a run is scored on: the source, and the target's family domains of the
    target's provenance (embedded with embedded, published with published). A family can then
    hold both (digits.yaml) without embedded runs needing downloaded data, and what embedded
    runs measure does not change when published domains join their family."""
    info = domain_info(target)
    family = family_domains(info.family)
    scored = [name for name in family if domain_info(name).embedded == info.embedded]
    return scored if source in scored else [*scored, source]


def family_names() -> list[str]:
    return list(dict.fromkeys(info.family for info in all_domains().values()))
