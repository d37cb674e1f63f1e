"""The enrolment list: one key per enrolled name, changed only by the server's operator."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Engine

from alliance_psi.errors import Conflict, InvalidRequest
from alliance_psi.protocol.model import Role
from alliance_psi.storage import Enrolment, EnrolmentRepository

from .support import NOW

PIN_A, PIN_B = b"\xaa" * 32, b"\xbb" * 32


def enrol(engine: Engine, name: str, pin: bytes, *, role: Role = Role.MEMBER, **extra: object) -> bool:
    with engine.begin() as conn:
        return EnrolmentRepository(conn).add(Enrolment(role, name, pin, NOW, **extra))  # type: ignore[arg-type]


def listed(engine: Engine, role: Role | None = None) -> list[Enrolment]:
    with engine.begin() as conn:
        return EnrolmentRepository(conn).list(role)


def test_enrol_list_update_and_remove(engine: Engine) -> None:
    assert enrol(engine, "bank-b", PIN_B, quota=500) is True
    assert enrol(engine, "bank-a", PIN_A, display_name="甲银行") is True
    assert enrol(engine, "operator", PIN_A, role=Role.ADMIN) is True
    assert [(e.role, e.name) for e in listed(engine)] == [
        (Role.ADMIN, "operator"),
        (Role.MEMBER, "bank-a"),
        (Role.MEMBER, "bank-b"),
    ]
    assert listed(engine, Role.MEMBER)[0] == Enrolment(Role.MEMBER, "bank-a", PIN_A, NOW, None, "甲银行")
    # The same key again changes the quota and display name only.
    assert enrol(engine, "bank-b", PIN_B, quota=900) is False
    with engine.begin() as conn:
        repo = EnrolmentRepository(conn)
        assert repo.get(Role.MEMBER, "bank-b") == Enrolment(Role.MEMBER, "bank-b", PIN_B, NOW, 900, None)
        assert repo.get(Role.ADMIN, "bank-b") is None
        assert repo.remove(Role.MEMBER, "bank-b") is True
        assert repo.remove(Role.MEMBER, "bank-b") is False
    assert [e.name for e in listed(engine, Role.MEMBER)] == ["bank-a"]


def test_an_enrolled_name_keeps_its_key_until_removed(engine: Engine) -> None:
    enrol(engine, "bank-a", PIN_A, quota=10)
    with pytest.raises(Conflict, match=f"member bank-a is enrolled with key {PIN_A.hex()}, not {PIN_B.hex()}"):
        enrol(engine, "bank-a", PIN_B)
    (kept,) = listed(engine)
    assert (kept.key_pin, kept.quota) == (PIN_A, 10)


def test_a_public_key_is_kept_beside_its_pin_and_added_to_an_older_enrolment(engine: Engine) -> None:
    key = b"a DER SubjectPublicKeyInfo"
    pin = hashlib.sha256(key).digest()
    enrol(engine, "dkg-2", pin, role=Role.CUSTODIAN)  # Enrolled by pin only, as before keys were kept.
    assert listed(engine)[0].public_key is None
    assert enrol(engine, "dkg-2", pin, role=Role.CUSTODIAN, public_key=key) is False
    assert listed(engine)[0].public_key == key
    assert enrol(engine, "dkg-2", pin, role=Role.CUSTODIAN) is False  # Enrolling without it keeps it.
    assert listed(engine)[0].public_key == key


@pytest.mark.parametrize(
    ("pin", "quota", "message", "public_key"),
    [
        (b"\x01" * 31, None, "key pin is 32 bytes", None),
        (PIN_A, 0, "at least 1", None),
        (PIN_A, None, "the public key is not the one its key pin names", b"another key"),
    ],
)
def test_bad_enrolments_are_refused_and_not_stored(
    engine: Engine, pin: bytes, quota: int | None, message: str, public_key: bytes | None
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        enrol(engine, "bank-a", pin, quota=quota, public_key=public_key)
    assert listed(engine) == []
