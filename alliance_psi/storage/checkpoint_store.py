"""The member node's record of the coordinator's audit log: checkpoints seen, evidence kept.

A node keeps every checkpoint it accepted (each consistent with the others, checked through the
coordinator's signed consistency statements) and, when the log contradicted one, the signed
documents that show it (``protocol.checkpoints.Evidence``), which an outsider can check with the
coordinator's public key alone.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, select

from alliance_psi.protocol.checkpoints import Evidence, SignedCheckpoint, decode_checkpoint
from alliance_psi.protocol.log_evidence import evidence_from_json, evidence_to_json
from alliance_psi.storage._common import insert_if_absent
from alliance_psi.storage.schema import member_checkpoints, member_log_evidence

__all__ = ["CheckpointStore"]


class CheckpointStore:
    """Checkpoints and evidence, over the caller's connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, signed: SignedCheckpoint, *, at: datetime) -> bool:
        """Keep a verified checkpoint; return False if one for the same size and root is kept."""
        head = decode_checkpoint(signed.body)
        values = {
            "tree_size": head.tree_size,
            "root": head.root,
            "body": signed.body,
            "signature": signed.signature,
            "seen_at": at,
        }
        return insert_if_absent(self._conn, member_checkpoints, values)

    def largest(self) -> SignedCheckpoint | None:
        """The kept checkpoint of the largest log, if any."""
        row = self._conn.execute(
            select(member_checkpoints.c.body, member_checkpoints.c.signature)
            .order_by(member_checkpoints.c.tree_size.desc())
            .limit(1)
        ).first()
        return None if row is None else SignedCheckpoint(row.body, row.signature)

    def all(self) -> list[SignedCheckpoint]:
        """Every kept checkpoint, smallest log first."""
        kept = member_checkpoints.c
        query = select(kept.body, kept.signature).order_by(kept.tree_size, kept.seen_at)
        return [SignedCheckpoint(row.body, row.signature) for row in self._conn.execute(query)]

    def add_evidence(self, evidence: Evidence, *, at: datetime) -> None:
        document = json.dumps(evidence_to_json(evidence, at), sort_keys=True)
        self._conn.execute(member_log_evidence.insert().values(kind=evidence.kind, document=document, detected_at=at))

    def evidence(self) -> list[tuple[Evidence, datetime]]:
        """Every piece of evidence kept, oldest first."""
        kept = member_log_evidence.c
        rows = self._conn.execute(select(kept.document, kept.detected_at).order_by(kept.id))
        return [(evidence_from_json(json.loads(row.document)), row.detected_at) for row in rows]
