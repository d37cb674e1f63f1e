"""A real signed result (header and Merkle leaves) with real sealed peer labels, and its report.

Shared by the report unit tests, the Chromium test and the CLI tests. Tokens and label keys are
derived from names (no OPRF needed): ``build_leads`` opens the sealed labels for real. ``CA``
issued member certificates to ``bank-a`` and ``bank-b``; ``SIGNER`` is bank-a's node signing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from sqlalchemy import Connection

from alliance_psi.crypto.labels import LabelContext, seal_label
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.checkpoints import SignedCheckpoint, sign_checkpoint
from alliance_psi.protocol.leads import Lead, LeadLabel, build_leads
from alliance_psi.protocol.model import MatchedToken, MemberResult, PeerLabel, Role
from alliance_psi.protocol.result_codec import lead_proofs, reopen_result, result_tree, sign_header
from alliance_psi.reports import LeadReport, ReportSigner, build_report, render_signed_json
from alliance_psi.services import pki
from alliance_psi.services.pki import spki_sha256
from alliance_psi.storage import KeptResults

KEY = SigningKey.generate()
ROUND_ID = "r-2025q2"
ROUND_NAME = "2025 年第二季度联盟对碰"
MEMBER_ID = "bank-a"
KEY_EPOCH = "2025-06"
SCOPE = f"{KEY_EPOCH}/bank_card,email,phone,qq,wechat_id/labels"  # The scope the planted labels are sealed in.
THRESHOLD = 2
SUBMITTED = 1200
GENERATED_AT = datetime(2025, 6, 30, 8, 15, tzinfo=UTC)
XSS = "<script>alert(1)</script>"
CA = pki.init_ca("Report tests")
CERTS = {name: pki.issue(CA, role=Role.MEMBER, name=name) for name in ("bank-a", "bank-b")}


PINS = {name: spki_sha256(issued.cert_pem) for name, issued in CERTS.items()}
SIGNER = ReportSigner.load(CERTS["bank-a"].cert_pem, CERTS["bank-a"].key_pem, member_id=MEMBER_ID)
FORMULA = "=cmd|' /C calc'!A0"


@dataclass(frozen=True)
class Planted:
    """One of the member's identifiers that matched, and what the other holders said."""

    type: str
    canonical: str
    category: str
    severity: str
    holders: int
    peers: tuple[LeadLabel, ...] = ()
    unreadable: int = 0
    case_ref: str = ""
    first_seen: date | None = None
    extra_labels: tuple[bytes, ...] = field(default=())
    spelling: str = ""

    @property
    def token(self) -> bytes:
        return hashlib.sha256(f"token:{self.type}:{self.canonical}".encode()).digest()[:16]

    @property
    def label_key(self) -> bytes:
        return hashlib.sha256(f"label-key:{self.type}:{self.canonical}".encode()).digest()

    def own(self) -> tuple[str, str, str, str, date | None, str, str]:
        return (self.type, self.canonical, self.category, self.severity, self.first_seen, self.case_ref, self.spelling)


PLANTED = (
    Planted(
        "phone",
        "+8613915274680",
        "proxy_rights_defense",
        "level1",
        4,
        (
            LeadLabel("proxy_rights_defense", "level1", date(2025, 3, 2), "ZS-2025-0311", "某银行"),
            LeadLabel("malicious_complaint", "level2"),
            LeadLabel("proxy_rights_defense", "level1", date(2025, 4, 18)),
        ),
        case_ref="AJ-2025-0042",
        first_seen=date(2025, 2, 14),
        spelling="+86 139-1527-4680",
    ),
    Planted(
        "id_card",
        "44030519870614357X",
        "anti_collection",
        "level1",
        3,
        (
            LeadLabel("anti_collection", "level1", None, None, "城商行联合体"),
            LeadLabel("anti_collection", "level2"),
        ),
        first_seen=date(2024, 11, 5),
        spelling="44030519870614357x",
    ),
    Planted(
        "bank_card",
        "6222020200112233445",
        "loan_intermediary",
        "level2",
        3,
        (
            LeadLabel("wool_party", "level1", None, None, "某银行"),
            LeadLabel("loan_intermediary"),
        ),
        case_ref="AJ-2025-0077",
    ),
    Planted(
        "org_name",
        "上海某某金融信息服务有限公司",
        "loan_intermediary",
        "level1",
        2,
        (LeadLabel("loan_intermediary", "level1", date(2025, 1, 9), "沪-2025-17"),),
    ),
    Planted(
        "qq",
        "48213679",
        "wool_party",
        "level2",
        2,
        (LeadLabel("wool_party", None, None, XSS, "某行</td><img src=x onerror=alert(2)>"),),
    ),
    Planted("wechat_id", FORMULA, "other", "level2", 2, (), unreadable=1),
    Planted(
        "email",
        "agent.wq@example.com",
        "professional_complainant",
        "level1",
        2,
        (LeadLabel("professional_complainant", "level1", date(2025, 5, 20)),),
    ),
)


