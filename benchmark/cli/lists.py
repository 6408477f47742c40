"""The listing commands: methods, protocols, backbones, corruptions. They read the torch-free
catalogue, so they answer at once (only `corruptions show` draws images, with torch)."""

from __future__ import annotations

import argparse
import fnmatch
import json
import textwrap
from dataclasses import asdict
from pathlib import Path

from benchmark.errors import XdkdError
from benchmark.registry import unknown_name_message


def needs_text(needs: dict) -> str:
    """A method's needs in words: `teacher logits (any number); unlabelled target images`."""
    parts = []
    teacher = needs.get("teacher")
    if teacher is None:
        parts.append("no teacher")
    else:
        count = {
            "any": "one or more: their ensemble",
            "one": "exactly one",
            "several": "several",
            "tasks": "one per task",
        }[needs.get("teachers", "any")]
        parts.append(f"teacher {teacher} ({count})")
    if needs.get("target_images"):
        parts.append("unlabelled target images")
    if needs.get("target_labels", "none") != "none":
        parts.append(
            "every target label"
            if needs["target_labels"] == "all"
            else "target labels (few-shot or all)"
        )
    if needs.get("several_targets"):
        parts.append("several targets")
    if needs.get("oracle"):
        parts.append("reads target labels under any protocol (oracle reference)")
    if needs.get("data_free"):
        parts.append("no real image: makes its own (data_free)")
    return "; ".join(parts)


def cmd_methods(args: argparse.Namespace) -> int:
    from benchmark.suite.catalogue import catalogue

    cards = catalogue().methods
    if args.name:
        if args.name not in cards:
            raise XdkdError(unknown_name_message("method", args.name, list(cards)))
        cards = {args.name: cards[args.name]}
    if args.format == "json":
        print(json.dumps({name: asdict(card) for name, card in cards.items()}, indent=1))
        return 0
    if args.format == "markdown":  # the documentation's methods page is made from this
        print("| method | family | needs | defaults | paper |\n|---|---|---|---|---|")
    for name, card in cards.items():
        defaults = ", ".join(f"{k}={v}" for k, v in card.defaults.items()) or "-"
        adapts = "; adapts at test time (unlabelled images of each scored domain)"
        needs = needs_text(card.needs) + (adapts if card.adapts_at_test else "")
        if args.format == "markdown":
            print(f"| `{name}` | {card.family} | {needs} | {defaults} | {card.paper} |")
            continue
        print(f"{name:<17} {card.family:<22} needs: {needs}")
        print(f"{'':<17} defaults: {defaults}")
        print(f"{'':<17} {card.paper}  [{card.origin}]")
        if args.name:
            print(search_text(card))
    return 0


def search_text(card) -> str:
    """What a suite's `search:` draws for the method: its space, and the recipe's."""
    from benchmark.suite.search import RECIPE_SPACE

    if not card.trains_student:
        return "search: none (it trains no student)"
    lines = ["search space (a suite's `search:` draws from it; the defaults are trial 0):"]
    declared = card.search_space()
    recipe = {f"recipe.{name}": d for name, d in RECIPE_SPACE.items()}
    for name, distribution in {**declared, **recipe}.items():
        shown = (
            f"default {card.defaults[name]}; "
            if name in card.defaults
            else "default: the suite's student_recipe; "
        )
        lines.append(f"  {name:<22} {distribution.text():<28} {shown}{distribution.why}")
    if not declared:
        lines.append("  (no method parameter is searched: only the student recipe)")
    return "\n".join(lines)


