"""A server's enrolment list: the members (and, at the coordinator, admins) its own operator admitted.

Whoever holds the alliance CA can issue a certificate for any name with any key. A custodian or
the coordinator therefore serves only the parties on its own list, each pinned by the SHA-256
of its certificate's DER SubjectPublicKeyInfo (``services.pki.spki_sha256``): a certificate
issued later for a name nobody enrolled, or re-issued for an enrolled name with another key, is
refused. One name holds one key; replacing it is an explicit remove and add by the operator.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, delete, select, update

from alliance_psi.errors import Conflict, InvalidRequest
from alliance_psi.protocol.model import Role
from alliance_psi.storage._common import insert_if_absent
from alliance_psi.storage.schema import HASH_SIZE, enrolments

__all__ = ["Enrolment", "EnrolmentRepository"]


@dataclass(frozen=True, slots=True)
class Enrolment:
    """One enrolled party: its certificate role and name, and the key pin it must present.

    ``quota`` (custodian) overrides the server's default quota per key epoch; ``display_name``
    (coordinator) is how people call the member. Neither is a secret. ``public_key`` is the pinned
    key itself (DER SubjectPublicKeyInfo, whose SHA-256 is ``key_pin``): a custodian seals its
    key-ceremony shares to a peer's; None for an enrolment made before it was kept.
    """

    role: Role
    name: str
    key_pin: bytes
    added_at: datetime
    quota: int | None = None
    display_name: str | None = None
    public_key: bytes | None = None


class EnrolmentRepository:
    """Read and change the enrolment list, in the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, enrolment: Enrolment) -> bool:
        """Enrol a party; return True if it was new, False if only its quota, display name or
        public key (kept now, for the same pin) changed.

        Raises:
            Conflict: the name is enrolled with another key (remove it first to replace the key).
            InvalidRequest: the key pin is not 32 bytes, the public key is not the pinned one, or
                the quota is below 1.
        """
        if len(enrolment.key_pin) != HASH_SIZE:
            raise InvalidRequest(f"a key pin is {HASH_SIZE} bytes, not {len(enrolment.key_pin)}")
        if enrolment.public_key is not None and not hmac.compare_digest(
            hashlib.sha256(enrolment.public_key).digest(), enrolment.key_pin
        ):
            raise InvalidRequest("the public key is not the one its key pin names")
        if enrolment.quota is not None and enrolment.quota < 1:
            raise InvalidRequest("a quota must be at least 1")
        values = {
            "role": enrolment.role.value,
            "name": enrolment.name,
            "key_pin": enrolment.key_pin,
            "public_key": enrolment.public_key,
            "quota": enrolment.quota,
            "display_name": enrolment.display_name,
            "added_at": enrolment.added_at,
        }
        if insert_if_absent(self._conn, enrolments, values):
            return True
        existing = self.get(enrolment.role, enrolment.name)
        if existing is None:  # Removed between the two statements: try once more.
            return self.add(enrolment)
        if existing.key_pin != enrolment.key_pin:
            raise Conflict(
                f"{enrolment.role.value} {enrolment.name} is enrolled with key {existing.key_pin.hex()}, "
                f"not {enrolment.key_pin.hex()}: remove it first to enrol the new key"
            )
        kept = {"public_key": enrolment.public_key} if enrolment.public_key is not None else {}
        self._conn.execute(
            update(enrolments)
            .where(*self._key(enrolment.role, enrolment.name))
            .values(quota=enrolment.quota, display_name=enrolment.display_name, **kept)
        )
        return False

    def remove(self, role: Role, name: str) -> bool:
        """Remove a party; return whether it was enrolled. Its quota usage stays counted."""
        removed = self._conn.execute(
            delete(enrolments).where(*self._key(role, name)).returning(enrolments.c.name)
        ).first()
        return removed is not None

    def get(self, role: Role, name: str) -> Enrolment | None:
        row = self._conn.execute(select(enrolments).where(*self._key(role, name))).first()
        return None if row is None else _enrolment(row)

    def list(self, role: Role | None = None) -> list[Enrolment]:
        """Every enrolled party (of ``role``, if given), by role and name."""
        query = select(enrolments).order_by(enrolments.c.role, enrolments.c.name)
        if role is not None:
            query = query.where(enrolments.c.role == role.value)
        return [_enrolment(row) for row in self._conn.execute(query)]

    @staticmethod
    def _key(role: Role, name: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
        return (enrolments.c.role == role.value, enrolments.c.name == name)


def _enrolment(row: Row[Any]) -> Enrolment:
    return Enrolment(
        role=Role(row.role),
        name=row.name,
        key_pin=row.key_pin,
        added_at=row.added_at,
        quota=row.quota,
        display_name=row.display_name,
        public_key=row.public_key,
    )
