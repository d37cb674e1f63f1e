"""Machine-readable renderings of a lead report: JSON (verifiable) and CSV (for Excel).

Both hold raw identifiers: the caller writes them to files readable by their owner only (0600)
and never prints them. ``report_document`` is the one description of a report as plain data; the
JSON file is exactly that document, the HTML page embeds it, and ``verify_report_json`` reads it.

CSV cells come from the member's database and from peers' labels, so they are untrusted. Excel,
LibreOffice and Google Sheets read a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return as a formula, which can call functions (``=HYPERLINK(…)``, DDE) or compute
(``-2025-17``, ``+86 138 0013 8000``). Such a cell gets a leading single quote, which makes it
text. A plain number (an optional sign, digits, an optional decimal part) is left alone although
it may start with ``+`` or ``-``: a spreadsheet reads it as that number, which calls and computes
nothing, so an E.164 phone number (``+8613800138000``) stays exactly as it is, without a quote
that Excel would show. Every other cell is written as it is.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from alliance_psi.protocol.leads import Lead, LeadLabel
from alliance_psi.protocol.result_codec import LeafProof
from alliance_psi.reports.model import REPORT_FORMAT, LeadReport

__all__ = [
    "CSV_COLUMNS",
    "csv_cell",
    "describe_peer",
    "display_text",
    "lead_fields",
    "leads_csv",
    "render_csv",
    "render_json",
    "report_document",
]

CSV_COLUMNS = (
    "# 序号",
    "identifier_type 类型",
    "value 标识值",
    "spelling 本行原文",
    "holder_count 持有机构数",
    "category 本行类别",
    "severity 等级",
    "case_ref 案件编号",
    "first_seen 首次发现",
    "peer_labels 同业标签",
    "unreadable_peer_labels 无法解读的同业标签",
    "match_token 匹配令牌",
    "backed_count 标签印证机构数",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def display_text(value: object) -> str:
    """``value`` as text to show a person, with every control or format character replaced by U+FFFD.

    That removes terminal escape sequences, bidi overrides (which can show a number reversed) and
    zero-width characters from untrusted text before a page or a console shows it. The JSON and
    CSV files keep values as they are.
    """
    text = "" if value is None else str(value)
    return "".join("\ufffd" if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in text)


def _peer(label: LeadLabel) -> dict[str, Any]:
    data: dict[str, Any] = {
        "category": label.category,
        "severity": label.severity,
        "first_seen": label.first_seen.isoformat() if label.first_seen else None,
        "case_ref": label.case_ref,
    }
    if label.member:
        data["member"] = label.member
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def lead_fields(lead: Lead) -> dict[str, Any]:
    """A lead's own fields as JSON-ready data (its evidence is added by the report that holds it)."""
    backed = {} if lead.backed_count is None else {"backed_count": lead.backed_count}
    return {
        "type": lead.type,
        "value": lead.canonical,
        "spelling": lead.spelling or None,
        "category": lead.category,
        "severity": lead.severity or None,
        "case_ref": lead.case_ref or None,
        "first_seen": lead.first_seen.isoformat() if lead.first_seen else None,
        "holder_count": lead.holder_count,
        "match_token": lead.match_token.hex(),
        "peer_labels": [_peer(label) for label in lead.peer_labels],
        "unreadable_peer_labels": lead.unreadable_labels,
        **backed,  # Only when the labels back fewer holders than the signed count (protocol.leads).
    }


def _lead(lead: Lead, proof: LeafProof) -> dict[str, Any]:
    return {
        **lead_fields(lead),
        "proof": {
            "leaf_index": proof.index,
            "leaf_b64": _b64(proof.leaf),
            "inclusion_path_b64": [_b64(node) for node in proof.proof],
        },
    }


def report_document(report: LeadReport) -> dict[str, Any]:
    """The report as JSON-ready data: metadata, summary, leads in report order, and evidence."""
    return {
        "format": REPORT_FORMAT,
        "format_version": report.format_version,
        "generated_at": report.generated_at.isoformat().replace("+00:00", "Z"),
        "member_id": report.member_id,
        "round_id": report.round_id,
        "round_name": report.round_name,
        "key_epoch": report.key_epoch,
        "threshold": report.threshold,
        "submitted_count": report.submitted_count,
        "summary": {
            "leads": len(report.leads),
            "by_category": report.by_category(),
            "by_holder_count": {str(k): v for k, v in report.by_holder_count().items()},
            "by_peer_category": report.by_peer_category(),
            "by_severity": report.by_severity(),
        },
        "leads": [_lead(lead, report.proofs[lead.match_token]) for lead in report.leads],
        "evidence": {
            "header_b64": _b64(report.header),
            "signature_b64": _b64(report.signature),
            "key_id": report.key_id,
        },
    }


def render_json(report: LeadReport) -> bytes:
    """The verifiable JSON report: UTF-8, keys sorted, non-ASCII text kept as is, newline-terminated."""
    text = json.dumps(report_document(report), ensure_ascii=False, sort_keys=True, indent=2)
    return (text + "\n").encode("utf-8")


def describe_peer(label: LeadLabel) -> str:
    """One peer label in one line: ``category/severity (member)``, parts present only when set."""
    text = label.category + (f"/{label.severity}" if label.severity else "")
    return text + (f" ({label.member})" if label.member else "")


def csv_cell(value: object) -> str:
    """``value`` as a CSV cell a spreadsheet reads as text or as a plain number, never as a formula.

    A quote goes before a cell that starts with a formula character, unless it is a plain number
    (see the module docstring): ``=1+2`` becomes ``'=1+2``, ``+8613800138000`` stays as it is.
    """
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text) else text


def render_csv(report: LeadReport) -> bytes:
    """One row per lead under a bilingual header; UTF-8 with BOM (Excel reads Chinese), CRLF endings.

    Every cell is neutralized against formula injection (see the module docstring).
    """
    return leads_csv(report.leads)


def leads_csv(leads: Iterable[Lead]) -> bytes:
    """``render_csv``'s file for any leads, in the order given."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for number, lead in enumerate(leads, start=1):
        row = (
            number,
            lead.type,
            lead.canonical,
            lead.spelling,
            lead.holder_count,
            lead.category,
            lead.severity,
            lead.case_ref,
            lead.first_seen.isoformat() if lead.first_seen else "",
            "; ".join(describe_peer(label) for label in lead.peer_labels),
            lead.unreadable_labels,
            lead.match_token.hex(),
            "" if lead.backed_count is None else lead.backed_count,
        )
        writer.writerow([csv_cell(cell) for cell in row])
    return out.getvalue().encode("utf-8-sig")
