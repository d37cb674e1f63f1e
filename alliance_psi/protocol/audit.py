"""The coordinator's audit log, as members and admins see it: signed checkpoints and proofs.

``AuditRole`` answers three questions over the coordinator's unit of work, each signed or
checkable with the coordinator's public key alone (``protocol.checkpoints``):

- ``checkpoint``: the log's head now (size, root, time), signed;
- ``consistency``: a signed statement that one head of the log extends another;
- ``inclusion``: one entry and its inclusion proof in the log's first ``size`` entries.

Who may ask what: members and admins get checkpoints and consistency statements (they reveal
how many entries the log holds, and hashes, nothing readable). Entries are readable: a member
gets only the entries about itself (it is their actor, or their detail names it as
``member_id``); an admin gets any.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from alliance_psi.crypto.signing import SigningKey
from alliance_psi.errors import InvalidRequest, NotAuthorized
from alliance_psi.protocol.checkpoints import (
    ConsistencyStatement,
    SignedCheckpoint,
    SignedStatement,
    sign_checkpoint,
    sign_statement,
)
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.protocol.ports import CoordinatorUnitOfWork

__all__ = ["AuditRole"]

_MAX_SIZE = 2**63 - 1


class AuditRole:
    """Checkpoints and proofs of the coordinator's audit log (see the module docstring)."""

    def __init__(
        self, uow: CoordinatorUnitOfWork, key: SigningKey, *, name: str, clock: Callable[[], datetime]
    ) -> None:
        self.uow, self.key, self.name, self.clock = uow, key, name, clock

    def checkpoint(self, caller: Identity) -> SignedCheckpoint:
        """The log's head now, signed (members and admins)."""
        _member_or_admin(caller)
        with self.uow() as tx:
            size, root = tx.audit.head()
        return sign_checkpoint(self.key, self.name, size, root, self.clock())

    def consistency(self, caller: Identity, first: int, second: int) -> SignedStatement:
        """A signed statement that the first ``second`` entries extend the first ``first``.

        Raises ``InvalidRequest`` unless ``0 < first <= second``, ``NotFound`` if ``second`` is
        beyond the log.
        """
        _member_or_admin(caller)
        if not 0 < first <= second <= _MAX_SIZE:
            raise InvalidRequest(f"first_size and second_size: need 0 < first <= second, got {first} and {second}")
        with self.uow() as tx:
            proof = tuple(tx.audit.consistency_proof(first, second))
            statement = ConsistencyStatement(first, tx.audit.root(first), second, tx.audit.root(second), proof)
        return sign_statement(self.key, statement)

    def inclusion(self, caller: Identity, index: int, size: int) -> tuple[bytes, tuple[bytes, ...]]:
        """Entry ``index`` (canonical bytes) and its inclusion proof in the first ``size`` entries.

        Raises ``NotAuthorized`` when a member asks for an entry not about itself, ``NotFound``
        when the log has no such entry or size.
        """
        _member_or_admin(caller)
        if not 0 <= index < size <= _MAX_SIZE:
            raise InvalidRequest(f"index and tree_size: need 0 <= index < tree_size, got {index} and {size}")
        with self.uow() as tx:
            proof = tuple(tx.audit.inclusion_proof(index, size))
            entry = tx.audit.leaf(index)
        if caller.role is not Role.ADMIN and not _about(entry, caller.name):
            raise NotAuthorized(f"entry {index} of the audit log is not about member {caller.name}")
        return entry, proof


def _about(entry: bytes, member: str) -> bool:
    recorded = json.loads(entry)
    detail = recorded.get("detail")
    return bool(recorded.get("actor") == member or (isinstance(detail, dict) and detail.get("member_id") == member))


def _member_or_admin(caller: Identity) -> None:
    if caller.role not in (Role.MEMBER, Role.ADMIN):
        raise NotAuthorized(f"role {caller.role} may not read the audit log")
