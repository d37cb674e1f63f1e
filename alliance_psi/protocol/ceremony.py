"""The custodians' key ceremony: ``crypto.dkg`` run over point-to-point messages, one custodian's role.

The paper's protocol assumes a broadcast channel; custodians have mutual-TLS connections, one
to each other. What each custodian *broadcasts* is therefore one message per round, the same for
every peer and **signed** with its certificate key (``CeremonyCredentials``), delivered to each
peer, and checked three ways:

- a dealer could send different commitments to different peers. In round 2 every custodian
  relays the signed round-1 messages it received; two different ones signed by the same dealer
  prove it equivocated, and every custodian that sees both disqualifies it (``Fault.EQUIVOCATED``).
  A relay cannot forge a dealer's signature, but it can replay a dealer's signed round-1 message
  of an earlier run of the same plan (a run after a failed one has the same session). A
  custodian relayed a round-1 message of its own that it did not send this time knows it is a
  replay: it stops the ceremony naming the custodian that relayed it (``CeremonyFailed``);
- a custodian could send different messages of a later round to different peers, or relay
  different round-1 messages to different peers so that honest custodians disqualify different
  dealers. In round 7 every custodian, qualified or not, sends the digest of the outcome it
  computed (QUAL, the disqualified and why, the key, the verification keys) and a digest of
  every message it used; a custodian finishes only if every custodian's digests equal its own,
  and otherwise names the messages that differ and who received which;
- a peer could deliver two different messages for one round to the same custodian: the second is
  refused (``Conflict``) and the first kept.

Rounds (``Stage``): 1 deal (commitments ``C_ik`` signed; the private share for the receiver
travels beside it, unsigned, sealed to the key enrolled for the receiver, ``crypto.sealed_shares``:
a certificate the CA holder issues under the receiver's name cannot open it), 2 echo (relayed
round-1 messages and complaints), 3 answers to complaints, then QUAL is fixed; 4 Feldman
coefficients ``A_ik``, 5 extraction complaints, 6 reconstruction shares, 7 confirmation. Every
custodian must deliver rounds 1 to 3 and 7, and every qualified one rounds 4 to 6, before a
deadline; otherwise the ceremony fails naming who is missing (a ceremony without broadcast cannot
tell a silent custodian from a slow one, and a key whose shares some custodian lacks is no key).
Messages of disqualified custodians in rounds 4 to 6 are ignored. Fewer than ``τ`` qualified
dealers fail the ceremony: else ``τ - 1`` colluding dealers could be all the key is made of.

A sealed share that does not open with the receiver's key is an invalid share, as one failing
its commitments is: the receiver complains against the dealer in round 2, the dealer must answer
with that share in the open (or be disqualified), and a note names it. The message is not refused:
only the dealer's enrolled key can deliver it, so a bad seal is the dealer's doing (a receiver
serving another key than the one enrolled for it is refused by its peers' enrolment checks
anyway), and a refusal would leave the receiver without the dealer's round-1 message and fail the
whole ceremony at its deadline, where a complaint lets every custodian judge the dealer.

What this cannot do without a broadcast channel: one custodian can make a ceremony fail (by
silence, or by any of the above). It cannot make two honest custodians finish with shares of
different keys, nor make an honest custodian finish with a key the cheaters know: an honest
custodian that finishes is among its own qualified dealers, so its secret is in the key. A
ceremony can fail *after* some custodians finished: a custodian that sends its round-7
confirmation to some peers only lets those finish while the others fail. The shares written
are then of one key (every finisher checked everyone's digests), but not every custodian holds
one: the operators compare the epoch file fingerprints (``custodian keygen`` prints them) and
run the ceremony again when a custodian failed.

``KeyCeremony`` is thread-safe: the server thread ``deliver``s peers' messages while the driver
(``services.key_ceremony``) ``wait``s and ``conclude``s each round.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from alliance_psi.crypto.dkg import (
    Disqualified,
    DkgResult,
    Participant,
    decode_commitments,
    judge_extraction,
    outcome,
    qualify,
    reconstruct,
)
from alliance_psi.crypto.pedersen import Commitments, PedersenShare, encode_scalar
from alliance_psi.crypto.sealed_shares import ShareContext
from alliance_psi.errors import (
    CeremonyFailed,
    CeremonyMismatch,
    Conflict,
    CryptoError,
    InvalidRequest,
    InvalidSealedShare,
    InvalidSignature,
    NotAuthenticated,
    NotAuthorized,
)
from alliance_psi.protocol.ceremony_model import (
    OUTCOME_TAG,
    SIGNING_CONTEXT,
    CeremonyCredentials,
    CeremonyPlan,
    CeremonyResult,
    Envelope,
    Payload,
    PayloadCodec,
    Signed,
    Stage,
    describe_fault,
)

__all__ = [
    "SIGNING_CONTEXT",
    "CeremonyCredentials",
    "CeremonyPlan",
    "CeremonyResult",
    "Envelope",
    "KeyCeremony",
    "Payload",
    "PayloadCodec",
    "Signed",
    "Stage",
]

_NOTHING = bytes(32)


@dataclass(slots=True)
class _Received:
    signed: Signed
    payload: Payload
    sealed_share: bytes


class KeyCeremony:
    """Custodian ``name``'s part in the ceremony ``plan`` (a ``crypto.dkg.Participant`` inside).

    The driver calls, for each ``Stage`` in order: ``message(stage)`` (what to deliver to each
    peer), ``wait(stage, deadline)`` and ``conclude(stage)``; then ``result()``. The server calls
    ``deliver`` for each peer's envelope, with the caller's name from its certificate.
    """

    def __init__(
        self,
        plan: CeremonyPlan,
        name: str,
        credentials: CeremonyCredentials,
        codec: PayloadCodec,
        *,
        participant: Participant | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan, self.name, self.index = plan, name, plan.index_of(name)
        self.params = plan.params
        self._credentials, self._codec, self._clock = credentials, codec, clock
        self._participant = participant or Participant(self.params, self.index)
        self._changed = threading.Condition()
        self._inbox: dict[tuple[Stage, int], _Received] = {}
        self._commitments: dict[int, Commitments] = {}
        self._deal_payloads: dict[int, set[bytes]] = {}
        self._complaints: dict[int, frozenset[int]] = {}
        self._disqualified: dict[int, Disqualified] = {}
        self._qualified: frozenset[int] = frozenset(self.params.indices)
        self._to_rebuild: dict[int, frozenset[int]] = {}
        self._extraction: dict[int, Commitments | None] = {}
        self._result: DkgResult | None = None
        self._notes: list[str] = []
        self._failure: str | None = None
        self._dealing = self._participant.deal()

    # Server side ------------------------------------------------------------------------------

    def deliver(self, caller: str, envelope: Envelope) -> Stage:
        """Take ``caller``'s envelope (``caller`` from its TLS certificate); return its round.

        Raises:
            NotAuthorized: ``caller`` is not a custodian of this ceremony.
            CeremonyMismatch: the envelope is for another ceremony.
            NotAuthenticated: the message is signed by another custodian than the caller.
            InvalidSignature, InvalidRequest: a bad signature or field (named).
            Conflict: the caller delivered another message for this round before.
        """
        sender = self.plan.index_of(caller)
        if envelope.session != self.plan.session:
            # It cannot take part in this ceremony: stop now rather than wait for the deadline.
            self.fail(
                f"{caller} sent a message of another ceremony than this one ({self.plan.describe()}): check the "
                "--epoch, --attempt, --threshold and custodians each custodian was started with"
            )
            raise CeremonyMismatch(
                f"runs another ceremony ({self.plan.describe()}): check --epoch, --attempt, --threshold and the "
                "custodians given to each custodian"
            )
        signer = self._credentials.signer_of(envelope.message)
        if signer != caller:
            raise NotAuthenticated(f"the message is signed by {signer}, not by the caller {caller}")
        payload = self._codec.decode(envelope.message.payload)
        self._check_payload(payload, envelope)
        self._store(sender, _Received(envelope.message, payload, envelope.sealed_share))
        return payload.stage

    def _check_payload(self, payload: Payload, envelope: Envelope) -> None:
        if payload.session != self.plan.session:
            raise CeremonyMismatch("the signed message names another ceremony than its envelope")
        n = self.params.participants
        if payload.stage is Stage.DEAL:
            if not envelope.sealed_share:
                raise InvalidRequest("a round-1 message carries the receiver's sealed share")
            try:
                decode_commitments(payload.commitments, self.params)
            except CryptoError as exc:
                raise InvalidRequest(f"round-1 commitments: {exc}") from None
        elif envelope.sealed_share:
            raise InvalidRequest(f"only a round-1 message carries a share, not round {payload.stage.value}")
        if payload.stage is Stage.EXTRACT and payload.commitments:
            try:
                decode_commitments(payload.commitments, self.params)
            except CryptoError as exc:
                raise InvalidRequest(f"round-4 coefficients: {exc}") from None
        if len(payload.relayed) > n or any(not 1 <= i <= n for i in [*payload.complaints, *payload.shares]):
            raise InvalidRequest(f"a custodian index out of 1..{n}, or more relayed messages than custodians")
        if len(payload.seen) > len(Stage) * n:
            raise InvalidRequest("more message digests than rounds times custodians")

    def _store(self, sender: int, received: _Received) -> None:
        key = (received.payload.stage, sender)
        with self._changed:
            kept = self._inbox.get(key)
            if kept is not None:
                if kept.signed.payload != received.signed.payload or kept.sealed_share != received.sealed_share:
                    raise Conflict(f"you delivered another round-{key[0].value} message before; the first one stands")
                return
            self._inbox[key] = received
            self._changed.notify_all()

    # Driver side ------------------------------------------------------------------------------

    def message(self, stage: Stage) -> dict[str, Envelope]:
        """This custodian's envelope of ``stage`` for each peer; its own copy is delivered here."""
        payload = self._payload(stage)
        signed = self._credentials.sign(self._codec.encode(payload))
        envelopes = {}
        for j in self.params.indices:
            if j == self.index:
                self._store(j, _Received(signed, payload, b""))
                continue
            receiver = self.plan.name_of(j)
            sealed = b""
            if stage is Stage.DEAL:
                context = self._share_context(signed.payload, self.name, receiver)
                sealed = self._credentials.seal_share(self._dealing.shares[j], context)
            envelopes[receiver] = Envelope(self.plan.session, signed, sealed)
        return envelopes

    def _share_context(self, dealing: bytes, dealer: str, receiver: str) -> ShareContext:
        return ShareContext(self.plan.session, hashlib.sha256(dealing).digest(), dealer, receiver)

    def _share_from(self, dealer: int) -> PedersenShare | None:
        """The share ``dealer`` dealt this custodian, or None (a complaint) if it does not open."""
        if dealer == self.index:
            return self._dealing.shares[dealer]
        kept, name = self._inbox[(Stage.DEAL, dealer)], self.plan.name_of(dealer)
        try:
            return self._credentials.open_share(
                kept.sealed_share, self._share_context(kept.signed.payload, name, self.name)
            )
        except InvalidSealedShare as exc:
            self._notes.append(f"{exc}: this custodian complained against {name} in round 2")
            return None

    def _payload(self, stage: Stage) -> Payload:
        session = self.plan.session
        p = self._participant
        if stage is Stage.DEAL:
            return Payload(session, stage, commitments=self._dealing.commitments)
        if stage is Stage.ECHO:
            relayed = tuple(self._inbox[(Stage.DEAL, i)].signed for i in self.params.indices)
            return Payload(session, stage, relayed=relayed, complaints=p.complaints)
        if stage is Stage.ANSWER:
            complainers = [j for j, against in self._complaints.items() if self.index in against]
            return Payload(session, stage, shares=p.answer(complainers))
        if stage is Stage.EXTRACT:
            coefficients = p.extraction() if self.index in self._qualified else ()
            return Payload(session, stage, commitments=coefficients)
        if stage is Stage.COMPLAIN:
            return Payload(session, stage, shares=p.check_extraction(self._extraction))
        if stage is Stage.REVEAL:
            return Payload(session, stage, shares=p.reveal(d for d in self._to_rebuild if d != self.index))
        digest, seen = self._confirmation()
        return Payload(session, stage, digest=digest, seen=seen)

    def required(self, stage: Stage) -> frozenset[int]:
        """Whose message of ``stage`` this custodian waits for."""
        everyone = stage <= Stage.ANSWER or stage is Stage.CONFIRM
        return frozenset(self.params.indices) if everyone else self._qualified

    def fail(self, reason: str) -> None:
        """Stop the ceremony (a peer refused our message): ``wait`` raises ``CeremonyFailed(reason)``."""
        with self._changed:
            self._failure = self._failure or reason
            self._changed.notify_all()

    def wait(self, stage: Stage, deadline: float) -> None:
        """Block until every required message of ``stage`` is here.

        Raises:
            CeremonyFailed: the deadline (``clock`` time) passed first, naming who is missing; or
                ``fail`` was called.
        """
        required = self.required(stage)
        with self._changed:
            while True:
                if self._failure is not None:
                    raise CeremonyFailed(self._failure)
                missing = [i for i in required if (stage, i) not in self._inbox]
                if not missing:
                    return
                left = deadline - self._clock()
                if left <= 0:
                    faults = "".join(
                        f" ({self.plan.name_of(i)}: {self._fault(i)})" for i in missing if i in self._disqualified
                    )
                    raise CeremonyFailed(
                        f"no round-{stage.value} message ({stage.name.lower()}) from {self.plan.names(missing)} "
                        f"before the deadline{faults}: start the ceremony again with --attempt {self.plan.attempt + 1} "
                        "when every custodian runs it"
                    )
                self._changed.wait(timeout=min(left, 1.0))

    def _received(self, stage: Stage) -> dict[int, Payload]:
        with self._changed:
            return {i: self._inbox[(stage, i)].payload for i in self.required(stage)}

    def conclude(self, stage: Stage) -> None:
        """Act on every required message of ``stage`` (after ``wait``)."""
        received = self._received(stage)
        if stage is Stage.DEAL:
            for dealer, payload in received.items():
                commitments = decode_commitments(payload.commitments, self.params)
                self._commitments[dealer] = commitments
                self._deal_payloads[dealer] = {self._inbox[(Stage.DEAL, dealer)].signed.payload}
                self._participant.receive(dealer, commitments, self._share_from(dealer))
        elif stage is Stage.ECHO:
            replayers = set()
            for echoer, payload in received.items():
                self._complaints[echoer] = payload.complaints
                if self._take_relays(echoer, payload.relayed):
                    replayers.add(echoer)
            if replayers:
                raise CeremonyFailed(
                    f"{self.plan.names(replayers)} relayed a round-1 message signed by this custodian that it did "
                    "not send in this run: one of an earlier run of this ceremony, replayed to have this custodian "
                    f"disqualified as a dealer (a custodian whose database was replaced can deal twice in one attempt). "
                    f"Run the ceremony again, with the next --attempt, without {self.plan.names(replayers)}"
                )
        elif stage is Stage.ANSWER:
            answers = {dealer: dict(payload.shares) for dealer, payload in received.items()}
            equivocated = [d for d, seen in self._deal_payloads.items() if len(seen) > 1]
            self._disqualified = qualify(
                self.params, self._commitments, self._complaints, answers, equivocated=equivocated
            )
            self._qualified = frozenset(self.params.indices) - frozenset(self._disqualified)
            if len(self._qualified) < self.params.threshold:
                raise CeremonyFailed(
                    f"only {len(self._qualified)} dealer{'' if len(self._qualified) == 1 else 's'} qualified, fewer than the threshold {self.params.threshold}, "
                    "so fewer custodians than the threshold could know the key: "
                    + "; ".join(f"{self.plan.name_of(i)}: {self._fault(i)}" for i in sorted(self._disqualified))
                )
            if self.index in self._disqualified:
                self._notes.append(f"this custodian was disqualified as a dealer: {self._fault(self.index)}")
            try:
                self._participant.adopt(self._disqualified, answers)
            except CryptoError as exc:
                raise CeremonyFailed(f"the custodians' views differ: {exc}") from None
        elif stage is Stage.EXTRACT:
            self._extraction = {
                i: (decode_commitments(p.commitments, self.params) if p.commitments else None)
                for i, p in received.items()
            }
        elif stage is Stage.COMPLAIN:
            evidence = {i: dict(p.shares) for i, p in received.items()}
            self._to_rebuild = judge_extraction(
                self.params, self._qualified, self._commitments, self._extraction, evidence
            )
        elif stage is Stage.REVEAL:
            self._finish({i: dict(p.shares) for i, p in received.items()})
        else:
            self._check_confirmations(received)

    def _take_relays(self, echoer: int, relayed: Iterable[Signed]) -> bool:
        """Keep the round-1 messages ``echoer`` relayed; whether one is of this custodian's but not
        the one it sent (a replay: this custodian deals once per run)."""
        replayed = False
        for signed in relayed:
            try:
                dealer = self.plan.index_of(self._credentials.signer_of(signed))
                payload = self._codec.decode(signed.payload)
            except (InvalidSignature, InvalidRequest, NotAuthorized):
                self._notes.append(f"{self.plan.name_of(echoer)} relayed a message that is not validly signed")
                continue
            if payload.session == self.plan.session and payload.stage is Stage.DEAL:
                self._deal_payloads.setdefault(dealer, set()).add(signed.payload)
                replayed = replayed or (dealer == self.index and signed.payload != self._own_deal())
        return replayed

    def _own_deal(self) -> bytes:
        with self._changed:
            return self._inbox[(Stage.DEAL, self.index)].signed.payload

    def _finish(self, reveals: Mapping[int, Mapping[int, PedersenShare]]) -> None:
        coefficients: dict[int, Commitments] = {}
        for dealer in self._qualified:
            published = self._extraction.get(dealer)
            if dealer in self._to_rebuild or published is None:
                shown = {j: s[dealer] for j, s in reveals.items() if j != dealer and dealer in s}
                try:
                    coefficients[dealer] = reconstruct(self.params, self._commitments[dealer], shown)
                except CryptoError as exc:
                    raise CeremonyFailed(
                        f"cannot reconstruct {self.plan.name_of(dealer)}'s coefficients: {exc}"
                    ) from None
                self._notes.append(
                    f"{self.plan.name_of(dealer)} published public coefficients that do not match its shares; "
                    "they were reconstructed in the open (its contribution to the key is public, the others' are not)"
                )
            else:
                coefficients[dealer] = published
        try:
            public = outcome(self.params, self._disqualified, coefficients, self._to_rebuild)
            self._result = self._participant.result(public)
        except CryptoError as exc:
            raise CeremonyFailed(f"no key: {exc}") from None

    def _confirmation(self) -> tuple[bytes, tuple[bytes, ...]]:
        if self._result is None:
            raise CeremonyFailed("round 7 before the outcome")
        public = self._result.outcome
        parts = [OUTCOME_TAG, self.plan.session, bytes(sorted(public.qualified))]
        for i, d in sorted(public.disqualified.items()):
            parts += [bytes([i]), d.fault.value.encode(), bytes(sorted(d.by))]
        parts += [bytes(sorted(public.reconstructed)), public.public_key]
        parts += [public.verification_keys[m] for m in self.params.indices]
        return hashlib.sha256(b"\x00".join(parts)).digest(), self._seen()

    def _seen(self) -> tuple[bytes, ...]:
        seen = []
        for stage in list(Stage)[:-1]:
            for i in self.params.indices:
                if stage is Stage.DEAL:
                    digest = hashlib.sha256(b"".join(sorted(self._deal_payloads.get(i, set())))).digest()
                elif i in self.required(stage):
                    digest = hashlib.sha256(self._inbox[(stage, i)].signed.payload).digest()
                else:
                    digest = _NOTHING
                seen.append(digest)
        return tuple(seen)

    def _check_confirmations(self, received: Mapping[int, Payload]) -> None:
        digest, seen = self._confirmation()
        problems = []
        for peer, payload in sorted(received.items()):
            if payload.digest == digest and payload.seen == seen:
                continue
            differing = [
                (Stage(1 + k // self.params.participants), 1 + k % self.params.participants)
                for k, (ours, theirs) in enumerate(zip(seen, payload.seen, strict=False))
                if ours != theirs
            ]
            if len(payload.seen) != len(seen) or not differing:
                problems.append(f"{self.plan.name_of(peer)} computed another outcome")
                continue
            which = "; ".join(f"round {s.value} from {self.plan.name_of(i)}" for s, i in differing)
            problems.append(f"{self.plan.name_of(peer)} received other messages than this custodian: {which}")
        if problems:
            problems += [
                f"{self.plan.name_of(i)} disqualified here: {self._fault(i)}" for i in sorted(self._disqualified)
            ]
            raise CeremonyFailed(
                "the custodians' views differ, so no share is kept: " + ". ".join(problems) + ". A custodian that "
                "sends different messages to different peers is faulty; run the ceremony again without it "
                f"(--attempt {self.plan.attempt + 1})"
            )

    def result(self) -> CeremonyResult:
        """The finished ceremony's result (after round 7 is concluded)."""
        if self._result is None:
            raise CeremonyFailed("the ceremony has not finished")
        return CeremonyResult(
            self.plan,
            self.name,
            self.index,
            encode_scalar(self._result.share),
            self._result.outcome,
            tuple(self._notes),
        )

    def _fault(self, index: int) -> str:
        return describe_fault(self.plan, self._disqualified[index])
