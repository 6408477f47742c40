"""`xdkd`: the command line. Thin: parses, calls the modules, prints; every error a person
can act on is one line (`xdkd: error: ...`, exit 2), a bug one line and a saved traceback."""

from __future__ import annotations

import argparse
import os
import sys

from benchmark.cli.bench import add_bench_command
from benchmark.cli.datasets import add_datasets_command
from benchmark.cli.evaluate_model import add_evaluate_model_command
from benchmark.cli.lists import add_list_commands
from benchmark.cli.report import add_report_commands
from benchmark.cli.run import add_run_commands, runs_root
from benchmark.cli.site import add_site_command
from benchmark.errors import XdkdError

EPILOG = "Docs: README.md. Every command takes --help."


def cmd_status(args: argparse.Namespace) -> int:
    from benchmark.report.status import clear_failures, print_status, read_status

    root = runs_root(args.runs)
    if args.retry_failed:
        cleared = clear_failures(root)
        print(f"{cleared} failed runs cleared: the next xdkd run on {root} runs them again")
    status = read_status(root)
    print_status(status, root, verbose=args.all)
    return 1 if status.failed else 0


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `xdkd: error: ... (xdkd run --help)`, exit 2."""

    def error(self, message: str):
        print(f"xdkd: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="xdkd",
        description="XDKD-Bench: cross-domain knowledge distillation benchmark.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a plug-in that is not installed (a module name or a .py file) that "
        "registers methods, backbones or dataset families; repeatable, accepted anywhere on "
        "the line, inherited by workers ($XDKD_PLUGINS); installed plug-ins are found through "
        "their entry points",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_commands(commands)
    status = commands.add_parser(
        "status",
        help="what a runs directory holds: done, failed (with reasons), running, queued",
        description="Read a runs directory (written by xdkd run, by any executor, possibly "
        "still running) and count its runs: done, failed with the reason, running (with host "
        "and pid) and queued. Exit status 1 when some failed.",
    )
    status.add_argument(
        "runs", nargs="?", default="runs/quick", help="runs directory or suite name (runs/NAME)"
    )
    status.add_argument("--all", action="store_true", help="list every run, not only failures")
    status.add_argument(
        "--retry-failed",
        action="store_true",
        help="clear the failures (error.json kept as error.previous.json) so that the next "
        "xdkd run runs them again",
    )
    status.set_defaults(handler=cmd_status)

    add_datasets_command(commands)

    add_list_commands(commands)
    add_report_commands(commands)
    add_bench_command(commands)
    add_evaluate_model_command(commands)
    add_site_command(commands)
    return parser


def check_environment() -> None:
    """The XDKD_* settings every process reads, checked before anything starts."""
    from benchmark.data.settings import bad_image_policy, data_workers, device_data_budget
    from benchmark.run.fastpath import fast_path_mode
    from benchmark.run.tracking import tracker_names_from_env

    bad_image_policy(), device_data_budget(), data_workers(), fast_path_mode()
    tracker_names_from_env()


def plugins_first(argv: list[str]) -> list[str]:
    """`--plugin X` anywhere on the line (`xdkd run suite.yaml --plugin my.py`) moved before
    the command, where the parser reads it."""
    plugins, rest = [], []
    words = iter(argv)
    for word in words:
        if word == "--plugin":
            plugins += [word, next(words, "")]
        elif word.startswith("--plugin="):
            plugins.append(word)
        else:
            rest.append(word)
    return plugins + rest


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(plugins_first(sys.argv[1:] if argv is None else argv))
    try:
        if args.plugin:
            from benchmark.plugins import add_plugin_modules

            add_plugin_modules(args.plugin)
        check_environment()
        return args.handler(args)
    except XdkdError as error:
        print(f"xdkd: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xdkd: interrupted; finished records are kept, rerun to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `xdkd backbones | head`: the reader left; so do we, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as error:  # a bug: one line, the traceback kept in a file for the report
        import tempfile
        import traceback

        with tempfile.NamedTemporaryFile(
            "w", prefix="xdkd-traceback-", suffix=".txt", delete=False
        ) as file:
            traceback.print_exc(file=file)
        print(
            f"xdkd: internal error (a bug, please report it): {type(error).__name__}: "
            f"{error}; traceback in {file.name}",
            file=sys.stderr,
        )
        return 70
