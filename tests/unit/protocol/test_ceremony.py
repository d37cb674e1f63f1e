"""The key ceremony's rounds among custodians in memory: broadcast emulated by signed messages.

Signatures here are HMACs with a key per name (a fake of ``CeremonyCredentials``), and shares are
sealed with the real HPKE to a P-256 key per name; the real certificate signatures and enrolled
keys are tested with real servers in tests/integration/services/test_key_ceremony.py.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from alliance_psi.crypto.dkg import Disqualified, Fault, Participant
from alliance_psi.crypto.pedersen import ORDER, PedersenShare, decode_scalar, mul_base
from alliance_psi.crypto.sealed_shares import (
    SEALED_SHARE_BYTES,
    SEALED_SHARE_VERSION,
    ReceiverKey,
    ShareContext,
    seal_share,
)
from alliance_psi.errors import (
    CeremonyFailed,
    CeremonyMismatch,
    Conflict,
    InvalidRequest,
    InvalidSignature,
    NotAuthenticated,
    NotAuthorized,
)
from alliance_psi.protocol.ceremony import CeremonyPlan, CeremonyResult, Envelope, KeyCeremony, Payload, Signed, Stage
from alliance_psi.protocol.messages import (
    CeremonyCodec,
    ceremony_envelope_from_pb,
    ceremony_envelope_to_pb,
    pb_ceremony,
)
from tests.helpers.shamir import the_key

NAMES = ("custodian-1", "custodian-2", "custodian-3")


class HmacCredentials:
    """Signs as ``name`` with a key derived from the name; the certificate field carries the name.
    Seals shares to, and opens them with, a P-256 key derived from the name."""

    def __init__(self, name: str) -> None:
        self.name = name

    @staticmethod
    def _key(name: str) -> bytes:
        return hashlib.sha256(b"test key " + name.encode()).digest()

    @staticmethod
    def receiver_key(name: str) -> ec.EllipticCurvePrivateKey:
        scalar = 1 + int.from_bytes(hashlib.sha256(b"test receiver key " + name.encode()).digest()) % (2**255)
        return ec.derive_private_key(scalar, ec.SECP256R1())

    def seal_share(self, share: PedersenShare, context: ShareContext) -> bytes:
        public = self.receiver_key(context.receiver).public_key()
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return seal_share(share, der, context)

    def open_share(self, sealed: bytes, context: ShareContext) -> PedersenShare:
        return ReceiverKey(self.receiver_key(self.name)).open_share(sealed, context)

    def sign(self, payload: bytes) -> Signed:
        return Signed(payload, hmac.digest(self._key(self.name), payload, "sha256"), self.name.encode())

    def signer_of(self, signed: Signed) -> str:
        name = signed.certificate.decode()
        if not hmac.compare_digest(hmac.digest(self._key(name), signed.payload, "sha256"), signed.signature):
            raise InvalidSignature("bad signature")
        return name


def ceremony(plan: CeremonyPlan, name: str, cls: type[KeyCeremony] = KeyCeremony) -> KeyCeremony:
    return cls(plan, name, HmacCredentials(name), CeremonyCodec())


def custodians(plan: CeremonyPlan, cheats: dict[str, type[KeyCeremony]]) -> list[KeyCeremony]:
    """Every custodian of ``plan``, honest but for those named in ``cheats`` (with their role)."""
    return [ceremony(plan, name, cheats.get(name, KeyCeremony)) for name in plan.custodians]


def run(parties: list[KeyCeremony], *, until: Stage = Stage.CONFIRM) -> dict[str, CeremonyResult | Exception]:
    """All rounds, everyone delivering to everyone; a party that fails stops there."""
    outcome: dict[str, CeremonyResult | Exception] = {}
    for stage in Stage:
        if stage > until:
            break
        live = [p for p in parties if p.name not in outcome]
        for sender in live:
            for receiver_name, envelope in sender.message(stage).items():
                receiver = next(p for p in parties if p.name == receiver_name)
                receiver.deliver(sender.name, envelope)
        for party in live:
            try:
                party.wait(stage, deadline=0)
                party.conclude(stage)
            except CeremonyFailed as exc:
                outcome[party.name] = exc
    for party in parties:
        if party.name not in outcome and until is Stage.CONFIRM:
            outcome[party.name] = party.result()
    return outcome


def check_key(results: list[CeremonyResult], threshold: int) -> int:
    key = the_key({r.index: decode_scalar(r.share) for r in results}, threshold)
    assert all(mul_base(key) == r.public_key for r in results)
    return key


def test_three_custodians_agree_on_one_key() -> None:
    plan = CeremonyPlan.create("2026q4", 2, reversed(NAMES))
    assert plan.custodians == NAMES and plan.index_of("custodian-2") == 2
    results = run([ceremony(plan, n) for n in NAMES])
    finished = [r for r in results.values() if isinstance(r, CeremonyResult)]
    assert len(finished) == 3
    check_key(finished, 2)
    assert all(r.outcome == finished[0].outcome for r in finished)
    assert all(not r.disqualified() and not r.notes for r in finished)


class Equivocator(KeyCeremony):
    """Deals custodian-1 shares of other polynomials, under commitments consistent with them."""

    def message(self, stage: Stage) -> dict[str, Envelope]:
        envelopes = super().message(stage)
        if stage is Stage.DEAL:
            other = Participant(self.params, self.index).deal()
            payload = Payload(self.plan.session, Stage.DEAL, commitments=other.commitments)
            signed = self._credentials.sign(self._codec.encode(payload))
            context = self._share_context(signed.payload, self.name, "custodian-1")
            envelopes["custodian-1"] = Envelope(
                self.plan.session, signed, self._credentials.seal_share(other.shares[1], context)
            )
        return envelopes

    def _take_relays(self, echoer: int, relayed: Iterable[Signed]) -> bool:
        super()._take_relays(echoer, relayed)
        return False  # It plays along after equivocating: it does not stop on seeing its two deals.


def test_a_dealer_sending_different_commitments_is_named_by_every_other_and_excluded() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    results = run(custodians(plan, {"custodian-3": Equivocator}))
    honest = [results["custodian-1"], results["custodian-2"]]
    assert all(isinstance(r, CeremonyResult) for r in honest)
    for r in honest:
        assert isinstance(r, CeremonyResult)
        assert r.outcome.disqualified == {3: Disqualified(Fault.EQUIVOCATED)}
        assert r.disqualified() == {"custodian-3": "sent different commitments to different custodians"}
    check_key([r for r in honest if isinstance(r, CeremonyResult)], 2)


class StoppingEquivocator(Equivocator):
    """An equivocator running this code: it finds a deal of its own it did not send relayed back."""

    _take_relays = KeyCeremony._take_relays


def test_an_equivocator_that_stops_is_named_and_nobody_finishes() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    parties = [
        ceremony(plan, "custodian-1"),
        ceremony(plan, "custodian-2"),
        ceremony(plan, "custodian-3", StoppingEquivocator),
    ]
    results = run(parties)
    for name in ("custodian-1", "custodian-2"):
        failed = results[name]
        assert isinstance(failed, CeremonyFailed)
        assert "no round-3 message (answer) from custodian-3" in str(failed)
    assert str(results["custodian-3"]).startswith("custodian-1 relayed a round-1 message signed by this custodian")


class Mimic(KeyCeremony):
    """The worst case for round 7: confirms to each honest peer exactly that peer's own view
    (``peers``, set after the ceremony objects exist; a real cheater can compute them, having
    chosen what each peer received)."""

    peers: dict[str, KeyCeremony]

    def message(self, stage: Stage) -> dict[str, Envelope]:
        envelopes = super().message(stage)
        if stage is Stage.CONFIRM:
            for name, peer in self.peers.items():
                digest, seen = peer._confirmation()
                payload = Payload(self.plan.session, Stage.CONFIRM, digest=digest, seen=seen)
                envelopes[name] = Envelope(self.plan.session, self._credentials.sign(self._codec.encode(payload)))
        return envelopes

    def _confirmation(self) -> tuple[bytes, tuple[bytes, ...]]:
        return next(iter(self.peers.values()))._confirmation()  # Its own view does not matter.


def with_mimic(plan: CeremonyPlan, cheater: type[Mimic]) -> dict[str, CeremonyResult | Exception]:
    """Run honest custodian-1 and custodian-2 with ``cheater`` as custodian-3."""
    honest = [ceremony(plan, "custodian-1"), ceremony(plan, "custodian-2")]
    third = ceremony(plan, "custodian-3", cheater)
    assert isinstance(third, Mimic)
    third.peers = {p.name: p for p in honest}
    return run([*honest, third])


class Replayer(Mimic):
    """Relays, in round 2, round-1 messages of an earlier run of the same plan instead of this run's.

    ``old`` maps a receiver's name to the recorded messages relayed to it (by dealer index); the
    others get this run's messages (one signed round-2 message per receiver)."""

    old: ClassVar[dict[str, dict[int, Signed]]] = {}

    def message(self, stage: Stage) -> dict[str, Envelope]:
        envelopes = super().message(stage)
        if stage is Stage.ECHO:
            for receiver, replays in self.old.items():
                relayed = tuple(replays.get(i, self._inbox[(Stage.DEAL, i)].signed) for i in self.params.indices)
                payload = Payload(self.plan.session, Stage.ECHO, relayed=relayed, complaints=frozenset())
                envelopes[receiver] = Envelope(self.plan.session, self._credentials.sign(self._codec.encode(payload)))
        return envelopes


