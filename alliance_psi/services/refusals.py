"""Refused calls leave a trace: a log line and an audit entry, at most one per peer per minute.

A call refused for its certificate (none, revoked), its role, a server's own check (enrolment),
a limit or a quota, or a request the server could not decode, is ``record``-ed with the method,
the peer's identity and certificate serial, and the reason. Neither the log nor the audit log
gets any request data: reasons are the server's own fixed texts or error messages written to
cross the network (never an identifier, a token or a label).

A flood must not grow the logs without bound: per (peer, serial, method, status) the first
refusal of a ``window`` is logged at once and audited at the next ``flush``; the rest of the
window are counted and written as one entry with their count when the window ends. At most
``max_keys`` such keys are tracked per window; refusals beyond them are counted together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import grpc
from sqlalchemy import Engine

from alliance_psi.storage import AuditLog

if TYPE_CHECKING:
    from alliance_psi.services.interceptors import Peer

__all__ = ["AUDIT_ACTION", "AuditWriter", "Refusal", "RefusalLog", "sql_audit_writer"]

log = logging.getLogger(__name__)

AUDIT_ACTION = "call.refused"
_UNKNOWN_PEER = "unknown"
_OTHERS = "*"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused call: never any request data."""

    method: str
    code: grpc.StatusCode
    reason: str
    peer: Peer | None

    def actor(self) -> str:
        return self.peer.identity.name if self.peer is not None else _UNKNOWN_PEER

    def detail(self, count: int, first_at: datetime) -> dict[str, object]:
        """What the audit entry holds: method, status, reason, the peer's role and serial, the count."""
        return {
            "method": self.method.rsplit("/", 1)[-1],
            "code": self.code.name,
            "reason": self.reason[:200],
            "role": self.peer.identity.role.value if self.peer is not None else None,
            "serial": f"{self.peer.serial:#x}" if self.peer is not None else None,
            "count": count,
            "first_at": first_at.isoformat(timespec="seconds"),
        }


# Writes (actor, detail, at) entries in one go.
AuditWriter = Callable[[Sequence[tuple[str, dict[str, object], datetime]]], None]


@dataclass
class _Window:
    refusal: Refusal
    opened: float
    first_at: datetime
    count: int = 1
    written: int = 0  # How many of ``count`` an entry already covers.


class RefusalLog:
    """Log and audit refused calls, rate-limited per peer, serial, method and status."""

    def __init__(self, audit: AuditWriter | None = None, *, window: float = 60.0, max_keys: int = 4096) -> None:
        self._audit, self._window_seconds, self._max_keys = audit, window, max_keys
        self._lock = threading.Lock()
        self._windows: dict[tuple[object, ...], _Window] = {}

    def record(self, refusal: Refusal) -> None:
        """Count a refused call; log it now if it opens its window. Never raises."""
        peer = refusal.peer
        key: tuple[object, ...] = (
            (peer.identity.role, peer.identity.name, peer.serial) if peer else None,
            refusal.method,
            refusal.code,
        )
        with self._lock:
            window = self._windows.get(key)
            if window is not None:
                window.count += 1
                return
            if len(self._windows) >= self._max_keys:
                key = (_OTHERS,)
                refusal = Refusal(_OTHERS, refusal.code, "refusals of further peers and methods", None)
                window = self._windows.get(key)
                if window is not None:
                    window.count += 1
                    return
            self._windows[key] = _Window(refusal, time.monotonic(), datetime.now(UTC))
        log.warning("refused %s", _describe(refusal))

    def flush(self, *, final: bool = False) -> None:
        """Audit what is not yet audited, close ended windows (all of them when ``final``) and log
        their repeat counts. Called about once a second by the server; an audit failure is logged."""
        now, at = time.monotonic(), datetime.now(UTC)
        entries: list[tuple[str, dict[str, object], datetime]] = []
        with self._lock:
            for key, window in list(self._windows.items()):
                ended = final or now - window.opened >= self._window_seconds
                if window.written == 0 or (ended and window.count > window.written):
                    unwritten = window.count - window.written
                    entries.append((window.refusal.actor(), window.refusal.detail(unwritten, window.first_at), at))
                    if window.written and unwritten:
                        log.warning("refused %s %d more times since the first", _describe(window.refusal), unwritten)
                    window.written = window.count
                if ended:
                    del self._windows[key]
        if entries and self._audit is not None:
            try:
                self._audit(entries)
            except Exception:
                log.exception("could not append %d refused-call entries to the audit log", len(entries))


def _describe(refusal: Refusal) -> str:
    peer = refusal.peer
    who = (
        f"{peer.identity.role.value}:{peer.identity.name} (serial {peer.serial:#x})" if peer else "an unidentified peer"
    )
    return f"{refusal.method} from {who}: {refusal.code.name}: {refusal.reason}"


def sql_audit_writer(engine: Engine) -> AuditWriter:
    """Append refused-call entries to the audit log in ``engine``, all in one transaction."""

    def write(entries: Sequence[tuple[str, dict[str, object], datetime]]) -> None:
        with engine.begin() as conn:
            audit = AuditLog(conn)
            for actor, detail, at in entries:
                audit.append(actor=actor, action=AUDIT_ACTION, detail=detail, at=at)

    return write
