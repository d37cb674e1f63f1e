"""Investigator reports: a member's leads for a round, rendered for people and checkable by anyone.

``build_report`` assembles a ``LeadReport`` from a verified result and its leads;
``render_signed_json`` writes the JSON report signed by the member node (``ReportSigner``: its
alliance certificate and key), the one rendering that is evidence; ``render_csv`` and
``render_html`` are for reading and point to it. ``verify_report_json`` checks a JSON report
against the alliance CA and the coordinator's public key and raises ``ReportMismatch`` naming
exactly what differs; ``check_rederived`` checks the tokens against a re-derivation. Reports
hold raw identifiers: callers write them with mode 0600 and never print them in full. This layer
does no I/O and imports no grpc, SQLAlchemy, click or rich.
"""

from __future__ import annotations

from alliance_psi.reports.model import REPORT_FORMAT, REPORT_FORMAT_VERSION, LeadReport, build_report
from alliance_psi.reports.render import render_csv, render_json, report_document
from alliance_psi.reports.render_html import render_html
from alliance_psi.reports.signature_check import MemberSigner, check_member_signature
from alliance_psi.reports.signing import ReportSigner, render_signed_json, sign_document
from alliance_psi.reports.verify import (
    ReportedToken,
    ReportMismatch,
    VerifiedReport,
    check_rederived,
    verify_report_json,
)

__all__ = [
    "LeadReport",
    "MemberSigner",
    "REPORT_FORMAT",
    "REPORT_FORMAT_VERSION",
    "ReportMismatch",
    "ReportSigner",
    "ReportedToken",
    "VerifiedReport",
    "build_report",
    "check_member_signature",
    "check_rederived",
    "render_csv",
    "render_html",
    "render_json",
    "render_signed_json",
    "report_document",
    "sign_document",
    "verify_report_json",
]
