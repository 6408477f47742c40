"""`xdkd site`: the pages it writes over two suites' results, and the suite page in a real
headless Chromium (rows, plots, sorting by a click), skipped where no browser is installed."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli.site import add_site_command
from benchmark.errors import XdkdError
from benchmark.report.site import write_site

SECOND = "second<&>"  # a suite name that must be escaped; its pages are named 'second'
ARTIFACTS = Path(__file__).parent / "artifacts"
SUITE_PAGE = Path("suites") / "tiny.html"


@dataclass
class Table:
    caption: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


class Tables(HTMLParser):
    """The tables of a page as text: enough to read a site without a browser."""

    def __init__(self, page: Path) -> None:
        super().__init__()
        self.tables: list[Table] = []
        self.text: list[str] | None = None  # of the caption or cell being read
        self.body = False
        self.feed(page.read_text(encoding="utf-8"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(Table())
        elif tag in ("thead", "tbody"):
            self.body = tag == "tbody"
        elif tag == "tr" and self.body:
            self.tables[-1].rows.append([])
        elif tag in ("caption", "th", "td"):
            self.text = []
        elif tag == "a" and self.tables:
            self.tables[-1].links.append(dict(attrs)["href"] or "")

    def handle_data(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("caption", "th", "td") or self.text is None:
            return
        table, text = self.tables[-1], "".join(self.text).strip()
        if tag == "caption":
            table.caption = text
        elif tag == "th":
            table.headers.append(text)
        else:
            table.rows[-1].append(text)
        self.text = None


def tables(page: Path) -> list[Table]:
    return Tables(page).tables


def second_suite(tiny_sweep: Path, directory: Path) -> Path:
    """The tiny sweep's results as another suite, with its run records under records/."""
    shutil.copytree(tiny_sweep / "results", directory)
    records = pd.read_csv(directory / "records.csv")
    records.assign(suite=SECOND).to_csv(directory / "records.csv", index=False)
    ignore = shutil.ignore_patterns("*.pt")
    shutil.copytree(tiny_sweep / "runs" / "runs", directory / "records", ignore=ignore)
    return directory


