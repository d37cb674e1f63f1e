"""The hash-chained audit log of the coordinator and the custodians.

Each entry commits to the one before it::

    entry_hash = SHA-256( prev_hash || canonical )
    canonical  = JSON of {"seq", "at" (ISO-8601 UTC), "actor", "action", "detail"},
                 sorted keys, separators (",", ":"), UTF-8, no ASCII escaping

and the first entry's ``prev_hash`` is 32 zero bytes. ``verify`` replays the chain, so an
edited, inserted or deleted entry is found by its seq. Deleting the newest entries leaves a
valid shorter chain: keep ``head()`` somewhere else (a signed report, another party's log) to
detect that.

The contract for ``detail``: counts, sizes, round and member ids, key epochs, digests as hex;
**never an identifier, a match token, a label or a secret**. The log is shown to operators and
verifiers, and it outlives the rounds it describes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from alliance_psi.errors import AuditLogBroken
from alliance_psi.storage._common import canonical_json, stream
from alliance_psi.storage.schema import HASH_SIZE, audit_log

__all__ = ["GENESIS_HASH", "AuditLog"]

GENESIS_HASH = bytes(HASH_SIZE)
# One PostgreSQL advisory lock key for every appender to the log (any fixed 64-bit number).
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"alliance_psi.audit_log").digest()[:8], "big", signed=True)


def _entry_hash(prev_hash: bytes, seq: int, at: datetime, actor: str, action: str, detail: Any) -> bytes:
    canonical = canonical_json(
        {
            "seq": seq,
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "detail": detail,
        }
    )
    return hashlib.sha256(prev_hash + canonical.encode("utf-8")).digest()


class AuditLog:
    """Append to and verify the audit log, in the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def append(self, *, actor: str, action: str, detail: Mapping[str, Any], at: datetime) -> int:
        """Append an entry and return its seq (1 for the first entry).

        ``detail`` holds counts and ids only, never an identifier, token, label or secret.
        Concurrent appends never fork the chain: on PostgreSQL they queue on a transaction-level
        advisory lock; on SQLite the write transaction (``BEGIN IMMEDIATE`` from ``make_engine``)
        already runs alone. Either way ``seq`` is the primary key, so two entries can never
        claim the same place.

        Raises:
            ValueError: ``at`` is naive, or ``detail`` is not JSON (for example NaN).
            TypeError: ``detail`` holds something JSON cannot encode (bytes, for instance).
        """
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("naive datetime: pass a timezone-aware datetime")
        detail_text = canonical_json(dict(detail))
        if self._conn.dialect.name == "postgresql":
            self._conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        seq, prev_hash = self.head()
        seq += 1
        self._conn.execute(
            audit_log.insert().values(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                detail=detail_text,
                prev_hash=prev_hash,
                entry_hash=_entry_hash(prev_hash, seq, at, actor, action, json.loads(detail_text)),
            )
        )
        return seq

    def head(self) -> tuple[int, bytes]:
        """Return (seq, entry_hash) of the newest entry, or (0, GENESIS_HASH) if the log is empty."""
        last = self._conn.execute(
            select(audit_log.c.seq, audit_log.c.entry_hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).one_or_none()
        return (0, GENESIS_HASH) if last is None else (last.seq, last.entry_hash)

    def verify(self) -> int:
        """Replay the whole chain and return the number of entries.

        Raises:
            AuditLogBroken: with ``seq`` set to the first entry that fails: a gap in seq (that
                entry is missing), a ``prev_hash`` that does not link to the entry before, or an
                ``entry_hash`` that does not match the entry's content.
        """
        expected_seq, prev_hash = 1, GENESIS_HASH
        result = stream(self._conn, select(audit_log).order_by(audit_log.c.seq))
        try:
            for row in result:
                if row.seq != expected_seq:
                    raise AuditLogBroken(
                        f"audit log broken at seq {expected_seq}: gap in seq (next entry is {row.seq})",
                        seq=expected_seq,
                    )
                if not hmac.compare_digest(row.prev_hash, prev_hash):
                    raise AuditLogBroken(f"audit log broken at seq {row.seq}: prev link mismatch", seq=row.seq)
                try:
                    detail = json.loads(row.detail)
                except ValueError:
                    raise AuditLogBroken(
                        f"audit log broken at seq {row.seq}: detail is not JSON", seq=row.seq
                    ) from None
                computed = _entry_hash(prev_hash, row.seq, row.at, row.actor, row.action, detail)
                if not hmac.compare_digest(computed, row.entry_hash):
                    raise AuditLogBroken(f"audit log broken at seq {row.seq}: hash mismatch", seq=row.seq)
                prev_hash = row.entry_hash
                expected_seq += 1
        finally:
            result.close()
        return expected_seq - 1
