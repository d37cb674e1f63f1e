"""Investigator reports: a member's leads for a round, rendered for people and checkable by anyone.

``build_report`` assembles a ``LeadReport`` from a verified result and its leads;
``render_json``, ``render_csv`` and ``render_html`` turn it into files; ``verify_report_json``
checks a JSON report against the coordinator's public key and raises ``ReportMismatch`` naming
exactly what differs. Reports hold raw identifiers: callers write them with mode 0600 and never
print them in full. This layer does no I/O and imports no grpc, SQLAlchemy, click or rich.
"""

from __future__ import annotations

from alliance_psi.reports.model import REPORT_FORMAT, REPORT_FORMAT_VERSION, LeadReport, build_report
from alliance_psi.reports.render import render_csv, render_json, report_document
from alliance_psi.reports.render_html import render_html
from alliance_psi.reports.verify import ReportMismatch, VerifiedReport, verify_report_json

__all__ = [
    "LeadReport",
    "REPORT_FORMAT",
    "REPORT_FORMAT_VERSION",
    "ReportMismatch",
    "VerifiedReport",
    "build_report",
    "render_csv",
    "render_html",
    "render_json",
    "report_document",
    "verify_report_json",
]
