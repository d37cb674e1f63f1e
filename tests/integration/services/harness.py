"""An alliance on loopback for service tests: custodians and a coordinator serving over real mTLS,
member nodes with their own SQLite databases, and planted overlapping blacklists.

Every server serves only the parties enrolled in its own database, as in production: the three
members everywhere, and the ``admin`` certificate at the coordinator. A custodian named in
``own_cas`` is run by another institution: it serves a certificate of its own CA, and the harness's
member nodes pin that CA for it (``Alliance.custodian_cas``), as the README's custodian-2.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from alliance_psi.config import PeerEndpoint, ServerLimits, TlsMaterial
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from alliance_psi.crypto.threshold_keys import PublicEpoch, ThresholdShare, deal_epoch_for_testing
from alliance_psi.identifiers import IdentifierType, normalize
from alliance_psi.protocol.coordinator import CoordinatorRole, RoundSpec
from alliance_psi.protocol.custodian import CustodianRole
from alliance_psi.protocol.member import MemberRole
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.clients import CoordinatorClient, RetryPolicy, custodian_evaluator
from alliance_psi.services.coordinator import coordinator_registration, sql_unit_of_work
from alliance_psi.services.custodian import SqlQuotaLedger, custodian_registration
from alliance_psi.services.enrolment import enrol, enrolment_gate
from alliance_psi.services.interceptors import PeerCheck
from alliance_psi.services.member import MemberNode
from alliance_psi.services.metrics import Metrics
from alliance_psi.services.refusals import sql_audit_writer
from alliance_psi.services.server import Registration, run_server
from alliance_psi.storage import MemberRepository, create_schema, make_engine

EPOCH = "epoch-test"
MEMBERS = ("bank-a", "bank-b", "bank-c")
ENROLMENT_REFRESH = 0.2  # Seconds: how soon a server sees an enrolment change.
CATEGORIES = ("wool_party", "loan_intermediary", "proxy_rights_defense")


COORDINATOR = Identity(name="coordinator", role=Role.COORDINATOR)
"""Who a channel to the harness's (or a test process's) coordinator must reach."""


def custodian(i: int = 0) -> Identity:
    """Who a channel to the harness's custodian number ``i`` must reach."""
    return Identity(name=custodian_name(i), role=Role.CUSTODIAN)


def custodian_name(i: int) -> str:
    """The name (and certificate) of the harness's custodian number ``i``, from 0: custodian-1, custodian-2."""
    return f"custodian-{i + 1}"


def sqlite_engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    return engine


def phone(i: int) -> str:
    # Spread over the subscriber numbers, so that no small i gives a placeholder shape (13900000001).
    return normalize("phone", f"139{(i * 48271 + 20481736) % 10**8:08d}").canonical


@dataclass
class Planted:
    """Which identifiers each member holds, built so every overlap pattern occurs."""

    holdings: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def make(cls, size: int = 40) -> Planted:
        a, b, c = (set() for _ in range(3))
        n = 0
        for pattern, count in (("ab", 5), ("bc", 4), ("ac", 3), ("abc", 6), ("a", size), ("b", size), ("c", size)):
            for _ in range(count):
                value = phone(n)
                n += 1
                for letter, holder in zip("abc", (a, b, c), strict=False):
                    if letter in pattern:
                        holder.add(value)
        return cls({"bank-a": a, "bank-b": b, "bank-c": c})

    def expected(self, member: str, threshold: int) -> dict[str, int]:
        """{identifier: holder count} of the member's identifiers held by >= threshold members."""
        counts = {v: sum(v in held for held in self.holdings.values()) for v in self.holdings[member]}
        return {v: n for v, n in counts.items() if n >= threshold}


def load(engine: Engine, values: Sequence[str], category: str) -> None:
    with engine.begin() as conn:
        MemberRepository(conn).upsert_identifiers(
            [
                {
                    "type": IdentifierType.PHONE.value,
                    "canonical": v,
                    "category": category,
                    "severity": "level1",
                    "case_ref": f"CASE-{i}",
                }
                for i, v in enumerate(sorted(values))
            ]
        )


