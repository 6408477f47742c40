"""`xdkd site`: one static site over several results directories (what `xdkd report` writes).

index.html lists the suites; suites/<suite>.html holds each leaderboard per cell (mean, 95%
CI, n from summary.csv) with its caption and plots; methods/<method>.html lists one method's
runs across suites, each linking to its record.json where the results directory has one.
Everything is read from the report's files, never recomputed, so the site shows what the
reports say; it opens offline from file:// (inline CSS and JS, files copied under the site).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
import markupsafe
import pandas as pd

from benchmark.errors import XdkdError
from benchmark.report.board import columns
from benchmark.report.leaderboard import METADATA_FILE, STYLE
from benchmark.report.render import number
from benchmark.suite.selection import RULES

REQUIRED = (
    "leaderboard.md",
    METADATA_FILE,
    "leaderboard.csv",
    "summary.csv",
    "records.csv",
    "index.html",
)
PLOT = re.compile(r"^!\[(?P<title>[^\]]*)\]\((?P<path>plots/[^)]+\.png)\)$", re.MULTILINE)
SHOWN_KEYS = ("method", "protocol", "teacher", "student")  # of each cell, beside its pair
RUN_METRICS = (  # records.csv column, header; every one a fraction shown in %
    ("target_acc", "target acc (%)"),
    ("source_acc", "source acc (%)"),
    ("mca", "mCA (%)"),
    ("target_ece", "ECE (%)"),
)


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, the value a click on its header sorts by, a link."""

    text: str
    sort: float | None = None  # None: sorts as text, after the numbers
    href: str | None = None
    left: bool = False  # names are left-aligned, numbers right


def text(value: object, href: str | None = None) -> Cell:
    return Cell(str(value), href=href, left=True)


def count(value: float) -> Cell:
    return Cell(str(int(value)), float(value))


@dataclass(frozen=True)
class Table:
    caption: str
    headers: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class Suite:
    """One results directory, as its report wrote it."""

    name: str
    slug: str
    directory: Path
    caption: str  # the leaderboard's, verbatim
    selection: str  # the rule's name
    protocol: str
    description: str
    footer: str
    records: pd.DataFrame
    summary: pd.DataFrame
    leaderboard: pd.DataFrame
    plots: list[tuple[str, Path]]  # (title, png)
    record_files: dict[str, Path] | None  # run key -> record.json; None: no records/ folder

    @property
    def seeds(self) -> str:
        return ", ".join(str(seed) for seed in sorted(set(self.records["seed"])))

    @property
    def setting(self) -> str:
        """What every table of the suite names: the selection rule, protocol and seeds."""
        return f"Model selection: {self.selection}. Protocol: {self.protocol}. Seeds: {self.seeds}."


def slug(name: str) -> str:
    """A file name for a suite or method that is safe in a URL."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "_"


def _fix(directory: Path) -> str:
    return f"run xdkd report RUNS --out {directory} first"


def _paragraphs(markdown: str) -> list[str]:
    return [" ".join(p.split()) for p in markdown.split("\n\n") if p.strip()]


def _description(directory: Path) -> str:
    """The first paragraph of the directory's README.md under its title, where it has one."""
    readme = directory / "README.md"
    if not readme.is_file():
        return ""
    prose = [p for p in _paragraphs(readme.read_text()) if not p.startswith("#")]
    return prose[0] if prose else ""


def _record_files(directory: Path) -> dict[str, Path] | None:
    """record.json per run key under records/ (any depth, as `xdkd report` reads a store)."""
    records = directory / "records"
    if not records.is_dir():
        return None
    return {path.parent.name: path for path in sorted(records.rglob("record.json"))}


def read_suite(directory: Path) -> Suite:
    """A results directory's report, or one line saying what is missing and how to make it."""
    if not directory.is_dir():
        what = "is a file, not a directory" if directory.exists() else "not found"
        raise XdkdError(f"results directory '{directory}' {what}; {_fix(directory)}")
    missing = [name for name in REQUIRED if not (directory / name).is_file()]
    if missing:
        raise XdkdError(
            f"results directory '{directory}' has no {', '.join(missing)}; {_fix(directory)}"
        )
    markdown = (directory / "leaderboard.md").read_text()
    paragraphs = _paragraphs(markdown)
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text())
        selection, protocols = metadata["selection"]["rule"], metadata["protocols"]
        caption = metadata["caption"]
    except (ValueError, KeyError, TypeError):
        raise XdkdError(
            f"'{directory / METADATA_FILE}' is damaged or of another format; {_fix(directory)}"
        ) from None
    records = pd.read_csv(directory / "records.csv")
    if records.empty:
        raise XdkdError(f"'{directory / 'records.csv'}' has no runs; {_fix(directory)}")
    name = "+".join(sorted(set(records["suite"].astype(str))))
    plots = [
        (match["title"], directory / match["path"])
        for match in PLOT.finditer(markdown)
        if (directory / match["path"]).is_file()
    ]
    return Suite(
        name=name,
        slug=slug(name),
        directory=directory,
        caption=caption,
        selection=selection,
        protocol=", ".join(protocols),
        description=_description(directory),
        footer=next((p for p in paragraphs if p.startswith("Made by")), ""),
        records=records,
        summary=pd.read_csv(directory / "summary.csv"),
        leaderboard=pd.read_csv(directory / "leaderboard.csv"),
        plots=plots,
        record_files=_record_files(directory),
    )