def cmd_protocols(args: argparse.Namespace) -> int:
    from benchmark.suite.protocols import PROTOCOLS

    for name, protocol in PROTOCOLS.items():
        print(f"{name}: {protocol.summary}")
        target = {
            "none": "none",
            "unlabelled": "unlabelled images",
            "few_shot": "k labelled per class + unlabelled rest",
            "labelled": "every image labelled",
        }[protocol.target_data]
        teachers = {
            "per_source": "one per source",
            "union": "one on the union",
            "per_task": "one per task",
        }[protocol.teachers]
        print(
            f"    sources: {protocol.sources}; targets: {protocol.targets}; "
            f"target data: {target}; teachers: {teachers}"
            + ("" if protocol.real_images else "; real images: none (the teacher only)")
        )
        for key, parameter in protocol.all_parameters().items():
            default = "required" if parameter.default is None else f"default {parameter.default}"
            print(
                textwrap.fill(
                    f"{key} ({default}): {parameter.meaning}",
                    96,
                    initial_indent="    ",
                    subsequent_indent="      ",
                )
            )
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from benchmark.suite.catalogue import catalogue

    names = [n for n in catalogue().backbones if fnmatch.fnmatch(n, args.pattern)]
    if not names:
        raise XdkdError(f"no backbone matches '{args.pattern}'; try a glob such as 'resnet*'")
    print("\n".join(names))
    print(f"({len(names)} backbones; lenet and dtn are the digit CNNs, the rest come from timm)")
    return 0


def cmd_corruptions(args: argparse.Namespace) -> int:
    if args.action == "show":
        return _show_corruptions(args)
    from benchmark.suite.catalogue import catalogue

    known = catalogue()
    print(f"{'corruption':<18} {'group':<11} severities  in mCA/mCE")
    for name in known.corruption_names():
        card = known.corruptions[name]
        print(
            f"{name:<18} {card.group:<11} {card.severities:>10}  {'yes' if card.counted else 'no'}"
        )
    return 0


def _show_corruptions(args: argparse.Namespace) -> int:
    from benchmark.corruptions.grid import save_corruption_grid
    from benchmark.data.domains import load_domain

    if not args.domain:
        raise XdkdError("xdkd corruptions show needs a DOMAIN, e.g. xdkd corruptions show mnistm")
    images = load_domain(args.domain).test_images
    if not 0 <= args.index < len(images):
        raise XdkdError(
            f"--index {args.index} is outside {args.domain}'s test split (0..{len(images) - 1})"
        )
    out = Path(args.out or f"{args.domain}-corruptions.png")
    title = f"{args.domain} test image {args.index}: every corruption at severities 1-5"
    save_corruption_grid(images[args.index], out, title)
    print(f"wrote {out}")
    return 0


def add_list_commands(commands: argparse._SubParsersAction) -> None:
    corruptions = commands.add_parser(
        "corruptions",
        help="list corruptions, or draw every corruption at every severity for one image",
        description="list: every corruption with its group and severities; "
        "show DOMAIN --out grid.png [--index I]: one test image under every corruption",
    )
    corruptions.add_argument("action", nargs="?", default="list", choices=["list", "show"])
    corruptions.add_argument("domain", nargs="?")
    corruptions.add_argument("--out", help="PNG path for show (default: DOMAIN-corruptions.png)")
    corruptions.add_argument("--index", type=int, default=0, help="test image index (default 0)")
    corruptions.set_defaults(handler=cmd_corruptions)

    backbones = commands.add_parser("backbones", help="list backbone names (glob pattern)")
    backbones.add_argument("pattern", nargs="?", default="*")
    backbones.set_defaults(handler=cmd_backbones)

    methods = commands.add_parser(
        "methods",
        help="list methods: family, needs, defaults, paper; NAME: one, with its search space",
    )
    methods.add_argument("name", nargs="?", help="one method, with its search space")
    methods.add_argument(
        "--format",
        choices=["text", "markdown", "json"],
        default="text",
        help="text (default), a markdown table (the docs page) or JSON (every declaration)",
    )
    methods.set_defaults(handler=cmd_methods)

    protocols = commands.add_parser(
        "protocols", help="list transfer settings: what each protocol grants, its parameters"
    )
    protocols.set_defaults(handler=cmd_protocols)
