"""Methods, backbones and dataset families from outside the package, without forking it.

Installed packages declare entry points: `xdkd.methods` and `xdkd.backbones` name a module
whose import registers what it holds (`METHODS.register`, timm's `register_model`);
`xdkd.datasets` names a function returning the folder (or folders) of the package's dataset
family files (its module may register readers or embedded builders as it is imported). A
module that is not installed comes with `xdkd --plugin MODULE` (a dotted name on the path or
a `.py` file), carried to worker processes and cluster tasks by `$XDKD_PLUGINS`
(os.pathsep-separated); it registers the same way, and a `dataset_families()` function in it
adds its family files.

Every method a plug-in registers is attributed to it: `xdkd methods` shows the origin, and
the run key hashes the plug-in's version (the package's, or a `.py` file's content hash), so
a new release of a method never passes for the old one's finished runs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmark.errors import XdkdError
from benchmark.registry import Origin, attributed_to

GROUPS = ("xdkd.methods", "xdkd.backbones", "xdkd.datasets")
ENV = "XDKD_PLUGINS"


_modules: dict[str, ModuleType] = {}
_loading = False


def plugin_modules() -> list[str]:
    """The `--plugin` modules of this process and its parent ($XDKD_PLUGINS)."""
    return [entry for entry in os.environ.get(ENV, "").split(os.pathsep) if entry]


def add_plugin_modules(entries: list[str]) -> None:
    """`--plugin`: checked now (one line when it cannot be found), inherited by workers."""
    for entry in entries:
        _module_location(entry)
    os.environ[ENV] = os.pathsep.join(dict.fromkeys([*plugin_modules(), *entries]))


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=group), key=lambda ep: (ep.name, ep.value))


def _module_location(entry: str) -> Path | None:
    """The file of a `--plugin` module (None for a namespace package), or a clear error."""
    if entry.endswith(".py"):
        path = Path(entry).expanduser().resolve()
        if not path.is_file():
            raise XdkdError(f"--plugin {entry}: no such file; give a .py file or a module name")
        return path
    try:
        spec = importlib.util.find_spec(entry)
    except (ImportError, ValueError) as error:
        raise XdkdError(f"--plugin {entry}: cannot be imported: {error}") from None
    if spec is None:
        raise XdkdError(
            f"--plugin {entry}: no module of that name on the path; give a .py file, install "
            "its package, or add its folder to PYTHONPATH"
        )
    return Path(spec.origin) if spec.origin and spec.origin != "built-in" else None


def _file_origin(entry: str) -> Origin:
    path = _module_location(entry)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path else "namespace"
    return Origin(f"plugin {path or entry}", f"{Path(entry).stem}@sha256:{digest}")


def _entry_origin(ep: metadata.EntryPoint) -> Origin:
    dist = ep.dist
    name, version = (dist.metadata["Name"], dist.version) if dist else (ep.module, "unknown")
    return Origin(f"{name} {version} (entry point {ep.group})", f"{name}=={version}")


def _import(entry: str) -> ModuleType:
    """A `--plugin` module, imported once per process."""
    if entry not in _modules:
        if entry.endswith(".py"):
            path = _module_location(entry)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            # known before it runs: a plug-in that imports the methods re-enters load_plugins,
            # which must find it (half-loaded, as Python's own imports do), not run it twice
            sys.modules[path.stem] = _modules[entry] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[path.stem], _modules[entry]
                raise
        else:
            _modules[entry] = importlib.import_module(entry)
    return _modules[entry]


def _attributed(load: Any, origin: Origin) -> Any:
    """Run `load()` and attribute every name it registers to `origin`."""
    try:
        with attributed_to(origin):
            return load()
    except XdkdError:
        raise
    except Exception as error:  # the plug-in's own bug: named, with where it came from
        raise XdkdError(
            f"plug-in {origin.label} failed to load: {type(error).__name__}: {error}"
        ) from error


def load_plugins() -> None:
    """Import every installed plug-in and every `--plugin` module, once per process (called
    when the method and backbone registries are first imported)."""
    global _loading
    if _loading:
        return
    _loading = True
    for group in GROUPS[:2]:
        for ep in _entry_points(group):
            _attributed(ep.load, _entry_origin(ep))
    for entry in plugin_modules():
        _attributed(lambda entry=entry: _import(entry), _file_origin(entry))


def dataset_folders() -> list[Path]:
    """Folders of family files that plug-ins add: each `xdkd.datasets` entry point's function
    and each `--plugin` module's `dataset_families()`, called once per process."""
    folders: list[Path] = []
    providers = [(ep.load, _entry_origin(ep)) for ep in _entry_points("xdkd.datasets")]
    for entry in plugin_modules():
        module = _attributed(lambda entry=entry: _import(entry), _file_origin(entry))
        if hasattr(module, "dataset_families"):
            providers.append((lambda m=module: m.dataset_families, _file_origin(entry)))
    for load, origin in providers:
        found = load()()
        for folder in [found] if isinstance(found, (str, Path)) else list(found):
            folder = Path(folder)
            if not folder.is_dir():
                raise XdkdError(f"plug-in {origin.label}: its dataset folder {folder} is missing")
            folders.append(folder)
    return folders


def fingerprint() -> str:
    """Changes when a plug-in is installed, upgraded or removed, or a `--plugin` file is
    edited: the catalogue of names listings read is keyed by it."""
    parts = [
        f"{ep.group}:{ep.name}={ep.value}:{_entry_origin(ep).version}"
        for group in GROUPS
        for ep in _entry_points(group)
    ]
    for entry in plugin_modules():
        try:
            path = _module_location(entry)
        except XdkdError:
            parts.append(f"{entry}:missing")
            continue
        stat = path.stat() if path else None
        parts.append(f"{entry}:{stat.st_size}:{stat.st_mtime_ns}" if stat else entry)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