def _unique(suites: list[Suite]) -> None:
    seen: dict[str, Suite] = {}
    for suite in suites:
        if suite.slug in seen:
            raise XdkdError(
                f"results directories '{seen[suite.slug].directory}' and '{suite.directory}' "
                f"both hold suite '{suite.name}'; give each suite once"
            )
        seen[suite.slug] = suite


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def percent(value: float | None) -> Cell:
    """A fraction as a % cell ('–' where absent) that sorts by its unrounded value."""
    return Cell("–") if _missing(value) else Cell(number(100 * value), float(100 * value))


def rank_cell(row: pd.Series) -> Cell:
    if row["reference"]:
        return Cell("ref")  # sorts after the ranks
    return Cell("–") if _missing(row["rank"]) else Cell(number(row["rank"], 0), float(row["rank"]))


def ci_cell(low: float, high: float) -> Cell:
    if _missing(low) or _missing(high):
        return Cell("–")
    return Cell(f"[{number(100 * low)}, {number(100 * high)}]", float(100 * low))


def leaderboard_table(suite: Suite) -> Table:
    """The leaderboard per cell (row and pair): the row's rank, then target accuracy over
    seeds as summary.csv has it, in the leaderboard's order."""
    keys = list(suite.leaderboard.columns[: suite.leaderboard.columns.get_loc("rank")])
    targets = [
        (c.pair, c.metric, c.label)
        for c in columns(suite.records, sorted(set(suite.records["pair"])))
        if c.pair is not None
    ]
    rows = []
    for _, board_row in suite.leaderboard.iterrows():
        mine = suite.summary
        for key in keys:
            mine = mine[mine[key].astype(str) == str(board_row[key])]
        for pair, metric, label in targets:
            for _, cell in mine[(mine["pair"] == pair) & (mine["metric"] == metric)].iterrows():
                rows.append(
                    [rank_cell(board_row)]
                    + [text(cell[key]) for key in SHOWN_KEYS]
                    + [text(label), count(cell["n"]), percent(cell["mean"])]
                    + [ci_cell(cell["ci_low"], cell["ci_high"]), percent(cell["se"])]
                )
    caption = (
        "Target-domain top-1 accuracy (%) per leaderboard row and pair over seeds: n seeds, "
        "mean, 95% t-interval, standard error (– with one seed); rank: the leaderboard's (ref: "
        f"a reference, not ranked). {suite.setting}"
    )
    headers = ["rank", *SHOWN_KEYS, "pair", "n", "mean (%)", "95% CI (%)", "se (%)"]
    return Table(caption, headers, rows)


def record_href(suite: Suite, key: str) -> str | None:
    """Where the site holds a run's record.json copy, relative to a page one folder deep."""
    if suite.record_files is None or key not in suite.record_files:
        return None
    return f"../records/{suite.slug}/{key}.json"


def runs_of(method: str, suite: Suite) -> pd.DataFrame:
    return suite.records[suite.records["method"].astype(str) == method]


def rules_named(suites: list[Suite]) -> str:
    """The model-selection rules of `suites`, each with what it means (RULES' caption)."""
    names = sorted({suite.selection for suite in suites})
    return "; ".join(f"{n}: {RULES[n].caption}" if n in RULES else n for n in names)


def method_table(method: str, suites: list[Suite]) -> Table:
    rows = []
    for suite in suites:
        for _, run in runs_of(method, suite).iterrows():
            href = record_href(suite, run["key"])
            rows.append(
                [text(suite.name, f"../suites/{suite.slug}.html")]
                + [text(run[c]) for c in ("pair", "teacher", "student", "protocol")]
                + [text(suite.selection), count(run["seed"])]
                + [percent(run.get(column)) for column, _ in RUN_METRICS]  # a suite may lack one
                + [text("record.json" if href else "–", href)]
            )
    protocols = sorted({p for suite in suites for p in runs_of(method, suite)["protocol"]})
    caption = (
        f"Every run of {method}, one row per run (each suite's records.csv); accuracies of the "
        f"epoch its suite's rule chose. Model selection: {rules_named(suites)}. "
        f"Protocol: {', '.join(protocols)}."
    )
    headers = ["suite", "pair", "teacher", "student", "protocol", "model selection", "seed"]
    return Table(caption, headers + [h for _, h in RUN_METRICS] + ["record"], rows)


