"""The file a member node exports of what it saw of the coordinator's audit log, for outsiders.

JSON, UTF-8::

    {"format": "alliance-psi/log-checkpoints", "format_version": 1,
     "checkpoints": [{"body_b64", "signature_b64", "tree_size", "root_hex", "time"}, ...],
     "evidence": [{"kind", "reason", "detected_at",
                   "checkpoints": [{"body_b64", "signature_b64"}, ...],
                   "statement": {"body_b64", "signature_b64"} or null}, ...]}

Only the signed bodies count: ``tree_size``, ``root_hex`` and ``time`` are there for people and
are checked against the bodies when read. Anyone with the coordinator's public key can check a
file (``read_document`` then ``checkpoints.check_evidence``); a coordinator operator can check
its database against another member's checkpoints (``AuditLog.verify``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from alliance_psi.errors import InvalidRequest
from alliance_psi.protocol.checkpoints import (
    Evidence,
    SignedCheckpoint,
    SignedStatement,
    decode_checkpoint,
)

__all__ = ["DOCUMENT_FORMAT", "evidence_from_json", "evidence_to_json", "read_document", "write_document"]

DOCUMENT_FORMAT = "alliance-psi/log-checkpoints"
_VERSION = 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(obj: Any, name: str, where: str) -> bytes:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: {name} is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise InvalidRequest(f"{where}: {name} is not base64") from None


def _signed(obj: Any, where: str) -> tuple[bytes, bytes]:
    return _unb64(obj, "body_b64", where), _unb64(obj, "signature_b64", where)


def _checkpoint_json(signed: SignedCheckpoint) -> dict[str, Any]:
    head = decode_checkpoint(signed.body)
    return {
        "body_b64": _b64(signed.body),
        "signature_b64": _b64(signed.signature),
        "tree_size": head.tree_size,
        "root_hex": head.root.hex(),
        "time": head.time.isoformat(),
    }


def evidence_to_json(evidence: Evidence, detected_at: datetime) -> dict[str, Any]:
    """``evidence`` as JSON-ready data."""
    return {
        "kind": evidence.kind,
        "reason": evidence.reason,
        "detected_at": detected_at.isoformat(),
        "checkpoints": [_checkpoint_json(signed) for signed in evidence.checkpoints],
        "statement": (
            {"body_b64": _b64(evidence.statement.body), "signature_b64": _b64(evidence.statement.signature)}
            if evidence.statement is not None
            else None
        ),
    }


def evidence_from_json(obj: Any, where: str = "evidence") -> Evidence:
    """Parse one evidence record; ``InvalidRequest`` naming the field if it is malformed."""
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str) or not isinstance(obj.get("reason"), str):
        raise InvalidRequest(f"{where}: needs a kind and a reason")
    checkpoints = obj.get("checkpoints")
    if not isinstance(checkpoints, list):
        raise InvalidRequest(f"{where}: checkpoints must be a list")
    statement = obj.get("statement")
    return Evidence(
        obj["kind"],
        obj["reason"],
        tuple(SignedCheckpoint(*_signed(c, f"{where} checkpoint {i}")) for i, c in enumerate(checkpoints, 1)),
        SignedStatement(*_signed(statement, f"{where} statement")) if statement is not None else None,
    )


def write_document(checkpoints: Sequence[SignedCheckpoint], evidence: Sequence[tuple[Evidence, datetime]]) -> bytes:
    """The export file: every checkpoint a member kept and every piece of evidence it recorded."""
    doc = {
        "format": DOCUMENT_FORMAT,
        "format_version": _VERSION,
        "checkpoints": [_checkpoint_json(signed) for signed in checkpoints],
        "evidence": [evidence_to_json(found, at) for found, at in evidence],
    }
    return (json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")


def read_document(data: bytes) -> tuple[list[SignedCheckpoint], list[Evidence]]:
    """Parse an export file. Signatures are not checked here (``open_checkpoint``, ``check_evidence``).

    Raises:
        InvalidRequest: not such a file, or a field is malformed (the message names it).
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequest("not a checkpoints file: not UTF-8 JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != DOCUMENT_FORMAT:
        raise InvalidRequest(f"not a checkpoints file: 'format' is not {DOCUMENT_FORMAT!r}")
    if doc.get("format_version") != _VERSION:
        raise InvalidRequest(f"unknown checkpoints file version {doc.get('format_version')!r} (this reads {_VERSION})")
    items, found = doc.get("checkpoints"), doc.get("evidence")
    if not isinstance(items, list) or not isinstance(found, list):
        raise InvalidRequest("checkpoints file: 'checkpoints' and 'evidence' must be lists")
    checkpoints = []
    for i, item in enumerate(items, 1):
        signed = SignedCheckpoint(*_signed(item, f"checkpoint {i}"))
        head = decode_checkpoint(signed.body)
        if (item.get("tree_size"), item.get("root_hex")) != (head.tree_size, head.root.hex()):
            raise InvalidRequest(f"checkpoint {i}: tree_size or root_hex differs from its signed body")
        checkpoints.append(signed)
    return checkpoints, [evidence_from_json(e, f"evidence {i}") for i, e in enumerate(found, 1)]
