"""`xdkd site`: one static leaderboard site over the results directories of several suites.

Kept apart from `benchmark.cli`; `add_site_command` adds the subcommand to its subparsers.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_site(args: argparse.Namespace) -> int:
    from benchmark.files import output_directory
    from benchmark.report.site import write_site

    out = output_directory(Path(args.out), "--out")
    index = write_site([Path(directory) for directory in args.results_dirs], out)
    print(f"site: {index} (open it in a browser; it works offline)")
    return 0


def add_site_command(commands: argparse._SubParsersAction) -> None:
    """Add `site` to the `xdkd` subcommands."""
    site = commands.add_parser(
        "site",
        help="a static leaderboard site over several results directories",
        description="From what `xdkd report` (or `xdkd run`) wrote per suite: index.html "
        "listing the suites and methods, a page per suite (its leaderboard per cell with "
        "mean, 95% CI and n over seeds, sortable by any column, its caption and plots) and a "
        "page per method (its runs across suites, each linking to its record.json where the "
        "results directory has a records/ folder). No network needed: open it from disk.",
    )
    site.add_argument(
        "results_dirs", nargs="+", metavar="RESULTS_DIR", help="e.g. results/quick results/methods"
    )
    site.add_argument("--out", default="site", help="where the site goes (default: site)")
    site.set_defaults(handler=cmd_site)