def suites_table(suites: list[Suite]) -> Table:
    rows = [
        [text(s.name, f"suites/{s.slug}.html"), text(s.description or s.footer)]
        + [text(s.selection), text(s.protocol), text(s.seeds), count(len(s.records))]
        for s in suites
    ]
    caption = (
        "Suites: model selection and protocol as each leaderboard's caption names them; runs: "
        f"the rows of its records.csv. Model selection: {rules_named(suites)}."
    )
    headers = ["suite", "description", "model selection", "protocol", "seeds", "runs"]
    return Table(caption, headers, rows)


def methods_table(methods: list[str], suites: list[Suite]) -> Table:
    rows = []
    for method in methods:
        mine = suites_of(method, suites)
        runs = pd.concat([runs_of(method, suite) for suite in mine])
        rows.append(
            [text(method, f"methods/{slug(method)}.html"), count(len(runs))]
            + [text(", ".join(suite.name for suite in mine))]
            + [text(", ".join(sorted({suite.selection for suite in mine})))]
            + [text(", ".join(sorted(set(runs["protocol"]))))]
        )
    caption = (
        "Methods: their runs over every suite, the model selection of those suites and the "
        f"protocols of the runs. Model selection: {rules_named(suites)}."
    )
    return Table(caption, ["method", "runs", "suites", "model selection", "protocol"], rows)


def record_notes(suite: Suite) -> list[str]:
    """Why a run links no record: what a reader looking for one must know."""
    if suite.record_files is None:
        return [
            f"'{suite.directory}' has no records/ folder, so runs of suite {suite.name} link "
            "no record (put each run's record.json under records/<key>/ there to link them)."
        ]
    absent = set(suite.records["key"]) - set(suite.record_files)
    if not absent:
        return []
    return [
        f"{len(absent)} of {len(suite.records)} runs of suite {suite.name} have no record.json "
        f"under '{suite.directory / 'records'}'."
    ]


def copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def copy_files(suite: Suite, out: Path) -> list[tuple[str, str]]:
    """Copy the suite's plots, run records and report page under the site, so it holds
    everything it links; return (title, src) per plot as a suite page links it."""
    for _, png in suite.plots:
        copy(png, out / "plots" / suite.slug / png.name)
    for key, path in (suite.record_files or {}).items():
        copy(path, out / "records" / suite.slug / f"{key}.json")
    copy(suite.directory / "index.html", out / "reports" / f"{suite.slug}.html")
    return [(title, f"../plots/{suite.slug}/{png.name}") for title, png in suite.plots]


def code_spans(value: str) -> markupsafe.Markup:
    """Markdown `code` spans (READMEs and report footers have them) as <code>, all escaped."""
    return markupsafe.Markup("").join(
        markupsafe.Markup("<code>%s</code>") % part if index % 2 else markupsafe.escape(part)
        for index, part in enumerate(str(value).split("`"))
    )


def environment() -> jinja2.Environment:
    """Templates under benchmark/report/templates/site; everything they show is escaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("benchmark.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["code"] = code_spans
    return env


def render(env: jinja2.Environment, path: Path, template: str, **values) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    html = env.get_template(f"site/{template}").render(style=STYLE, **values)
    path.write_text(html, encoding="utf-8")


def suites_of(method: str, suites: list[Suite]) -> list[Suite]:
    """The suites that ran `method`."""
    return [suite for suite in suites if len(runs_of(method, suite))]


def write_site(results_dirs: list[Path], out: Path) -> Path:
    """Write the site over `results_dirs` into `out`; return its index.html."""
    suites = [read_suite(Path(directory)) for directory in results_dirs]
    _unique(suites)
    methods = sorted({m for suite in suites for m in suite.records["method"].astype(str)})
    env = environment()
    for suite in suites:
        render(
            env,
            out / "suites" / f"{suite.slug}.html",
            "suite.html.j2",
            root="../",
            suite=suite,
            table=leaderboard_table(suite),
            plots=copy_files(suite, out),
            notes=record_notes(suite),
        )
    for method in methods:
        mine = suites_of(method, suites)
        render(
            env,
            out / "methods" / f"{slug(method)}.html",
            "method.html.j2",
            root="../",
            method=method,
            table=method_table(method, mine),
            notes=[note for suite in mine for note in record_notes(suite)],
        )
    index = out / "index.html"
    render(
        env,
        index,
        "index.html.j2",
        root="",
        suites_table=suites_table(suites),
        methods_table=methods_table(methods, suites),
    )
    return index
