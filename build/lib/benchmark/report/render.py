"""A Board (or any result frame) as text: terminal, Markdown, LaTeX (booktabs) and HTML.

Numbers become strings once, in `cell_text`; the formats differ only in how a best cell is
marked (bold via a pandas Styler for LaTeX and HTML, `**` in Markdown, `*` in the terminal)
and in escaping.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

import pandas as pd

from benchmark.report.board import Board
from benchmark.report.stats import SPLITS

LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "→": r"$\rightarrow$",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
    "○": r"$^\circ$",
    "–": "--",
    "≥": r"$\geq$",
    "|": r"\textbar{}",
    "·": r"$\cdot$",
}
LATEX_TABLE = str.maketrans(LATEX_SPECIALS)
BOLD_CSS = "font-weight: bold"


def latex_escape(text: str) -> str:
    """Plain text (names with underscores, arrows, ±) as LaTeX that pdflatex accepts."""
    return str(text).translate(LATEX_TABLE)


def number(value: float, decimals: int = 1, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def cell_text(board: Board) -> pd.DataFrame:
    """Row keys, rank, then `mean ± se` per column ('–' for no data, '†' for a teacher under
    its floor, '‡' an under-trained run, '○' one at chance); reference rows rank 'ref'."""
    text = pd.DataFrame(index=board.mean.index)
    text["rank"] = [
        "ref" if ref else number(rank, 0)
        for ref, rank in zip(board.reference, board.rank, strict=True)
    ]
    for column in board.columns:
        decimals = 2 if column.better is None else 1
        mean, se = board.mean[column.label], board.se[column.label]
        text[column.label] = [
            number(m, decimals) + ("" if column.better is None or math.isnan(s) else f" ± {s:.1f}")
            for m, s in zip(mean, se, strict=True)
        ]
        text.loc[board.below_floor[column.label], column.label] += "†"
        text.loc[board.under_trained[column.label], column.label] += "‡"
        text.loc[board.at_chance[column.label], column.label] += "○"
    return text.reset_index()


def best_mask(board: Board, text: pd.DataFrame) -> pd.DataFrame:
    """`board.best` aligned to `cell_text`'s columns (row keys and rank never bold)."""
    mask = pd.DataFrame(False, index=text.index, columns=text.columns)
    for label in board.best.columns:
        mask[label] = board.best[label].to_numpy()
    return mask


def _marked(text: pd.DataFrame, mask: pd.DataFrame, mark: Callable[[str], str]) -> pd.DataFrame:
    return text.where(~mask, text.map(mark))


def _alignment(text: pd.DataFrame, keys: int) -> tuple[str, ...]:
    return ("left",) * keys + ("right",) * (len(text.columns) - keys)


def terminal(board: Board) -> str:
    text = cell_text(board)
    return _marked(text, best_mask(board, text), lambda s: f"{s}*").to_string(index=False)


def markdown(board: Board) -> str:
    text = cell_text(board)
    keys = board.mean.index.nlevels
    marked = _marked(text, best_mask(board, text), lambda s: f"**{s}**")
    return marked.to_markdown(index=False, colalign=_alignment(marked, keys), disable_numparse=True)


def latex(
    frame: pd.DataFrame, caption: str, label: str, left: int, bold: pd.DataFrame | None = None
) -> str:
    """A booktabs table ready to paste (needs \\usepackage{booktabs}); the first `left`
    columns (names) are left-aligned, the numbers right-aligned."""
    escaped = frame.map(latex_escape).rename(columns=latex_escape)
    styler = escaped.style.hide(axis="index")
    if bold is not None:
        css = bold.map(lambda b: BOLD_CSS if b else "")
        styler = styler.apply(lambda _: css.set_axis(escaped.columns, axis=1), axis=None)
    return styler.to_latex(
        hrules=True,
        convert_css=True,
        caption=latex_escape(caption),
        label=label,
        position_float="centering",
        column_format="l" * left + "r" * (len(frame.columns) - left),
    )


