"""The investigator's HTML report: one self-contained page that never touches the network.

Everything is in the file: styles, a small search script, inline SVG charts drawn here, and the
report as JSON in ``<script type="application/json">``. A Content-Security-Policy allows nothing
but that style and script (by hash), so the page cannot load or send anything, even if a value
slipped past escaping. Every value from the database or a peer label is untrusted: text goes
through ``display_text`` (no control or bidi characters) and ``html.escape``, and the embedded
JSON has ``<``, ``>`` and ``&`` as ``\\u003c`` etc.

The lead table is in the static HTML (the script only hides rows), so the page reads the same
with scripts off and prints in full. ``#q=term`` in the URL pre-fills the search box.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Sequence

from alliance_psi.protocol.leads import Lead, LeadLabel
from alliance_psi.reports._page import SCRIPT, STYLE
from alliance_psi.reports.model import CATEGORY_NAMES, SEVERITY_NAMES, TYPE_NAMES, LeadReport
from alliance_psi.reports.render import display_text, report_document

__all__ = ["render_html"]

# Bar charts: the whole width, the label column, one row per bar and the bar's thickness, in px.
_CHART_WIDTH, _LABEL_WIDTH, _ROW_HEIGHT, _BAR_HEIGHT = 360, 100, 28, 16
_DASH = '<span class="muted">—</span>'
_NOWRAP_CHARS = 24  # Values up to this long (phones, ID and card numbers) stay on one line.
_HEAD = (
    "#",
    "类型 Type",
    "标识值 Value",
    "持有机构 Holders",
    "本行类别 Category",
    "等级 Severity",
    "案件编号 Case ref",
    "首次发现 First seen",
    "同业标签 Peer labels",
)


def _e(value: object) -> str:
    return html.escape(display_text(value), quote=True)


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def _category(code: str) -> str:
    name = CATEGORY_NAMES.get(code)
    return f'{_e(name)}<span class="code">{_e(code)}</span>' if name else _e(code)


def _severity(code: str) -> str:
    name = SEVERITY_NAMES.get(code, code)
    return f'<span class="sev sev-{_e(code)}">{_e(name)}</span>' if code else _DASH


def bar_chart(rows: Sequence[tuple[str, int]], *, title: str) -> str:
    """A horizontal bar chart as inline SVG; labels are escaped, colours are SVG attributes."""
    if not rows:
        return '<p class="muted empty">无数据 No data</p>'
    top = max(value for _, value in rows) or 1
    span = _CHART_WIDTH - _LABEL_WIDTH - 36  # Room is left for the value after the longest bar.
    height = len(rows) * _ROW_HEIGHT + 8
    parts = [
        (
            f'<svg class="chart" viewBox="0 0 {_CHART_WIDTH} {height}" width="{_CHART_WIDTH}" height="{height}" '
            f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
        )
    ]
    for index, (label, value) in enumerate(rows):
        y = 4 + index * _ROW_HEIGHT
        middle = y + _ROW_HEIGHT / 2
        width = max(2.0, span * value / top)
        parts.append(
            f'<text x="{_LABEL_WIDTH - 10}" y="{middle}" text-anchor="end" dominant-baseline="central" '
            f'font-size="13" fill="#344054">{_e(label)}</text>'
            f'<rect x="{_LABEL_WIDTH}" y="{y + (_ROW_HEIGHT - _BAR_HEIGHT) / 2}" width="{width:.1f}" '
            f'height="{_BAR_HEIGHT}" rx="3" fill="#2f6db5"/>'
            f'<text x="{_LABEL_WIDTH + width + 8:.1f}" y="{middle}" dominant-baseline="central" font-size="13" '
            f'font-weight="600" fill="#101828">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _peer(label: LeadLabel) -> str:
    chip = _e(CATEGORY_NAMES.get(label.category, label.category))
    if label.severity:
        chip += " · " + _e(SEVERITY_NAMES.get(label.severity, label.severity))
    first_seen = label.first_seen.isoformat() if label.first_seen else None
    details = " · ".join(_e(part) for part in (label.member, first_seen, label.case_ref) if part)
    extra = f'<span class="peer-detail">{details}</span>' if details else ""
    return f'<li><span class="chip">{chip}</span>{extra}</li>'


def _peers(lead: Lead) -> str:
    items = "".join(_peer(label) for label in lead.peer_labels)
    if lead.unreadable_labels:
        items += f'<li><span class="muted">{lead.unreadable_labels} 条无法解读 unreadable</span></li>'
    return f'<ul class="peers">{items or "<li class=muted>未共享 none shared</li>"}</ul>'


def _row(number: int, lead: Lead, top: int) -> str:
    heat = "hot" if lead.holder_count == top else "warm"
    first_seen = _e(lead.first_seen.isoformat()) if lead.first_seen else _DASH
    return (
        f'<tr><td class="num">{number}</td>'
        f'<td>{_e(TYPE_NAMES.get(lead.type, lead.type))}<span class="code">{_e(lead.type)}</span></td>'
        f'<td class="{"value long" if len(lead.canonical) > _NOWRAP_CHARS else "value"}">'
        f'<span class="normalized">{_e(lead.canonical)}</span>{_spelling(lead)}</td>'
        f'<td class="num"><span class="holders {heat}">{lead.holder_count}</span>{_backed(lead)}</td>'
        f"<td>{_category(lead.category)}</td><td>{_severity(lead.severity)}</td>"
        f'<td class="ref">{_e(lead.case_ref) or _DASH}</td><td class="date">{first_seen}</td>'
        f'<td class="peers-cell">{_peers(lead)}</td></tr>'
    )


def _backed(lead: Lead) -> str:
    """The holders the labels back, when fewer than the coordinator's signed count (``Lead.backed_count``)."""
    if lead.backed_count is None:
        return ""
    return f'<span class="muted">标签印证 {lead.backed_count} 家 labels back {lead.backed_count}</span>'


