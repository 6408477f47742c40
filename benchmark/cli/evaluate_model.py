"""`xdkd evaluate-model`: a checkpoint trained elsewhere, scored under the suite's evaluation
and written as a record `xdkd report` shows beside the suite's runs. Thin: parses, calls
`benchmark.run.external`, prints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmark.errors import XdkdError

DEFAULT_OUT = Path("runs/external")  # beside the suites' runs/SUITE: `xdkd report runs` reads both
SUMMARY = (  # (metric, how it is printed): the metrics block's headline numbers
    ("target_acc", "target accuracy"),
    ("target_ece", "target ECE"),
    ("target_nll", "target NLL"),
    ("source_acc", "source accuracy"),
    ("heldout_mean_acc", "held-out mean accuracy"),
    ("clean_subset_acc", "robustness set, clean"),
    ("mca", "mCA"),
    ("mca_shape", "mCA (shape)"),
)


def protocol_argument(text: str) -> Any:
    """`uda`, or a protocol with parameters as YAML: `{name: few_shot, shots: 5}`."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise XdkdError(
            f"--protocol '{text}' is neither a name nor a YAML mapping like "
            "'{name: few_shot, shots: 5}'"
        ) from None


def cmd_evaluate_model(args: argparse.Namespace) -> int:
    from benchmark.cli.datasets import apply_data_options
    from benchmark.files import output_directory

    apply_data_options(args)
    out = output_directory(Path(args.out), "--out")  # before the evaluation, not after it
    from benchmark.run.external import evaluate_model, write_external

    record = evaluate_model(
        Path(args.weights),
        backbone=args.backbone,
        domain=args.domain,
        source=args.source,
        family_heldout=args.family_heldout,
        corruptions=args.corruptions,
        corruption_images=args.corruption_images,
        image_size=args.image_size,
        name=args.name,
        suite=args.suite,
        protocol=protocol_argument(args.protocol),
        device=args.device,
    )
    path = write_external(record, out)
    metrics = record.metrics
    print(
        f"{record.spec.method.row} (external, {args.backbone}) on "
        f"{record.spec.setting.label} [{record.spec.setting.protocol.label}]"
    )
    for key, text in SUMMARY:
        if key in metrics:
            value = f"{metrics[key]:.4f}" if key == "target_nll" else f"{100 * metrics[key]:.2f}%"
            print(f"  {text}: {value}")
    setting = record.spec.setting
    heldout = {
        d: a for d, a in record.per_domain.items() if d not in (*setting.sources, *setting.targets)
    }
    if heldout:
        print("  held-out: " + ", ".join(f"{d} {100 * a:.2f}%" for d, a in heldout.items()))
    if "params" in metrics:
        print(f"  params: {metrics['params'] / 1e6:.3f} M")
    print(f"record: {path}")
    print(f"report it with the runs beside it: xdkd report {out.parent}")
    return 0


def add_evaluate_model_command(commands: argparse._SubParsersAction) -> None:
    """Add `evaluate-model` to the `xdkd` subcommands."""
    from benchmark.cli.datasets import add_data_options
    from benchmark.suite.config import EvalSpec, Suite

    defaults = EvalSpec()
    command = commands.add_parser(
        "evaluate-model",
        help="score a checkpoint trained elsewhere under the suite's evaluation",
        description="Build --backbone with the domain family's classes, load --weights (a "
        "state dict in a .pt/.pth or .safetensors file, or a checkpoint holding it under "
        "state_dict or model; every tensor must fit), and evaluate it as a run is evaluated: "
        "target accuracy, ECE and NLL, source accuracy (--source), held-out domains "
        "(--family-heldout), corruptions and cost. The record goes to --out/runs/KEY/"
        "record.json, KEY naming the setting and the weights' sha256; xdkd report shows it "
        "as a row 'NAME (external)', not ranked (what it trained on is not known).",
    )
    command.add_argument("--backbone", required=True, help="the architecture, e.g. lenet, dtn")
    command.add_argument("--weights", required=True, metavar="FILE", help="the state dict file")
    command.add_argument("--domain", required=True, help="the target domain it is scored on")
    command.add_argument(
        "--source",
        help="the domain it was trained on: scored too, and the row joins the suite's "
        "SOURCE→DOMAIN column (default: none, the column is DOMAIN alone)",
    )
    command.add_argument(
        "--family-heldout",
        action="store_true",
        help="also score the family's other domains (of the target's provenance), as a "
        "suite does by default",
    )
    command.add_argument(
        "--corruptions",
        nargs="+",
        metavar="NAME",
        help="corruptions or groups (xdkd corruptions) for robustness; give the suite's to "
        "compare mCA with its rows (default: "
        f"{' '.join(defaults.corruptions)})",
    )
    command.add_argument(
        "--corruption-images",
        type=int,
        metavar="N",
        help=f"images of the robustness set; 0: no robustness (default "
        f"{defaults.corruption_images})",
    )
    command.add_argument(
        "--image-size",
        type=int,
        metavar="PX",
        help=f"input size in pixels (default {Suite.model_fields['image_size'].default})",
    )
    command.add_argument(
        "--name", help="the row label (default: the weights file's name without its suffix)"
    )
    command.add_argument(
        "--suite", default="external", help="the suite name in the record (default external)"
    )
    command.add_argument(
        "--protocol",
        default="uda",
        help="the protocol of the row (default uda), with parameters as YAML: "
        "'{name: few_shot, shots: 5}'",
    )
    command.add_argument(
        "--out", default=str(DEFAULT_OUT), help=f"runs directory (default {DEFAULT_OUT})"
    )
    command.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_data_options(command)
    command.set_defaults(handler=cmd_evaluate_model)