def earlier_deals(plan: CeremonyPlan) -> dict[int, Signed]:
    """custodian-3's record of a first run that stopped after round 1: every signed deal it received."""
    parties = [ceremony(plan, n) for n in NAMES]
    run(parties, until=Stage.DEAL)
    return {i: parties[2]._inbox[(Stage.DEAL, i)].signed for i in (1, 2)}


def test_a_replayed_deal_of_an_earlier_run_names_the_replayer_and_frames_nobody() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    old = earlier_deals(plan)
    results = with_mimic(plan, type("R", (Replayer,), {"old": {"custodian-1": old, "custodian-2": old}}))
    # Unchecked, each honest custodian would disqualify both honest dealers: QUAL = {custodian-3},
    # a key custodian-3 alone knows.
    for name in ("custodian-1", "custodian-2"):
        failed = results[name]
        assert isinstance(failed, CeremonyFailed)
        assert str(failed).startswith("custodian-3 relayed a round-1 message signed by this custodian")
        assert "Run the ceremony again, with the next --attempt, without custodian-3" in str(failed)


def test_crossed_replays_cannot_give_honest_custodians_different_keys() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    old = earlier_deals(plan)
    # custodian-1 sees custodian-2 "equivocate" and custodian-2 sees custodian-1: each alone would
    # finish with QUAL = {itself, custodian-3}, two different keys.
    replays = {"custodian-1": {2: old[2]}, "custodian-2": {1: old[1]}}
    results = with_mimic(plan, type("R", (Replayer,), {"old": replays}))
    assert not any(isinstance(r, CeremonyResult) for n, r in results.items() if n != "custodian-3")
    failed = results["custodian-1"]
    assert isinstance(failed, CeremonyFailed)
    assert "custodian-2 computed another outcome" in str(failed) or "custodian-2 received other messages" in str(failed)
    assert "custodian-2 disqualified here: sent different commitments to different custodians" in str(failed)


