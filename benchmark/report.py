"""Leaderboards from run records: a tidy table, then a pivot per (method, teacher, student).

Numbers are target-domain top-1 accuracy of the last-epoch model (the selection rule is
written in every caption), mean over seeds.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.config import RunRecord
from benchmark.methods import METHODS

SELECTION_RULE = "last epoch (no model selection)"


def is_reference(method: str) -> bool:
    """The teacher and the target-label oracle are references: shown, never ranked."""
    cls = METHODS.get(method)
    return not cls.trains_student or cls.needs_target_labels


def records_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per run, every metric a column."""
    rows = []
    for record in records:
        spec = record.spec
        rows.append(
            {
                "suite": spec.suite,
                "key": record.key,
                "pair": spec.pair.label,
                "source": spec.pair.source,
                "target": spec.pair.target,
                "method": spec.method.name,
                "family": METHODS.get(spec.method.name).family,
                "teacher": spec.teacher.name,
                "student": spec.student.name,
                "seed": spec.seed,
                "protocol": spec.protocol,
                **record.metrics,
                "teacher_source_acc": record.teacher["source_accuracy"],
                "teacher_below_floor": record.teacher["below_floor"],
                "teacher_floor": record.teacher["floor"],
                "wall_time_s": record.wall_time_s,
                "device": record.device,
                "code": record.provenance["code"],
            }
        )
    return pd.DataFrame(rows)


def leaderboard(table: pd.DataFrame) -> pd.DataFrame:
    """Rows (method, protocol, teacher, student); columns: target accuracy (%) per pair, their mean,
    the held-out-domain mean, seeds and wall time. Reference rows (the teacher) come first,
    then methods by mean target accuracy."""
    index = ["method", "protocol", "teacher", "student"]
    per_pair = table.pivot_table(index=index, columns="pair", values="target_acc", aggfunc="mean")
    pairs = list(dict.fromkeys(table["pair"]))
    board = per_pair[pairs] * 100
    board["mean"] = board[pairs].mean(axis=1)
    grouped = table.groupby(index)
    board["held-out mean"] = grouped["heldout_mean_acc"].mean() * 100
    board["seeds"] = grouped["seed"].nunique()
    board["train s"] = grouped["train_wall_time_s"].sum()
    board = board.reset_index()
    board["reference"] = board["method"].map(is_reference)
    board = board.sort_values(["reference", "mean"], ascending=[False, False])
    return board.reset_index(drop=True)


def floor_warnings(table: pd.DataFrame) -> list[str]:
    """One line per teacher under its floor: every student distilled from it is suspect."""
    low = table[table["teacher_below_floor"]].drop_duplicates(["teacher", "source", "seed"])
    return [
        f"teacher {row.teacher} on {row.source} (seed {row.seed}) reached "
        f"{100 * row.teacher_source_acc:.1f}% on its own test split, under the floor "
        f"{100 * row.teacher_floor:.0f}%: results distilled from it are not meaningful"
        for row in low.itertuples()
    ]


def formatted(board: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Percentages to one decimal; a teacher under its floor is marked with '!'."""
    shown = board.drop(columns=["reference"]).copy()
    low_pairs = set(table.loc[table["teacher_below_floor"], "pair"])
    for column in shown.columns:
        if shown[column].dtype.kind == "f" and column != "train s":
            shown[column] = shown[column].map(lambda v: f"{v:.1f}")
    for pair in low_pairs:
        shown[pair] = shown[pair] + "!"
    shown["train s"] = board["train s"].map(lambda v: f"{v:.0f}")
    return shown


def caption(table: pd.DataFrame) -> str:
    protocols = ", ".join(sorted(set(table["protocol"])))
    return (
        f"Target-domain top-1 accuracy (%), mean over seeds. Protocol: {protocols}. "
        f"Model selection: {SELECTION_RULE}. 'held-out mean': accuracy on the family's "
        "domains used neither as source nor as target. 'train s': training wall time "
        "(for the teacher row, the teacher's). Reference rows (teacher, oracle) come first, "
        "unranked."
    )


def write_leaderboard(
    records: list[RunRecord], out_dir: Path, command: str
) -> tuple[pd.DataFrame, str]:
    """Write leaderboard.md, leaderboard.csv and records.csv; return (board, terminal text)."""
    table = records_table(records)
    board = leaderboard(table)
    shown = formatted(board, table)
    warnings = floor_warnings(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "records.csv", index=False)
    board.to_csv(out_dir / "leaderboard.csv", index=False, float_format="%.4f")
    notes = "".join(f"\n! {line}" for line in warnings)
    markdown = (
        f"# Leaderboard: {', '.join(sorted(set(table['suite'])))}\n\n"
        f"{caption(table)}\n\n{shown.to_markdown(index=False)}\n{notes}\n\n"
        f"Made by `{command}` on {table['device'].iloc[0]}, code {table['code'].iloc[0]}.\n"
    )
    (out_dir / "leaderboard.md").write_text(markdown)
    terminal = f"{shown.to_string(index=False)}\n{caption(table)}{notes}"
    return board, terminal