@dataclass
class Alliance:
    tmp: Path
    pki: object
    coordinator_engine: Engine
    coordinator_role: CoordinatorRole
    coordinator_address: str
    custodian_addresses: list[str]
    signing_key: SigningKey
    member_engines: dict[str, Engine]
    custodian_engines: list[Engine] = field(default_factory=list)
    custodian_cas: dict[str, Path] = field(default_factory=dict)
    """The CA file each independent custodian's operator hands members (by custodian name)."""
    public: PublicEpoch | None = None
    """A threshold epoch's public file (``running_alliance(threshold=…)``), written to ``epoch_file``."""
    key: bytes | None = None
    """The dealt epoch key, for tests that compare with the single-key OPRF (threshold only)."""

    @property
    def epoch_file(self) -> Path:
        return self.tmp / "epoch.json"

    def custodians(self) -> list[PeerEndpoint]:
        """The custodians as a member configures them: each independent one pinned to its own CA."""
        return [
            PeerEndpoint(name=custodian_name(i), address=a, ca=self.custodian_cas.get(custodian_name(i)))
            for i, a in enumerate(self.custodian_addresses)
        ]

    def admin(self) -> CoordinatorClient:
        return CoordinatorClient(self.coordinator_address, self.pki.material("admin"))  # type: ignore[attr-defined]

    def node(
        self, member: str, *, retry: RetryPolicy | None = None, share_name: bool = False, verify: str = "sample"
    ) -> MemberRole:
        """``member``'s role over its database and real clients of the running servers (the custodians
        as a chain, or any ``τ`` of them for a threshold alliance, checked as ``verify`` says)."""
        return self.member_node(member, retry=retry, share_name=share_name, verify=verify).role

    def member_node(
        self,
        member: str,
        *,
        retry: RetryPolicy | None = None,
        share_name: bool = False,
        verify: str = "sample",
        coordinator: CoordinatorClient | None = None,
    ) -> MemberNode:
        """``node``'s ``MemberNode`` (``coordinator``: another client of the coordinator to use)."""
        tls = self.pki.material(member)  # type: ignore[attr-defined]
        chain = custodian_evaluator(self.custodians(), tls, public=self.public, verify=verify, retry=retry)
        return MemberNode(
            member_id=member,
            engine=self.member_engines[member],
            coordinator=coordinator or CoordinatorClient(self.coordinator_address, tls, retry),
            custodians=chain,
            coordinator_key=self.signing_key.public_key,
            nonce_key=secrets.token_bytes(32),
            share_name=share_name,
            workers=1,
            batch_size=64,
            chunk_size=25,
        )

    def spec(self, threshold: int, **overrides: object) -> RoundSpec:
        return round_spec(threshold, **overrides)


def round_spec(threshold: int, **overrides: object) -> RoundSpec:
    """A round for the three test members over phone numbers, closing in ten minutes."""
    fields = {
        "name": "test round",
        "threshold": threshold,
        "key_epoch": EPOCH,
        "deadline": datetime.now(UTC) + timedelta(minutes=10),
        "allowed_types": ("phone",),
        "invited": MEMBERS,
        "share_labels": True,
    }
    fields.update(overrides)
    return RoundSpec(**fields)  # type: ignore[arg-type]


def enrol_all(engine: Engine, pki: object, names: Sequence[str], role: Role = Role.MEMBER) -> None:
    """Enrol the named parties' certificates from the test PKI in a server's database."""
    for name in names:
        enrol(engine, pki.issued[name].cert_pem, role=role)  # type: ignore[attr-defined]


