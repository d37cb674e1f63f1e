"""Who may call this server: its own operator's enrolment list, each party pinned by public key.

The alliance CA vouches for names, and whoever holds it can mint a certificate for any name
with any key. So a custodian serves only the members its own operator enrolled, and the
coordinator only the members and admins its operator enrolled, each pinned by the SHA-256 of
its certificate's SubjectPublicKeyInfo. ``EnrolmentCheck`` is a ``PeerCheck`` for the identity
interceptor: it runs after the CA, revocation and role checks and before any handler, and

- refuses a certificate whose name is not enrolled (PERMISSION_DENIED, "… is not enrolled at
  this custodian"), and one whose key differs from the enrolled key (UNAUTHENTICATED, "… key
  does not match the enrolled key …"): a certificate the CA issued later, or re-issued under an
  enrolled name with another key, evaluates nothing and uses no quota;
- writes each refusal to the server's audit log (role, name, reason, method, key pin, serial;
  never request data), at most once per party, key and reason per ``audit_every`` seconds, with
  the number of refusals in between, so refused callers cannot flood the log.

``EnrolmentRoster`` keeps the list in memory: a call costs a dictionary lookup and a
constant-time comparison, and the list is re-read at most every ``refresh`` seconds, so the
operator's ``member add`` / ``member remove`` takes effect within about that long, with no
restart.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from alliance_psi.defaults import ENROLMENT_REFRESH_SECONDS
from alliance_psi.errors import ConfigurationError, NotAuthenticated, NotAuthorized
from alliance_psi.protocol.model import Role
from alliance_psi.services.interceptors import Peer
from alliance_psi.services.pki import identity_from_pem, spki_der, spki_sha256
from alliance_psi.storage import AuditLog, Enrolment, EnrolmentRepository

__all__ = ["MAX_DISPLAY_NAME", "EnrolmentCheck", "EnrolmentRoster", "enrol", "enrolment_gate", "unenrol"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
_OPERATOR = "operator"  # The audit actor of enrolment changes: this server's own operator, at its console.
_MAX_REFUSERS = 10_000  # Distinct refused (party, key, reason) remembered for coalescing.
MAX_DISPLAY_NAME = 64


class EnrolmentRoster:
    """This server's enrolment list, read from its database and kept in memory.

    ``find`` answers from memory. When the copy is older than ``refresh`` seconds, the first
    caller to notice re-reads the list (one query per ``refresh`` at most; other callers keep
    using the copy meanwhile). If a re-read fails, the copy in force stays and the failure is
    logged: a removed member may then be admitted until the database answers again, but every
    evaluation and submission needs the database too.

    Raises (on construction):
        StorageError or a database error: the list cannot be read at all.
    """

    def __init__(
        self, engine: Engine, *, refresh: float = ENROLMENT_REFRESH_SECONDS, clock: Clock = time.monotonic
    ) -> None:
        self._engine, self._refresh, self._clock = engine, refresh, clock
        self._reloading = threading.Lock()
        self._entries: dict[tuple[Role, str], Enrolment] = {}
        self._loaded_at = 0.0
        self.reload()

    def reload(self) -> None:
        """Read the whole list now."""
        started = self._clock()
        with self._engine.execution_options(sqlite_begin="DEFERRED").connect() as conn:
            entries = {(e.role, e.name): e for e in EnrolmentRepository(conn).list()}
        self._entries, self._loaded_at = entries, started

    def _fresh(self) -> dict[tuple[Role, str], Enrolment]:
        if self._clock() - self._loaded_at >= self._refresh and self._reloading.acquire(blocking=False):
            try:
                self.reload()
            except Exception:
                log.exception("cannot re-read the enrolment list; keeping the one read before")
                self._loaded_at = self._clock()  # Try again after another `refresh`, not on every call.
            finally:
                self._reloading.release()
        return self._entries

    def find(self, role: Role, name: str) -> Enrolment | None:
        """The enrolment of ``role``/``name``, or None."""
        return self._fresh().get((role, name))

    def key_pin_of(self, member_id: str) -> bytes | None:
        """The key pin enrolled for member ``member_id``, or None if it is not enrolled."""
        entry = self.find(Role.MEMBER, member_id)
        return entry.key_pin if entry else None

    def quota_of(self, member_id: str) -> int | None:
        """The member's own quota, or None for the server's default (or if not enrolled)."""
        enrolment = self.find(Role.MEMBER, member_id)
        return None if enrolment is None else enrolment.quota

    def count(self, role: Role) -> int:
        """How many parties of ``role`` are enrolled."""
        return sum(1 for r, _ in self._fresh() if r is role)

    def names(self, role: Role) -> list[str]:
        """The names of the enrolled parties of ``role``, sorted."""
        return sorted(name for r, name in self._fresh() if r is role)


@dataclass(slots=True)
class _Refusals:
    audited_at: float
    since: int = 0


class EnrolmentCheck:
    """A ``PeerCheck`` admitting only enrolled parties of ``roles`` with their enrolled key.

    ``server`` ("custodian", "coordinator") names this server in refusal messages. Peers of
    other roles pass untouched (the role policy decides about them). Refusals are audited in
    ``engine``'s log, coalesced per ``audit_every`` seconds as the module says.
    """

    def __init__(
        self,
        roster: EnrolmentRoster,
        engine: Engine,
        *,
        server: str,
        roles: frozenset[Role] = frozenset({Role.MEMBER}),
        audit_every: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.roster, self._engine, self.server, self.roles = roster, engine, server, roles
        self._audit_every, self._clock = audit_every, clock
        self._refusals: dict[tuple[Role, str, bytes, str], _Refusals] = {}
        self._lock = threading.Lock()

    def __call__(self, peer: Peer, method: str) -> None:
        identity = peer.identity
        if identity.role not in self.roles:
            return
        who = f"{identity.role.value} {identity.name}"
        enrolment = self.roster.find(identity.role, identity.name)
        if enrolment is None:
            self._refuse(peer, method, "not enrolled")
            raise NotAuthorized(f"{who} is not enrolled at this {self.server}")
        if not hmac.compare_digest(enrolment.key_pin, peer.spki_sha256):
            self._refuse(peer, method, "key mismatch")
            raise NotAuthenticated(
                f"the certificate's key does not match the enrolled key of {who} at this {self.server}"
            )

    def _refuse(self, peer: Peer, method: str, reason: str) -> None:
        identity = peer.identity
        short = method.rsplit("/", 1)[-1]
        key = (identity.role, identity.name, peer.spki_sha256, reason)
        now = self._clock()
        with self._lock:
            seen = self._refusals.get(key)
            if seen is not None and now - seen.audited_at < self._audit_every:
                seen.since += 1
                return
            repeated = seen.since if seen is not None else 0
            if len(self._refusals) >= _MAX_REFUSERS:
                self._refusals.clear()
            self._refusals[key] = _Refusals(audited_at=now)
        # Logged as audited, once per party, key and reason per ``audit_every``: a refused caller
        # looping on calls must not grow the server's log either.
        log.warning(
            "refused %s %s (%s) calling %s: key %s, serial %x (%d more refused since the last line)",
            identity.role.value,
            identity.name,
            reason,
            short,
            peer.spki_sha256.hex(),
            peer.serial,
            repeated,
        )
        try:
            with self._engine.begin() as conn:
                AuditLog(conn).append(
                    actor=identity.name,
                    action="enrolment.refused",
                    at=datetime.now(UTC),
                    detail={
                        "role": identity.role.value,
                        "reason": reason,
                        "method": short,
                        "key_pin": peer.spki_sha256.hex(),
                        "serial": f"{peer.serial:x}",
                        "refused_since_last_entry": repeated,
                    },
                )
        except Exception:
            log.exception("cannot audit a refused call; it is refused all the same")


def enrol(
    engine: Engine,
    cert_pem: bytes,
    *,
    role: Role,
    quota: int | None = None,
    display_name: str | None = None,
) -> tuple[Enrolment, bool]:
    """Enrol the holder of ``cert_pem`` (its name, key pin and public key); audit it. Return it and
    whether it is new.

    Enrolling the same name and key again changes its quota and display name only (and keeps its
    public key, if an older enrolment kept only the pin).

    Raises:
        ConfigurationError: not a certificate with an alliance identity, or not of ``role``.
        Conflict: the name is enrolled with another key.
    """
    try:
        identity, pin, public_key = identity_from_pem(cert_pem), spki_sha256(cert_pem), spki_der(cert_pem)
    except NotAuthenticated as exc:
        raise ConfigurationError(f"not an alliance certificate: {exc}") from None
    if identity.role is not role:
        raise ConfigurationError(
            f"the certificate is for {identity.role.value} {identity.name}; only {role.value} certificates enrol here"
        )
    if display_name is not None:
        display_name = _checked_display_name(display_name)
    now = datetime.now(UTC)
    enrolment = Enrolment(role, identity.name, pin, now, quota=quota, display_name=display_name, public_key=public_key)
    with engine.begin() as conn:
        repo = EnrolmentRepository(conn)
        new = repo.add(enrolment)
        AuditLog(conn).append(
            actor=_OPERATOR,
            action="enrolment.add" if new else "enrolment.update",
            at=now,
            detail={"role": role.value, "name": identity.name, "key_pin": pin.hex(), "quota": quota},
        )
        stored = repo.get(role, identity.name)
    assert stored is not None  # Written in this transaction.
    return stored, new


def _checked_display_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_DISPLAY_NAME:
        raise ConfigurationError(f"a display name has 1 to {MAX_DISPLAY_NAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ConfigurationError("a display name must not contain control or format characters")
    return name


def enrolment_gate(
    engine: Engine, *, server: str, roles: frozenset[Role], refresh: float = ENROLMENT_REFRESH_SECONDS
) -> tuple[EnrolmentRoster, EnrolmentCheck]:
    """The roster of ``engine``'s enrolment list and the check to hand to ``run_server(checks=…)``."""
    roster = EnrolmentRoster(engine, refresh=refresh)
    return roster, EnrolmentCheck(roster, engine, server=server, roles=roles)


def unenrol(engine: Engine, role: Role, name: str) -> bool:
    """Remove ``role``/``name`` from the list (audited); return whether it was enrolled.

    The member's quota usage stays counted: enrolling it again does not reset it.
    """
    with engine.begin() as conn:
        removed = EnrolmentRepository(conn).remove(role, name)
        if removed:
            AuditLog(conn).append(
                actor=_OPERATOR,
                action="enrolment.remove",
                at=datetime.now(UTC),
                detail={"role": role.value, "name": name},
            )
    return removed