@pytest.fixture(scope="module")
def site(tiny_sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site over the tiny sweep's results and a copy of them as a second suite."""
    root = tmp_path_factory.mktemp("site")
    second = second_suite(tiny_sweep, root / "second")
    index = write_site([tiny_sweep / "results", second], root / "site")
    assert index == root / "site" / "index.html"
    return index.parent


def test_index_lists_every_suite_with_its_runs_and_page(site: Path) -> None:
    suites, methods = tables(site / "index.html")
    assert suites.headers == [
        "suite",
        "description",
        "model selection",
        "protocol",
        "seeds",
        "runs",
    ]
    assert [row[0] for row in suites.rows] == ["tiny", SECOND]
    assert [row[2:] for row in suites.rows] == [["source-val", "uda", "0", "3"]] * 2
    assert suites.links == ["suites/tiny.html", "suites/second.html"]
    assert "Model selection: source-val: training-domain validation" in suites.caption
    assert [row[:2] for row in methods.rows] == [
        ["kd", "2"],
        ["source_only", "2"],
        ["teacher", "2"],
    ]
    assert all((site / link).is_file() for link in suites.links + methods.links)


def test_suite_page_has_the_leaderboard_per_cell_with_its_caption_and_plots(
    site: Path, tiny_sweep: Path
) -> None:
    page = site / SUITE_PAGE
    [board] = tables(page)
    assert board.headers[-4:] == ["n", "mean (%)", "95% CI (%)", "se (%)"]
    ranked = pd.read_csv(tiny_sweep / "results" / "leaderboard.csv")
    ranks = ranked["rank"].map("{:.0f}".format).where(~ranked["reference"], "ref")
    expected = pd.DataFrame({"rank": ranks, "method": ranked["method"]})
    assert [row[:2] for row in board.rows] == expected.to_numpy().tolist()
    assert all(row[5] == "optdigits→mnist" and row[6] == "1" for row in board.rows)
    assert "Model selection: source-val. Protocol: uda. Seeds: 0." in board.caption
    html = page.read_text(encoding="utf-8")
    assert "Model selection: training-domain validation" in html  # the leaderboard's caption
    for png in ("severity.png", "robustness.png"):
        assert f'src="../plots/tiny/{png}"' in html
        assert (site / "plots" / "tiny" / png).is_file()
    assert "has no records/ folder, so runs of suite tiny link no record" in html


def test_cells_with_several_seeds_show_their_interval(tiny_sweep: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_sweep / "results", tmp_path / "results")
    path = tmp_path / "results" / "summary.csv"
    summary = pd.read_csv(path)
    accuracy = summary["metric"] == "target_acc"
    summary.loc[accuracy, ["n", "se", "ci_low", "ci_high"]] = [3, 0.02, 0.5, 0.6]
    summary.to_csv(path, index=False)
    [board] = tables(write_site([tmp_path / "results"], tmp_path / "site").parent / SUITE_PAGE)
    assert {(row[-4], row[-2], row[-1]) for row in board.rows} == {("3", "[50.0, 60.0]", "2.0")}


def test_method_pages_list_runs_across_suites_linking_records_where_there_are(site: Path) -> None:
    [runs] = tables(site / "methods" / "kd.html")
    assert runs.headers[:7] == [
        "suite",
        "pair",
        "teacher",
        "student",
        "protocol",
        "model selection",
        "seed",
    ]
    assert [(row[0], row[-1]) for row in runs.rows] == [("tiny", "–"), (SECOND, "record.json")]
    assert "Model selection: source-val" in runs.caption and "Protocol: uda." in runs.caption
    record = (site / "methods" / runs.links[-1]).resolve()
    assert record.parent == site / "records" / "second"
    assert json.loads(record.read_text())["key"] == record.stem


def test_text_from_files_is_escaped_and_nothing_is_fetched(site: Path) -> None:
    pages = [site / "index.html", *site.glob("suites/*.html"), *site.glob("methods/*.html")]
    text = "".join(page.read_text(encoding="utf-8") for page in pages)
    assert "second&lt;&amp;&gt;" in text and SECOND not in text
    assert 'src="http' not in text and 'href="http' not in text


@pytest.mark.parametrize(
    "exists, says", [(False, "not found"), (True, "has no leaderboard.md")], ids=["absent", "bare"]
)
def test_a_results_dir_without_a_report_is_one_line_naming_it_and_the_fix(
    tmp_path: Path, exists: bool, says: str
) -> None:
    directory = tmp_path / "results"
    if exists:
        directory.mkdir()
    with pytest.raises(XdkdError) as error:
        write_site([directory], tmp_path / "site")
    message = str(error.value)
    assert "\n" not in message and says in message and f"'{directory}'" in message
    assert f"run xdkd report RUNS --out {directory} first" in message


def test_the_site_reads_what_the_tables_are_from_report_json_not_captions(
    tiny_sweep: Path, tmp_path: Path
) -> None:
    """The report's metadata names the rule and protocol; the captions' words are not parsed,
    so a leaderboard.md with its caption reworded still makes the same setting line."""
    results = shutil.copytree(tiny_sweep / "results", tmp_path / "results")
    metadata = json.loads((results / "report.json").read_text())
    assert metadata["selection"]["rule"] == "source-val" and metadata["seeds"]
    markdown = (results / "leaderboard.md").read_text()
    (results / "leaderboard.md").write_text(markdown.replace("Model selection:", "Chosen by:"))
    page = write_site([results], tmp_path / "site").parent / SUITE_PAGE
    protocols = ", ".join(metadata["protocols"])
    assert f"Model selection: source-val. Protocol: {protocols}." in page.read_text()
    (results / "report.json").write_text('{"format": 1, "selection": ')
    with pytest.raises(XdkdError) as error:
        write_site([results], tmp_path / "again")
    assert "report.json' is damaged" in str(error.value) and "\n" not in str(error.value)


def test_a_suite_given_twice_is_refused(tiny_sweep: Path, tmp_path: Path) -> None:
    results = tiny_sweep / "results"
    with pytest.raises(XdkdError, match="both hold suite 'tiny'; give each suite once"):
        write_site([results, results], tmp_path / "site")


def test_site_command_writes_the_site_and_says_where(
    tiny_sweep: Path, tmp_path: Path, capsys
) -> None:
    parser = argparse.ArgumentParser()
    add_site_command(parser.add_subparsers())
    args = parser.parse_args(["site", str(tiny_sweep / "results"), "--out", str(tmp_path / "s")])
    assert args.handler(args) == 0
    assert str(tmp_path / "s" / "index.html") in capsys.readouterr().out


# --- in a browser ---------------------------------------------------------------------------


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def missing_browser() -> str | None:
    """Why the browser test cannot run here, or None; asked at collection so that a skip
    comes before the sweep the test's site is made from."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "chromium and chromedriver are not installed (apt-get install chromium-driver)"
    return None


@pytest.fixture
def browser():
    """Headless Chromium through chromedriver, both from the system (we run as root, hence
    no sandbox)."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


@contextlib.contextmanager
def screenshot_on_failure(driver, name: str) -> Iterator[None]:
    """What the page looked like when an assertion failed, in tests/artifacts/<name>.png."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
        raise


def column(driver, index: int) -> list[float]:
    cells = driver.find_elements("css selector", f"table.sortable tbody td:nth-child({index + 1})")
    return [float(cell.get_attribute("data-sort")) for cell in cells]


@pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))
def test_suite_page_in_chromium_shows_rows_and_plots_and_sorts_on_click(
    site: Path, browser, request
) -> None:
    browser.get((site / SUITE_PAGE).as_uri())
    with screenshot_on_failure(browser, request.node.name):
        assert len(browser.find_elements("css selector", "table.sortable tbody tr")) == 3
        widths = browser.execute_script(
            "return Array.from(document.images, image => image.complete && image.naturalWidth)"
        )
        assert len(widths) == 2 and all(width > 0 for width in widths)
        headers = browser.find_elements("css selector", "table.sortable thead th")
        index = [header.text for header in headers].index("mean (%)")
        means = column(browser, index)
        headers[index].click()
        assert column(browser, index) == sorted(means)
        assert headers[index].get_attribute("aria-sort") == "ascending"
        headers[index].click()
        assert column(browser, index) == sorted(means, reverse=True)
        assert headers[index].get_attribute("aria-sort") == "descending"
        assert [h.get_attribute("aria-sort") for h in headers].count(None) == len(headers) - 1