@contextlib.contextmanager
def running_alliance(
    tmp: Path,
    pki: object,
    *,
    coordinator_engine: Engine | None = None,
    custodians: int = 2,
    quota: int = 100_000,
    planted: Planted | None = None,
    limits: ServerLimits | None = None,
    max_set_items: int | None = None,
    max_round_items: int | None = None,
    max_refused_chunks: int | None = None,
    crl: bytes | None = None,
    result_page_bytes: int | None = None,
    own_cas: Mapping[str, pki_module.CertificateAuthority] | None = None,
    custodian_options: Mapping[str, int] | None = None,
    metrics: Mapping[str, Metrics] | None = None,
    coordinator_options: Mapping[str, object] | None = None,
    threshold: int | None = None,
    altered: Mapping[str, Callable[[ThresholdShare], ThresholdShare]] | None = None,
    generated: tuple[Mapping[str, ThresholdShare], PublicEpoch] | None = None,
) -> Iterator[Alliance]:
    """Custodians and a coordinator serving on loopback within ``limits`` and refusing the
    certificates ``crl`` revokes; refused calls are audited in each server's database. A custodian
    named in ``own_cas`` serves a certificate of that CA (and still trusts members of the alliance
    CA); its CA certificate is written to ``tmp/NAME-ca.pem`` for members to pin. ``custodian_options``
    are passed to every ``CustodianRole`` (``kept_answers_per_member``, ``free_resent_per_member``),
    ``coordinator_options`` to the ``CoordinatorRole`` (``alert_heartbeat``, ``max_alert_backlog``, ...).
    ``metrics`` (by server name: ``coordinator``, ``custodian-1``, …) count each server's calls.
    With ``threshold``, the custodians hold a dealt threshold epoch (``threshold`` of ``custodians``)
    whose public file is ``Alliance.epoch_file``; ``altered`` maps a custodian's name to what it
    serves instead of its dealt share (a test's corrupted share, made from the dealt one). With
    ``generated`` (shares by custodian name and their public epoch, say from ``custodian keygen``)
    the custodians serve those instead of dealt ones, ``altered`` still applying, and
    ``Alliance.key`` is None: nobody dealt it."""
    planted = planted or Planted.make()
    limits = limits or ServerLimits()
    signing_key = SigningKey.generate()
    coordinator_engine = coordinator_engine or sqlite_engine(tmp / "coordinator.db")
    enrol_all(coordinator_engine, pki, MEMBERS)
    enrol_all(coordinator_engine, pki, ["admin"], Role.ADMIN)
    coordinator_roster, coordinator_check = enrolment_gate(
        coordinator_engine, server="coordinator", roles=frozenset({Role.MEMBER, Role.ADMIN}), refresh=ENROLMENT_REFRESH
    )
    role = CoordinatorRole(
        sql_unit_of_work(coordinator_engine),
        signing_key,
        known_types=[t.value for t in IdentifierType],
        max_set_items=max_set_items,
        max_round_items=max_round_items,
        **({"max_refused_chunks": max_refused_chunks} if max_refused_chunks else {}),
        key_pins=coordinator_roster.key_pin_of,
        reader=sql_unit_of_work(coordinator_engine, reading=True),
        **({"result_page_bytes": result_page_bytes} if result_page_bytes else {}),
        **(coordinator_options or {}),  # type: ignore[arg-type]
    )
    own_tls: dict[str, TlsMaterial] = {}
    custodian_cas: dict[str, Path] = {}
    for name, own_ca in (own_cas or {}).items():
        served = pki_module.issue(own_ca, role=Role.CUSTODIAN, name=name)
        alliance_ca = pki.ca.cert_pem  # type: ignore[attr-defined]
        own_tls[name] = TlsMaterial(alliance_ca, served.cert_pem, served.key_pem, crl=crl, own_ca=own_ca.cert_pem)
        custodian_cas[name] = tmp / f"{name}-ca.pem"
        custodian_cas[name].write_bytes(own_ca.cert_pem)
    with contextlib.ExitStack() as stack:

        def serve(registration: Registration, party: str, engine: Engine, check: PeerCheck) -> str:
            tls = own_tls[party] if party in own_tls else pki.material(party, crl=crl)  # type: ignore[attr-defined]
            audit = sql_audit_writer(engine)
            server = run_server(
                [registration],
                address="127.0.0.1:0",
                tls=tls,
                checks=[check],
                limits=limits,
                audit=audit,
                metrics=(metrics or {}).get(party),
            )
            return f"127.0.0.1:{stack.enter_context(server)}"

        key = public = None
        dealt: dict[str, ThresholdShare] = {}
        if generated is not None:
            dealt, public = dict(generated[0]), generated[1]
        elif threshold is not None:
            key = RISTRETTO255_SHA512.random_scalar()
            names = [custodian_name(i) for i in range(custodians)]
            dealt_shares, public = deal_epoch_for_testing(EPOCH, names, threshold=threshold, key=key)
            dealt = dict(zip(names, dealt_shares, strict=True))
        if public is not None:
            for name, alter in (altered or {}).items():
                dealt[name] = alter(dealt[name])
            (tmp / "epoch.json").write_bytes(public.to_bytes())
        addresses, custodian_engines = [], []
        for i in range(custodians):
            name = custodian_name(i)
            engine = sqlite_engine(tmp / f"{name}.db")
            enrol_all(engine, pki, MEMBERS)
            roster, check = enrolment_gate(
                engine, server="custodian", roles=frozenset({Role.MEMBER}), refresh=ENROLMENT_REFRESH
            )
            ledger = SqlQuotaLedger(engine, name)
            custodian = CustodianRole(
                name,
                dealt[name] if dealt else KeyShare.generate(EPOCH),
                quota_per_member=quota,
                ledger=ledger,
                quota_of=roster.quota_of,
                **(custodian_options or {}),
            )
            addresses.append(serve(custodian_registration(custodian), name, engine, check))
            custodian_engines.append(engine)
        coordinator_address = serve(
            coordinator_registration(role, (metrics or {}).get("coordinator")),
            "coordinator",
            coordinator_engine,
            coordinator_check,
        )
        engines = {}
        for i, member in enumerate(MEMBERS):
            engines[member] = sqlite_engine(tmp / f"{member}.db")
            load(engines[member], sorted(planted.holdings[member]), CATEGORIES[i])
        yield Alliance(
            tmp,
            pki,
            coordinator_engine,
            role,
            coordinator_address,
            addresses,
            signing_key,
            engines,
            custodian_engines,
            custodian_cas,
            public,
            key,
        )


@contextlib.contextmanager
def second_coordinator(alliance: Alliance, engine: Engine) -> Iterator[str]:
    """Another coordinator server with the alliance coordinator's signing key over ``engine`` (say,
    a copy of its database): what an operator who shows two members two logs would run. Yields
    its address."""
    role = CoordinatorRole(
        sql_unit_of_work(engine), alliance.signing_key, known_types=[t.value for t in IdentifierType]
    )
    _, check = enrolment_gate(
        engine, server="coordinator", roles=frozenset({Role.MEMBER, Role.ADMIN}), refresh=ENROLMENT_REFRESH
    )
    tls = alliance.pki.material("coordinator")  # type: ignore[attr-defined]
    with run_server([coordinator_registration(role)], address="127.0.0.1:0", tls=tls, checks=[check]) as port:
        yield f"127.0.0.1:{port}"
