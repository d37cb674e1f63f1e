"""The HTML report in a real headless Chromium: it renders, its search script runs under its CSP.

Chromium comes from the Debian package ``chromium`` (``scripts/ensure_chromium.sh`` installs it).
If it is missing these tests fail, never skip: a report nobody has seen in a browser is untested.
"""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from alliance_psi.reports import render_html
from tests.unit.reports.support import make_report

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=2000",
)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_bytes(render_html(make_report()))
    return path


def chromium(profile: Path, url: str, *args: str) -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure_chromium.sh (as root) first", pytrace=False)
    done = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args, url],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Rows(HTMLParser):
    """The lead rows of a dumped DOM (whether each is hidden, and its cells' text), and the text of ``#shown``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[bool, list[str]]] = []
        self.shown = ""
        self._in_body = self._in_shown = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self._in_body = self._in_body or tag == "tbody"
        self._in_shown = attributes.get("id") == "shown"
        if tag == "tr" and self._in_body:
            self.rows.append(("hidden" in attributes, []))
        elif tag == "td" and self.rows:
            self.rows[-1][1].append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_body = self._in_body and tag != "tbody"
        self._in_shown = False

    def handle_data(self, data: str) -> None:
        if self._in_shown:
            self.shown += data
        elif self.rows and self.rows[-1][1] and self._in_body:
            self.rows[-1][1][-1] += data


def _rows(dom: str) -> _Rows:
    parser = _Rows()
    parser.feed(dom)
    return parser


PHONE_CELL = "+8613915274680原文 +86 139-1527-4680"


def test_the_page_renders_the_summary_and_every_row(report_file: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path / "profile", report_file.as_uri(), "--dump-dom")
    assert '<div class="card-value">7</div>' in dom and '<div class="card-value">1200</div>' in dom
    assert dom.count("<svg ") == 3 and "4 家机构" in dom
    parsed = _rows(dom)
    assert len(parsed.rows) == 7 and not any(hidden for hidden, _ in parsed.rows)
    # The normalized value, and under it the member's own spelling.
    assert parsed.rows[0][1][:4] == ["1", "手机号phone", PHONE_CELL, "4"] and parsed.shown == "共 7 条"
    assert "<script>alert(1)</script>" not in dom


@pytest.mark.parametrize(
    "term, visible",
    [
        ("某银行", [PHONE_CELL, "6222020200112233445"]),
        ("139-1527", [PHONE_CELL]),  # The member's own spelling is searchable too.
        ("WECHAT_ID", ["=cmd|' /C calc'!A0"]),
        ("贷款中介 一级", ["6222020200112233445", "上海某某金融信息服务有限公司"]),
    ],
)
def test_a_search_from_the_url_hides_the_rows_that_do_not_match(
    report_file: Path, tmp_path: Path, term: str, visible: list[str]
) -> None:
    dom = chromium(tmp_path / "profile", f"{report_file.as_uri()}#q={quote(term)}", "--dump-dom")
    parsed = _rows(dom)
    assert len(parsed.rows) == 7
    assert [cells[2] for hidden, cells in parsed.rows if not hidden] == visible
    assert parsed.shown == f"显示 {len(visible)} / 7 条"


def test_a_screenshot_shows_a_drawn_page(report_file: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path / "profile", report_file.as_uri(), f"--screenshot={shot}", "--window-size=1280,1600")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