class CrossComplainer(Mimic):
    """Complains, in round 2, against custodian-2 to custodian-1 only and against custodian-1 to custodian-2 only."""

    def message(self, stage: Stage) -> dict[str, Envelope]:
        envelopes = super().message(stage)
        if stage is Stage.ECHO:
            relayed = tuple(self._inbox[(Stage.DEAL, i)].signed for i in self.params.indices)
            for receiver, against in (("custodian-1", 2), ("custodian-2", 1)):
                payload = Payload(self.plan.session, Stage.ECHO, relayed=relayed, complaints=frozenset({against}))
                envelopes[receiver] = Envelope(self.plan.session, self._credentials.sign(self._codec.encode(payload)))
        return envelopes


def test_complaints_told_to_one_custodian_only_cannot_give_honest_custodians_different_keys() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    results = with_mimic(plan, CrossComplainer)
    # Each honest dealer never hears the complaint against it, so never answers it, and the other
    # disqualifies it: unchecked, custodian-1 and custodian-2 would finish with different keys.
    for name in ("custodian-1", "custodian-2"):
        failed = results[name]
        assert isinstance(failed, CeremonyFailed), failed
        other = "custodian-2" if name == "custodian-1" else "custodian-1"
        assert f"{other} computed another outcome" in str(failed) or f"{other} received other messages" in str(failed)


class Equivocators(Equivocator):
    """Custodian-2 and custodian-3 both deal custodian-1 other polynomials than the others."""


def test_fewer_qualified_dealers_than_the_threshold_stop_the_ceremony() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    results = run(
        [
            ceremony(plan, "custodian-1"),
            ceremony(plan, "custodian-2", Equivocators),
            ceremony(plan, "custodian-3", Equivocators),
        ]
    )
    failed = results["custodian-1"]
    assert isinstance(failed, CeremonyFailed)
    assert str(failed).startswith("only 1 dealer qualified, fewer than the threshold 2")
    assert "custodian-2: sent different commitments" in str(failed) and "custodian-3: sent different" in str(failed)


