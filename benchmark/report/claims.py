"""Claims as data: what a results folder's README asserts, checked against its records.

A folder's `claims.yaml` lists comparisons of its report (a method against a reference, under
a protocol or pair where the report is split) and the verdict each README sentence asserts:
`above` or `below` (the comparison holds under the claim rule, in that direction) or
`no_finding` (it does not hold: a difference inside the noise, or a placebo). `xdkd report`
renders every claim with the figures of the comparison (mean difference, 95% interval,
corrected p, the null spread) into the README, between the markers below, so no README
figure is typed by hand; a claim whose verdict no longer matches its records is rendered as
such and `xdkd report` says so, and the tests fail on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchmark.errors import XdkdError
from benchmark.report.render import number

CLAIMS_FILE = "claims.yaml"
BEGIN, END = "<!-- claims: written by xdkd report from claims.yaml -->", "<!-- /claims -->"


class Claim(BaseModel):
    """One comparison of the report and the verdict a README sentence asserts."""

    model_config = ConfigDict(extra="forbid")

    method: str
    against: str
    verdict: Literal["above", "below", "no_finding"]
    where: dict[str, str] = Field(default_factory=dict)  # split columns: {protocol: ...}
    says: str = ""  # the sentence's words before the figures


class Claims(BaseModel):
    model_config = ConfigDict(extra="forbid")

    claims: list[Claim] = Field(min_length=1)
    by: list[str] = Field(default_factory=list)  # the report's --by, where the claims split
    references: list[str] | None = None  # the report's --reference, where not kd, source_only
    # claims about a search's tuned leaderboard (`xdkd report --tuned`), whose folder sits
    # inside the suite's (results/SUITE/tuned) and reads the suite's records
    tuned: bool = False
    # the records the claims are judged on, relative to the claims file's folder, where not
    # its records/ (a tuned folder: ../records; a pooled report of sibling folders: ..)
    records: str | None = None

    def records_dir(self, folder: Path) -> Path:
        return folder / (self.records or ("../records" if self.tuned else "records"))


def load_claims(path: Path) -> Claims:
    try:
        return Claims.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as error:
        first = str(error).splitlines()[0:3]
        raise XdkdError(f"claims file '{path}' is not valid: {' '.join(first)}") from None


def find(comparison: pd.DataFrame, claim: Claim) -> pd.Series | None:
    """The comparison row a claim is about, or None."""
    if comparison.empty:
        return None
    rows = comparison[
        (comparison["method"] == claim.method) & (comparison["against"] == claim.against)
    ]
    for column, value in claim.where.items():
        if column not in rows:
            return None
        rows = rows[rows[column].astype(str) == value]
    return rows.iloc[0] if len(rows) == 1 else None


def verdict(row: pd.Series) -> str:
    if not row["holds"]:
        return "no_finding"
    return "above" if row["mean diff"] > 0 else "below"


def judged(comparison: pd.DataFrame, claims: Claims) -> list[tuple[Claim, pd.Series | None, bool]]:
    """Each claim, its comparison row (None where the report has none) and whether its
    asserted verdict is the records' verdict."""
    out = []
    for claim in claims.claims:
        row = find(comparison, claim)
        out.append((claim, row, row is not None and verdict(row) == claim.verdict))
    return out


VERDICTS = {
    "above": "holds, above",
    "below": "holds, below",
    "no_finding": "no finding (does not hold under the rule)",
}


def sentence(claim: Claim, row: pd.Series | None, true: bool) -> str:
    where = "".join(f" [{value}]" for value in claim.where.values())
    head = f"`{claim.method}` against `{claim.against}`{where}"
    says = f"{claim.says}: " if claim.says else ""
    if row is None:
        return f"- {says}{head}: NOT IN THE RECORDS (no such comparison)"
    figures = (
        f"{number(row['mean diff'], sign=True)} points "
        f"[{number(row['ci_low'], sign=True)}, {number(row['ci_high'], sign=True)}], "
        f"n {int(row['n'])}, p (Holm) {number(row['p (Holm)'], 3)}, MDE {number(row['mde'])}"
    )
    status = VERDICTS[verdict(row)] + ("" if true else f"; THE README CLAIMED {claim.verdict}")
    return f"- {says}{head}: {figures}: {status}."


def render(comparison: pd.DataFrame, claims: Claims, null_caption: str) -> str:
    lines = [sentence(*entry) for entry in judged(comparison, claims)]
    return "\n".join([BEGIN, "", *lines, "", null_caption, "", END])


def write_claims(readme: Path, block: str) -> None:
    """Put the rendered block between the README's markers (appended where it has none)."""
    text = readme.read_text() if readme.is_file() else ""
    if BEGIN in text and END in text:
        before, _, rest = text.partition(BEGIN)
        _, _, after = rest.partition(END)
        text = before + block + after
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    readme.write_text(text)
