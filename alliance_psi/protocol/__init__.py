"""The protocol layer: the roles of a matching round and their messages; no grpc, no SQL.

``model`` (domain dataclasses), ``custodian`` / ``coordinator`` (the roles), ``submission``
(digests), ``result_codec`` (signed result headers over Merkle trees of leaves), ``ports`` (what the roles need from
storage) and ``messages`` (the only module that touches the generated protobuf code).
"""

from alliance_psi.protocol.coordinator import Chunk, Commit, CoordinatorRole, RoundSpec
from alliance_psi.protocol.custodian import CustodianRole
from alliance_psi.protocol.model import (
    Identity,
    MatchedToken,
    MemberResult,
    PeerLabel,
    Role,
    Round,
    RoundState,
    SubmissionState,
    SubmissionStatus,
)
from alliance_psi.protocol.result_codec import ResultHeader, open_header, sign_header, verify_lead

__all__ = [
    "Chunk",
    "Commit",
    "CoordinatorRole",
    "CustodianRole",
    "Identity",
    "MatchedToken",
    "MemberResult",
    "PeerLabel",
    "ResultHeader",
    "Role",
    "Round",
    "RoundSpec",
    "RoundState",
    "SubmissionState",
    "SubmissionStatus",
    "open_header",
    "sign_header",
    "verify_lead",
]