def html_table(
    frame: pd.DataFrame, caption: str, left: int, bold: pd.DataFrame | None = None
) -> str:
    """An HTML table (class "table"); the first `left` columns (names) are left-aligned.
    Every text is escaped: names come from files (domains, methods, suites)."""
    styler = frame.style.format(escape="html").format_index(escape="html", axis=1)
    styler = styler.hide(axis="index").set_caption(html.escape(caption))
    styler = styler.set_properties(subset=list(frame.columns[:left]), **{"text-align": "left"})
    if bold is not None:
        css = bold.map(lambda b: BOLD_CSS if b else "")
        styler = styler.apply(lambda _: css, axis=None)
    return styler.set_table_attributes('class="table"').to_html()


def board_latex(board: Board) -> str:
    text = cell_text(board)
    keys = board.mean.index.nlevels
    return latex(text, board.caption, "tab:xdkd-leaderboard", keys, best_mask(board, text))


def board_html(board: Board) -> str:
    text = cell_text(board)
    keys = board.mean.index.nlevels
    return html_table(text, board.caption, keys, best_mask(board, text))


def comparison_text(result: pd.DataFrame) -> pd.DataFrame:
    """The paired comparison with points to one decimal, the CI as [low, high], p and the
    corrected p to 3, the claim rule's flags; the columns it is split by (`--by`) first."""
    split = [column for column in SPLITS if column in result]
    return pd.DataFrame(
        {
            **{column: result[column].astype(str) for column in split},
            "against": result["against"],
            "method": result["method"],
            "n": result["n"].astype(int).astype(str),
            "mean diff": result["mean diff"].map(lambda v: number(v, sign=True)),
            "se": result["se"].map(number),
            "95% CI": [
                f"[{number(lo, sign=True)}, {number(hi, sign=True)}]"
                for lo, hi in zip(result["ci_low"], result["ci_high"], strict=True)
            ],
            "MDE": result["mde"].map(number),
            "W/T/L": result["W/T/L"],
            "test": result["test"],
            "p": result["p"].map(lambda v: number(v, 3)),
            "p (Holm)": result["p (Holm)"].map(lambda v: number(v, 3)),
            "> null": result["beyond null"].map(yes_no),
            "holds": result["holds"].map(yes_no),
        }
    )


def yes_no(value: object) -> str:
    """A flag as text; '–' where it was not measured."""
    return "–" if pd.isna(value) else "yes" if value else "no"


RANK_NUMBERS = ("P(first)", "mean rank", "rank low", "rank high", "seeds")
FIRST_NUMBERS = ("n", "P(first) %")  # where a shown comparison's or rank table's labels end


def labels(shown: pd.DataFrame) -> int:
    """How many leading columns of a shown comparison or rank table are labels (set left)."""
    return next(i for i, column in enumerate(shown.columns) if column in FIRST_NUMBERS)


def ranks_text(ranks: pd.DataFrame) -> pd.DataFrame:
    """Rank uncertainty: the share ranked first in %, ranks to one decimal, the interval as
    [low, high]."""
    names = [c for c in ranks.columns if c not in RANK_NUMBERS]
    return pd.DataFrame(
        {
            **{name: ranks[name].astype(str) for name in names},
            "P(first) %": (100 * ranks["P(first)"]).map(lambda v: number(v)),
            "mean rank": ranks["mean rank"].map(number),
            "95% rank interval": [
                f"[{low:g}, {high:g}]"
                for low, high in zip(ranks["rank low"], ranks["rank high"], strict=True)
            ],
            "seeds": ranks["seeds"].astype(int).astype(str),
        }
    )


def intervals_text(board: Board, column: str = "mean") -> str | None:
    """One line: each row's `column` with its 95% t-interval over seeds, in the board's
    order; None when no row has an interval (one seed)."""
    if column not in board.mean:
        return None
    shown = []
    for index, value in board.mean[column].items():
        low, high = board.low.at[index, column], board.high.at[index, column]
        if not (math.isnan(value) or math.isnan(low)):
            name = index[0] if isinstance(index, tuple) else index
            shown.append(f"{name} {number(value)} [{number(low)}, {number(high)}]")
    if not shown:
        return None
    return f"{column} with its 95% t-interval over seeds: " + "; ".join(shown)