class BadDealer(KeyCeremony):
    """Deals every peer a share that fails its commitments, sealed as it should be."""

    def message(self, stage: Stage) -> dict[str, Envelope]:
        envelopes = super().message(stage)
        if stage is Stage.DEAL:
            for name, e in envelopes.items():
                good = self._dealing.shares[self.plan.index_of(name)]
                context = self._share_context(e.message.payload, self.name, name)
                sealed = self._credentials.seal_share(PedersenShare((good.value + 1) % ORDER, 0), context)
                envelopes[name] = Envelope(e.session, e.message, sealed)
        return envelopes


class GarbledSealer(KeyCeremony):
    """Deals custodian-1 a sealed share of the right size that opens with no key."""

    def message(self, stage: Stage) -> dict[str, Envelope]:
        envelopes = super().message(stage)
        if stage is Stage.DEAL:
            e = envelopes["custodian-1"]
            garbled = bytes([SEALED_SHARE_VERSION]) + bytes(SEALED_SHARE_BYTES - 1)
            envelopes["custodian-1"] = Envelope(e.session, e.message, garbled)
        return envelopes


def test_a_share_that_does_not_open_is_a_complaint_the_dealer_answers_in_the_open() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    results = run(custodians(plan, {"custodian-3": GarbledSealer}))
    finished = [r for r in results.values() if isinstance(r, CeremonyResult)]
    assert len(finished) == 3
    # One complaint (not more than τ−1 = 1), answered with a share that passes: custodian-3 stays.
    assert all(not r.disqualified() for r in finished)
    check_key(finished, 2)
    complainer = results["custodian-1"]
    assert isinstance(complainer, CeremonyResult)
    (note,) = complainer.notes
    assert note == (
        "the share custodian custodian-3 sealed to this custodian does not open with this custodian's certificate "
        "key: this custodian complained against custodian-3 in round 2"
    )


def test_a_dealer_of_bad_shares_is_named_with_its_complainers() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    results = run(custodians(plan, {"custodian-1": BadDealer}))
    for name in ("custodian-2", "custodian-3"):
        r = results[name]
        assert isinstance(r, CeremonyResult)
        assert r.disqualified() == {
            "custodian-1": "its shares to custodian-2, custodian-3 failed its commitments (2 complaints, more than "
            "τ−1 = 1)"
        }
    cheater = results["custodian-1"]
    assert isinstance(cheater, CeremonyResult)
    assert cheater.notes[0].startswith("this custodian was disqualified as a dealer")


class SilentBadDealer(BadDealer):
    """A bad dealer that sends no round-7 confirmation."""

    def message(self, stage: Stage) -> dict[str, Envelope]:
        return {} if stage is Stage.CONFIRM else super().message(stage)


def test_every_custodian_confirms_the_disqualified_too() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    parties = [
        ceremony(plan, "custodian-1", SilentBadDealer),
        ceremony(plan, "custodian-2"),
        ceremony(plan, "custodian-3"),
    ]
    results = run(parties)
    # Without the disqualified dealer's word that it saw what they saw, the others cannot know
    # it did not tell some of them other things (see the crossed tests below): nobody finishes.
    for name in ("custodian-2", "custodian-3"):
        failed = results[name]
        assert isinstance(failed, CeremonyFailed)
        assert "no round-7 message (confirm) from custodian-1 before the deadline (custodian-1: its shares to" in str(
            failed
        )


class LaterEquivocator(KeyCeremony):
    """Sends custodian-1 another round-3 message (an extra answer) than the others."""

    def message(self, stage: Stage) -> dict[str, Envelope]:
        envelopes = super().message(stage)
        if stage is Stage.ANSWER:
            payload = Payload(self.plan.session, Stage.ANSWER, shares={2: PedersenShare(1, 1)})
            envelopes["custodian-1"] = Envelope(self.plan.session, self._credentials.sign(self._codec.encode(payload)))
        return envelopes


def test_different_later_messages_to_different_custodians_stop_the_ceremony_naming_them() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    results = run(custodians(plan, {"custodian-3": LaterEquivocator}))
    failed = results["custodian-1"]
    assert isinstance(failed, CeremonyFailed)
    assert "custodian-2 received other messages than this custodian: round 3 from custodian-3" in str(failed)
    assert isinstance(results["custodian-2"], CeremonyFailed)


def test_a_missing_custodian_fails_the_round_naming_it() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    one, two = ceremony(plan, "custodian-1"), ceremony(plan, "custodian-2")
    two.deliver("custodian-1", one.message(Stage.DEAL)["custodian-2"])
    two.message(Stage.DEAL)
    with pytest.raises(CeremonyFailed, match=r"no round-1 message \(deal\) from custodian-3 before the deadline"):
        two.wait(Stage.DEAL, deadline=0)
    two.fail("custodian-3 refused our message")
    with pytest.raises(CeremonyFailed, match="custodian-3 refused"):
        two.wait(Stage.DEAL, deadline=10**9)


