"""Rendering a lead report: exact JSON, Excel-safe CSV, and a self-contained, escaped HTML page."""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import json
from datetime import date
from html.parser import HTMLParser

import pytest

from alliance_psi.protocol.leads import LeadLabel
from alliance_psi.reports import build_report, render_csv, render_html, render_json, report_document
from alliance_psi.reports._page import SCRIPT, STYLE
from alliance_psi.reports.render import CSV_COLUMNS, csv_cell
from tests.unit.reports.support import (
    FORMULA,
    GENERATED_AT,
    KEY,
    PLANTED,
    ROUND_NAME,
    XSS,
    Planted,
    leads_for,
    make_report,
    member_result,
)

REPORT = make_report()


def test_summaries_count_own_categories_holders_and_peer_categories() -> None:
    assert REPORT.by_holder_count() == {4: 1, 3: 2, 2: 4}
    assert REPORT.by_category() == {
        "loan_intermediary": 2,
        "anti_collection": 1,
        "other": 1,
        "professional_complainant": 1,
        "proxy_rights_defense": 1,
        "wool_party": 1,
    }
    # Per lead, each category a peer used counts once (the phone has two proxy_rights_defense labels).
    assert REPORT.by_peer_category() == {
        "loan_intermediary": 2,
        "wool_party": 2,
        "anti_collection": 1,
        "malicious_complaint": 1,
        "professional_complainant": 1,
        "proxy_rights_defense": 1,
    }
    assert REPORT.by_severity() == {"level1": 4, "level2": 3}
    assert repr(REPORT) == "LeadReport(round=r-2025q2, member=bank-a, leads=7)"


def test_leads_are_sorted_by_holders_then_severity() -> None:
    assert [(lead.type, lead.holder_count, lead.severity) for lead in REPORT.leads] == [
        ("phone", 4, "level1"),
        ("id_card", 3, "level1"),
        ("bank_card", 3, "level2"),
        ("email", 2, "level1"),
        ("org_name", 2, "level1"),
        ("qq", 2, "level2"),
        ("wechat_id", 2, "level2"),
    ]


