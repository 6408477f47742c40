"""MkDocs hook: the table of every registered method, generated at build time.

`docs/methods.md` holds a marker line; `on_page_markdown` replaces it with the table that
`python -m benchmark.cli methods --format markdown` prints. The table comes from a
subprocess, not from importing the package, so the hook does not depend on where the
registry's modules live. A failing command, an empty table or a missing marker raises, so the
build fails instead of publishing the page without its table.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

MARKER = "<!-- methods: generated from the registry at build time -->"
PAGE = "methods.md"
COMMAND = [sys.executable, "-m", "benchmark.cli", "methods", "--format", "markdown"]

_table: str | None = None


def _methods_table(root: Path) -> str:
    global _table
    if _table is None:  # once per build (and per `mkdocs serve` process)
        try:
            done = subprocess.run(
                COMMAND, cwd=root, capture_output=True, text=True, timeout=600, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PluginError(f"docs hook: {' '.join(COMMAND)} could not run: {error}") from error
        if done.returncode != 0:
            raise PluginError(
                f"docs hook: {' '.join(COMMAND)} exited with {done.returncode} (cwd {root}):\n"
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        table = done.stdout.strip()
        if not table.startswith("|"):
            raise PluginError(f"docs hook: {' '.join(COMMAND)} printed no markdown table:\n{table}")
        _table = table
    return _table


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"docs hook: {PAGE} has no marker line {MARKER!r}")
    root = Path(config.config_file_path).resolve().parent
    return markdown.replace(MARKER, _methods_table(root))