def test_deliveries_are_checked_before_they_are_kept() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    one, two = ceremony(plan, "custodian-1"), ceremony(plan, "custodian-2")
    envelope = one.message(Stage.DEAL)["custodian-2"]
    with pytest.raises(NotAuthorized, match="custodian-9 is not in this ceremony"):
        two.deliver("custodian-9", envelope)
    with pytest.raises(NotAuthenticated, match="signed by custodian-1, not by the caller custodian-3"):
        two.deliver("custodian-3", envelope)
    other = ceremony(CeremonyPlan.create("e", 3, NAMES), "custodian-2")
    with pytest.raises(CeremonyMismatch, match="runs another ceremony .epoch e, threshold 3 of 3"):
        other.deliver("custodian-1", envelope)
    with pytest.raises(InvalidRequest, match="carries the receiver's sealed share"):
        two.deliver("custodian-1", Envelope(envelope.session, envelope.message))
    forged = Signed(envelope.message.payload, b"x" * 32, envelope.message.certificate)
    with pytest.raises(InvalidSignature):
        two.deliver("custodian-1", Envelope(envelope.session, forged, envelope.sealed_share))
    assert two.deliver("custodian-1", envelope) is Stage.DEAL
    assert two.deliver("custodian-1", envelope) is Stage.DEAL  # A retry is welcome.
    resealed = one.message(Stage.DEAL)["custodian-2"]  # The same share, sealed afresh: other bytes.
    assert resealed.sealed_share != envelope.sealed_share
    with pytest.raises(Conflict, match="another round-1 message before"):
        two.deliver("custodian-1", Envelope(envelope.session, envelope.message, resealed.sealed_share))
    answer = HmacCredentials("custodian-1").sign(CeremonyCodec().encode(Payload(plan.session, Stage.ANSWER)))
    with pytest.raises(InvalidRequest, match="only a round-1 message carries a share, not round 3"):
        two.deliver("custodian-1", Envelope(plan.session, answer, envelope.sealed_share))


def test_envelopes_cross_the_wire_with_a_sealed_share_of_one_size() -> None:
    plan = CeremonyPlan.create("e", 2, NAMES)
    envelope = ceremony(plan, "custodian-1").message(Stage.DEAL)["custodian-2"]
    received = pb_ceremony.CeremonyEnvelope.FromString(ceremony_envelope_to_pb(envelope).SerializeToString())
    assert ceremony_envelope_from_pb(received) == envelope
    for size in (1, SEALED_SHARE_BYTES - 1, SEALED_SHARE_BYTES + 1):
        received.sealed_share = bytes(size)
        with pytest.raises(InvalidRequest, match=f"a sealed share is 146 bytes, not {size}"):
            ceremony_envelope_from_pb(received)
    # A custodian of the release before sealing sends the share in the clear, in fields 3 and 4:
    # they are ignored, and a round-1 message without a sealed share is refused.
    clear = b"\x1a\x20" + bytes(32) + b"\x22\x20" + bytes(32)
    old = pb_ceremony.CeremonyEnvelope.FromString(
        pb_ceremony.CeremonyEnvelope(session=envelope.session, message=received.message).SerializeToString() + clear
    )
    with pytest.raises(InvalidRequest, match="a round-1 message carries the receiver's sealed share"):
        ceremony(plan, "custodian-2").deliver("custodian-1", ceremony_envelope_from_pb(old))


def test_plans_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="named twice"):
        CeremonyPlan.create("e", 2, ["a", "a", "b"])
    with pytest.raises(ValueError, match="threshold must be 1 to 2"):
        CeremonyPlan.create("e", 3, ["a", "b"])
    with pytest.raises(ValueError, match="epoch"):
        CeremonyPlan.create("", 1, ["a", "b"])
    assert CeremonyPlan.create("e", 2, NAMES).session != CeremonyPlan.create("f", 2, NAMES).session
    second = CeremonyPlan.create("e", 2, NAMES, attempt=2)
    assert second.session != CeremonyPlan.create("e", 2, NAMES).session
    assert second.describe().startswith("epoch e (attempt 2), threshold 2 of 3")
    with pytest.raises(ValueError, match="the attempt must be 1 to 1,000,000"):
        CeremonyPlan.create("e", 2, NAMES, attempt=0)