def test_build_report_refuses_leads_that_are_not_in_the_result() -> None:
    result = member_result()
    leads = leads_for(result)
    common = {"round_name": "x", "result": result, "header": b"", "signature": b"", "key_id": "k", "proofs": {}}
    with pytest.raises(ValueError, match="result is for member 'bank-a', not 'bank-b'"):
        build_report(member_id="bank-b", leads=leads, **common)  # type: ignore[arg-type]
    forged = [dataclasses.replace(leads[0], holder_count=9)]
    with pytest.raises(ValueError, match="a phone lead does not match the result it is reported with"):
        build_report(member_id="bank-a", leads=forged, **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a phone lead has no inclusion proof"):
        build_report(member_id="bank-a", leads=leads[:1], **common)  # type: ignore[arg-type]


def test_json_holds_every_field_exactly() -> None:
    data = render_json(REPORT)
    doc = json.loads(data)
    assert ROUND_NAME.encode() in data  # UTF-8, not \u escapes.
    assert list(doc) == sorted(doc)
    assert {k: v for k, v in doc.items() if k not in ("leads", "evidence")} == {
        "format": "alliance-psi/lead-report",
        "format_version": 3,
        "generated_at": "2025-06-30T08:15:00Z",
        "member_id": "bank-a",
        "round_id": "r-2025q2",
        "round_name": ROUND_NAME,
        "key_epoch": "2025-06",
        "threshold": 2,
        "submitted_count": 1200,
        "summary": {
            "leads": 7,
            "by_category": REPORT.by_category(),
            "by_holder_count": {"4": 1, "3": 2, "2": 4},
            "by_peer_category": REPORT.by_peer_category(),
            "by_severity": {"level1": 4, "level2": 3},
        },
    }
    phone = PLANTED[0]
    proof = REPORT.proofs[phone.token]
    assert doc["leads"][0] == {
        "type": "phone",
        "value": "+8613915274680",
        "spelling": "+86 139-1527-4680",
        "category": "proxy_rights_defense",
        "severity": "level1",
        "case_ref": "AJ-2025-0042",
        "first_seen": "2025-02-14",
        "holder_count": 4,
        "match_token": phone.token.hex(),
        "unreadable_peer_labels": 0,
        "peer_labels": [
            {"category": "proxy_rights_defense", "severity": "level1", "first_seen": "2025-04-18", "case_ref": None},
            {
                "category": "proxy_rights_defense",
                "severity": "level1",
                "first_seen": "2025-03-02",
                "case_ref": "ZS-2025-0311",
                "member": "某银行",
            },
            {"category": "malicious_complaint", "severity": "level2", "first_seen": None, "case_ref": None},
        ],
        "proof": {
            "leaf_index": proof.index,
            "leaf_b64": base64.b64encode(proof.leaf).decode(),
            "inclusion_path_b64": [base64.b64encode(node).decode() for node in proof.proof],
        },
    }
    assert doc["leads"][6]["value"] == FORMULA and doc["leads"][6]["unreadable_peer_labels"] == 1
    assert doc["leads"][6]["spelling"] is None  # Stored without one: no spelling, not the value again.
    assert doc["evidence"] == {
        "header_b64": base64.b64encode(REPORT.header).decode(),
        "signature_b64": base64.b64encode(REPORT.signature).decode(),
        "key_id": KEY.key_id,
    }


def _csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_csv_is_excel_ready_utf8_with_bom_and_crlf() -> None:
    data = render_csv(REPORT)
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == len(REPORT.leads) + 1 and b"\n" not in data.replace(b"\r\n", b"")
    rows = _csv_rows(data)
    assert rows[0] == list(CSV_COLUMNS) and rows[0][1] == "identifier_type 类型"
    assert rows[0][2:4] == ["value 标识值", "spelling 本行原文"]
    by_type = {row[1]: row for row in rows[1:]}
    assert by_type["org_name"][2:4] == ["上海某某金融信息服务有限公司", ""]
    assert by_type["bank_card"][9] == "wool_party/level1 (某银行); loan_intermediary"
    assert by_type["id_card"][2:9] == [
        "44030519870614357X",
        "44030519870614357x",
        "3",
        "anti_collection",
        "level1",
        "",
        "2024-11-05",
    ]
    assert by_type["bank_card"][11] == PLANTED[2].token.hex()


# (cell as stored, cell as written to the CSV): a quote exactly where a spreadsheet would see a formula.
CSV_CELLS = [
    ("=1+1", "'=1+1"),
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tcmd", "'\tcmd"),
    ("\rcmd", "'\rcmd"),
    ("-2+3", "'-2+3"),
    ("-2025-17", "'-2025-17"),  # Excel would compute -2042.
    ("+86 139-1527-4680", "'+86 139-1527-4680"),  # A phone written with spaces and dashes computes too.
    ("+86", "+86"),  # A plain number: read as the number, runs nothing.
    ("+8613915274680", "+8613915274680"),  # E.164, as the normalized phone value is: no visible quote.
    ("-5", "-5"),
    ("-1.5", "-1.5"),
    ("+", "'+"),
    ("-", "'-"),
    ("+1e5", "'+1e5"),
    ("+١٢٣", "'+١٢٣"),  # Digits of another script are not a plain number.
    ("13915274680", "13915274680"),
    ("AJ-2025-0042", "AJ-2025-0042"),
    (" =1+1", " =1+1"),
    ("", ""),
]


@pytest.mark.parametrize("stored, written", CSV_CELLS, ids=[repr(s) for s, _ in CSV_CELLS])
def test_csv_neutralizes_a_cell_only_where_it_begins_with_a_formula_character(stored: str, written: str) -> None:
    assert csv_cell(stored) == written
    # Read back from the rendered file, as the member's case reference and as its spelling.
    row = _csv_rows(render_csv(make_report((dataclasses.replace(PLANTED[3], case_ref=stored, spelling=stored),))))[1]
    assert (row[3], row[7]) == (written, written)


def test_csv_keeps_the_normalized_phone_as_it_is_and_quotes_what_would_run() -> None:
    rows = {row[1]: row for row in _csv_rows(render_csv(REPORT))[1:]}
    assert rows["phone"][2:4] == ["+8613915274680", "'+86 139-1527-4680"]
    assert rows["wechat_id"][2] == "'" + FORMULA


class _Page(HTMLParser):
    """Every tag with its attributes, the text of each script, and the table rows' first cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def _parse(page: bytes) -> _Page:
    parser = _Page()
    parser.feed(page.decode("utf-8"))
    return parser


def test_html_is_self_contained() -> None:
    clean = make_report(tuple(p for p in PLANTED if p.type != "qq"))
    page = render_html(clean)
    for needle in (b"http://", b"https://", b"src=", b"href=", b"url(", b"@import"):
        assert needle not in page
    assert page.startswith(b'<!DOCTYPE html>\n<html lang="zh-CN">')
    assert b"Microsoft YaHei" in page and b"Noto Sans CJK SC" in page


def test_html_content_security_policy_allows_only_its_own_style_and_script() -> None:
    parsed = _parse(render_html(REPORT))
    policy = next(
        a["content"] for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    digest = lambda text: base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()  # noqa: E731
    assert policy is not None and policy.startswith("default-src 'none';")
    assert f"script-src 'sha256-{digest(SCRIPT)}'" in policy and f"style-src 'sha256-{digest(STYLE)}'" in policy
    assert parsed.scripts[-1] == SCRIPT


def test_html_escapes_hostile_labels_and_embeds_the_data_losslessly() -> None:
    page = render_html(REPORT)
    assert XSS.encode() not in page and b"</td><img" not in page and b"<img" not in page
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = _parse(page)
    assert [a for t, a in parsed.tags if t == "script"] == [{"type": "application/json", "id": "report-data"}, {}]
    assert not [t for t, a in parsed.tags if t in ("img", "iframe", "object", "embed", "link", "a", "form")]
    assert not [a for t, a in parsed.tags if any(name.startswith("on") or name in ("src", "href") for name in a)]
    embedded = parsed.scripts[0]
    assert "<" not in embedded and ">" not in embedded and "&" not in embedded
    assert json.loads(embedded) == report_document(REPORT)


def test_html_shows_the_summary_and_a_sorted_static_table() -> None:
    page = render_html(REPORT).decode("utf-8")
    for card in (
        '<div class="card-value">7</div>',
        '<div class="card-value">4</div>',
        '<div class="card-value">1200</div>',
        '<div class="card-value">≥ 2</div>',
    ):
        assert card in page
    assert page.count("<svg ") == 3 and "4 家机构" in page and "贷款中介" in page
    values = [lead.canonical for lead in REPORT.leads]
    positions = [page.index(f'<span class="normalized">{v}</span>') for v in values if v != FORMULA]
    assert positions == sorted(positions)
    assert page.count('<tr><td class="num">') == 7


def test_html_shows_the_members_own_spelling_under_the_normalized_value() -> None:
    page = render_html(REPORT).decode("utf-8")
    assert (
        '<span class="normalized">+8613915274680</span><span class="spelling" title="本行原文 As written in the '
        'imported file">原文 +86 139-1527-4680</span></td>'
    ) in page
    assert "原文 44030519870614357x" in page
    assert page.count('class="spelling"') == 2  # Leads stored without a spelling show none.
    same = make_report((dataclasses.replace(PLANTED[0], spelling="+8613915274680"),))
    assert 'class="spelling"' not in render_html(same).decode("utf-8")  # Nothing to add when it is the same.


def test_html_of_an_empty_report_says_so() -> None:
    page = render_html(make_report(())).decode("utf-8")
    assert "本轮没有线索 No leads in this round" in page and page.count("无数据 No data") == 3


def test_peer_label_details_are_shown() -> None:
    peer = LeadLabel("telecom_fraud", "level1", date(2025, 1, 2), "CASE-1", "某行")
    planted = Planted("phone", "+8613900000000", "other", "level2", 2, (peer,))
    page = render_html(make_report((planted,))).decode("utf-8")
    assert '<span class="chip">电信诈骗 · 一级</span>' in page
    assert '<span class="peer-detail">某行 · 2025-01-02 · CASE-1</span>' in page
    assert GENERATED_AT.strftime("%Y-%m-%d %H:%M UTC") in page


def test_html_replaces_control_and_bidi_characters_in_untrusted_text() -> None:
    # A peer's case reference with such characters no longer makes a label (test_case_ref); the
    # name the coordinator attests is still another's text.
    peer = LeadLabel("other", None, None, "ZJ-1", "\u202e行银\x1b[2J某")
    page = render_html(make_report((Planted("qq", "87654321", "other", "level2", 2, (peer,)),))).decode("utf-8")
    visible = page.split('<script type="application/json"')[0]
    assert "\u202e" not in visible and "\x1b" not in visible
    assert "\ufffd行银\ufffd[2J某 · ZJ-1" in visible


def test_a_lead_standing_on_fewer_labels_shows_both_counts_in_every_format() -> None:
    first = REPORT.leads[0]
    short = dataclasses.replace(REPORT, leads=(dataclasses.replace(first, backed_count=3), *REPORT.leads[1:]))
    leads = json.loads(render_json(short))["leads"]
    assert (leads[0]["holder_count"], leads[0]["backed_count"]) == (4, 3)
    assert all("backed_count" not in lead for lead in leads[1:])  # Only where the labels fall short.
    rows = list(csv.reader(io.StringIO(render_csv(short).decode("utf-8-sig"))))
    assert rows[0][-1] == "backed_count 标签印证机构数" and rows[1][-1] == "3" and rows[2][-1] == ""
    assert "labels back 3" in render_html(short).decode()
    assert "labels back" not in render_html(REPORT).decode()