def _spelling(lead: Lead) -> str:
    """The member's own writing of the value, under the normalized one, when it differs."""
    if not lead.spelling or lead.spelling == lead.canonical:
        return ""
    return f'<span class="spelling" title="本行原文 As written in the imported file">原文 {_e(lead.spelling)}</span>'


def _card(value: object, label: str) -> str:
    return f'<div class="card"><div class="card-value">{_e(value)}</div><div class="card-label">{label}</div></div>'


def _summary(report: LeadReport) -> str:
    top = max((lead.holder_count for lead in report.leads), default=0)
    cards = "".join(
        (
            _card(len(report.leads), "线索 Leads"),
            _card(report.by_severity().get("level1", 0), "一级 Level 1"),
            _card(top or "—", "最多持有机构 Most holders"),
            _card(report.submitted_count, "本行提交 Submitted"),
            _card(f"≥ {report.threshold}", "门限 Threshold"),
        )
    )
    charts = [
        ("按本行类别 · By own category", [(CATEGORY_NAMES.get(k, k), v) for k, v in report.by_category().items()]),
        ("按持有机构数 · By holder count", [(f"{k} 家机构", v) for k, v in report.by_holder_count().items()]),
        (
            "同业标签类别 · Peer categories",
            [(CATEGORY_NAMES.get(k, k), v) for k, v in report.by_peer_category().items()],
        ),
    ]
    figures = "".join(
        f'<figure class="panel"><figcaption>{_e(title)}</figcaption>{bar_chart(rows, title=title)}</figure>'
        for title, rows in charts
    )
    return f'<section class="cards" id="summary">{cards}</section><section class="charts">{figures}</section>'


def _header(report: LeadReport) -> str:
    facts = [
        ("轮次 Round", report.round_id),
        ("本机构 Member", report.member_id),
        ("密钥周期 Key epoch", report.key_epoch),
        ("生成时间 Generated", report.generated_at.strftime("%Y-%m-%d %H:%M UTC")),
        ("协调方签名密钥 Signed by", report.key_id),
    ]
    meta = "".join(f"<div><dt>{label}</dt><dd>{_e(value)}</dd></div>" for label, value in facts)
    return (
        '<header class="top"><div class="inner"><div class="eyebrow">反欺诈联盟 · 线索对碰报告 Lead report</div>'
        f'<h1>{_e(report.round_name)}</h1><dl class="meta">{meta}</dl>'
        '<p class="notice">内部资料：含原始标识，仅限调查人员使用，请勿外传。'
        "Confidential: contains raw identifiers.</p></div></header>"
    )


def _leads(report: LeadReport) -> str:
    top = max((lead.holder_count for lead in report.leads), default=0)
    rows = "".join(_row(number, lead, top) for number, lead in enumerate(report.leads, start=1))
    if not rows:
        rows = f'<tr class="none"><td colspan="{len(_HEAD)}">本轮没有线索 No leads in this round</td></tr>'
    # Each heading is "中文 English": Chinese on top, English below it in small type.
    head = "".join(f'<th>{zh}<span class="en">{en}</span></th>' for zh, _, en in (h.partition(" ") for h in _HEAD))
    return (
        '<section class="panel leads"><div class="toolbar"><h2>线索明细 Leads</h2>'
        '<input id="q" type="search" autocomplete="off" placeholder="搜索标识、类别、机构… Search" '
        f'aria-label="搜索 Search"><span id="shown" class="muted">共 {len(report.leads)} 条</span></div>'
        f'<div class="scroll"><table id="leads"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        "</div></section>"
    )


def _embedded_json(report: LeadReport) -> str:
    # Inside <script> only "</script" or "<!--" could end the element early; escaping every <, >
    # and & (still valid JSON) rules that out whatever a peer wrote.
    data = json.dumps(report_document(report), ensure_ascii=False, sort_keys=True)
    return data.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_html(report: LeadReport) -> bytes:
    """The whole report as one UTF-8 HTML page (see the module docstring for its security properties)."""
    policy = (
        f"default-src 'none'; style-src {_csp_hash(STYLE)}; script-src {_csp_hash(SCRIPT)}; "
        "img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )
    page = (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}"><meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>线索对碰报告 · {_e(report.round_name)}</title><style>{STYLE}</style></head><body>"
        f"{_header(report)}<main>{_summary(report)}{_leads(report)}"
        "<footer><p>本页不是证据。证据是本行节点签名的 JSON 报告：节点对其全部内容签名，并附协调方密钥 "
        f"{_e(report.key_id)} 对结果的签名，用 <code>alliance-psi report verify</code> 校验。"
        "This page is not evidence. The evidence is the JSON report: this member's node signs all of it, and it "
        f"carries coordinator key {_e(report.key_id)}'s signature over the result; check it with "
        "<code>alliance-psi report verify</code>.</p></footer></main>"
        f'<script type="application/json" id="report-data">{_embedded_json(report)}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )
    return page.encode("utf-8")