def sealed_labels(planted: Planted, key_epoch: str = KEY_EPOCH) -> tuple[PeerLabel, ...]:
    context = LabelContext(key_epoch, planted.token, SCOPE)
    # Labels carry no name: the coordinator attests the sealer of those whose member chose to be named.
    named = [
        PeerLabel(seal_label(planted.label_key, replace(label, member=None).encode(), context), label.member)
        for label in planted.peers
    ]
    unreadable = [PeerLabel(seal_label(bytes(32), b'{"c":"other"}', context)) for _ in range(planted.unreadable)]
    return (*named, *unreadable, *(PeerLabel(label) for label in planted.extra_labels))


def member_result(
    planted: tuple[Planted, ...] = PLANTED, *, round_id: str = ROUND_ID, member_id: str = MEMBER_ID
) -> MemberResult:
    matches = tuple(MatchedToken(p.token, p.holders, sealed_labels(p)) for p in planted)
    return MemberResult(round_id, member_id, KEY_EPOCH, THRESHOLD, SUBMITTED, matches)


def signed(result: MemberResult, key: SigningKey = KEY, *, member_key_pin: bytes | None = None) -> tuple[bytes, bytes]:
    """The signed header of ``result``: (header, signature). It names the member's enrolled key pin
    (its certificate's from ``CERTS``, as a coordinator with an enrolment list does) unless told otherwise."""
    pin = PINS.get(result.member_id, b"") if member_key_pin is None else member_key_pin
    header, _ = result_tree(result, checkpoint=checkpoint(key), audit_index=0, member_key_pin=pin)
    signed_header = sign_header(key, header)
    return signed_header.header, signed_header.signature


def checkpoint(key: SigningKey = KEY) -> SignedCheckpoint:
    """A checkpoint of the coordinator's audit log, as result headers carry one."""
    return sign_checkpoint(key, "coordinator", 1, bytes(32), GENERATED_AT)


def leaves_of(result: MemberResult) -> tuple[bytes, ...]:
    return result_tree(result, checkpoint=checkpoint(KEY), audit_index=0)[1]


def keep(
    conn: Connection, result: MemberResult, *, key_epoch: str = KEY_EPOCH, round_name: str = ROUND_NAME, at: datetime
) -> None:
    """Keep ``result`` signed in a member database, as ``MemberNode.fetch_result`` does."""
    header, signature = signed(result)
    kept = KeptResults(conn)
    kept.save_header(
        result.round_id, key_epoch=key_epoch, round_name=round_name, header=header, signature=signature, at=at
    )
    kept.add_leaves(result.round_id, [(i, leaf[:16], leaf) for i, leaf in enumerate(leaves_of(result))])
    kept.record_scope(result.round_id, SCOPE, share_labels=True)  # As the node records it when it commits.


def leads_for(result: MemberResult, planted: tuple[Planted, ...] = PLANTED) -> list[Lead]:
    own = {p.token: p.own() for p in planted}
    return build_leads(result, own, {p.token: p.label_key for p in planted}, scope=SCOPE)


def make_report(
    planted: tuple[Planted, ...] = PLANTED,
    *,
    key: SigningKey = KEY,
    round_id: str = ROUND_ID,
    member_id: str = MEMBER_ID,
    member_key_pin: bytes | None = None,
) -> LeadReport:
    whole = member_result(planted, round_id=round_id, member_id=member_id)
    header, signature = signed(whole, key, member_key_pin=member_key_pin)
    leaves = leaves_of(whole)
    result = reopen_result(key.public_key, header, signature, leaves, round_id=round_id, member_id=member_id)
    proofs = lead_proofs(leaves, range(len(leaves)))
    return build_report(
        member_id=member_id,
        round_name=ROUND_NAME,
        result=result,
        leads=leads_for(result, planted),
        header=header,
        signature=signature,
        key_id=key.key_id,
        proofs={match.match_token: proofs[i] for i, match in enumerate(result.matches)},
        generated_at=GENERATED_AT,
    )


def signed_json(report: LeadReport, by: ReportSigner = SIGNER) -> bytes:
    """``report`` as the JSON file its member node writes."""
    return render_signed_json(report, by)
