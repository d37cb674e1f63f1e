"""Distributed key generation without a dealer: the protocol of Gennaro, Jarecki, Krawczyk and
Rabin ("Secure Distributed Key Generation for Discrete-Log Based Cryptosystems", EUROCRYPT 1999,
J. Cryptology 2007, figure 2), over ristretto255, for ``n`` custodians and threshold ``τ``
(degree ``t = τ − 1``): any ``τ`` custodians' shares determine the key, fewer learn nothing of it.

Written as the paper states it, for one participant ``P_j`` with indices ``1..n``; what the paper
*broadcasts* is here an argument every participant is given alike (``protocol.ceremony`` builds
that broadcast from signed point-to-point messages and refuses to finish when views differ).

Generating ``x``::

    1. P_i deals Pedersen-VSS (crypto.pedersen): broadcasts C_ik = a_ik·G + b_ik·H,   Participant.deal
       sends s_ij = f_i(j), s'_ij = f'_i(j) to P_j.
       P_j checks s_ij·G + s'_ij·H == Σ_k C_ik·j^k; complains against P_i if not.    Participant.receive, .complaints
       P_i answers each complaint by broadcasting (s_ij, s'_ij).                     Participant.answer
       P_i is disqualified if more than t participants complained, or an answer      qualify
       fails the check (or it dealt nothing, or answered nothing).
    2. QUAL is the rest; P_j's share is x_j = Σ_{i ∈ QUAL} s_ij.                      Participant.adopt

Extracting ``y = x·G`` (so that no one can bias the public key by choosing, after seeing the
others' ``a_i0·G``, whether to be disqualified: the ``A_ik`` are revealed only once QUAL is fixed)::

    4a. Each P_i ∈ QUAL broadcasts A_ik = a_ik·G.                                      Participant.extraction
    4b. P_j checks s_ij·G == Σ_k A_ik·j^k for each i ∈ QUAL; if not, it broadcasts    Participant.check_extraction
        (s_ij, s'_ij), which satisfy the Pedersen check but not this one.
    4c. For each P_i with a valid such complaint (or no A_i at all), the others       judge_extraction,
        broadcast their s_ij, s'_ij; f_i is interpolated from τ of those that pass   Participant.reveal,
        the Pedersen check, and A_ik = a_ik·G computed in the open.                   reconstruct
        y = K = Σ_{i ∈ QUAL} A_i0, and custodian m's public share K_m = x_m·G =       outcome
        Σ_{i ∈ QUAL} Σ_k A_ik·m^k.                                                    Participant.result

What a participant learns: its own share ``x_j``, the public key ``K``, every ``K_m``, and who was
disqualified. What a dealer that cheats can do: be disqualified (its contribution is dropped), have
a complaint answered in the open (the complainer's share from it becomes public, which reveals
nothing as long as no more than ``t`` shares of it are public), or have its polynomial
reconstructed in the open in step 4c (its contribution to ``x`` is then public, the others' are
not). It cannot make honest participants accept shares inconsistent with ``K``, and it cannot bias
``K``: the Pedersen commitments hide every ``a_i0`` until QUAL is fixed.

Pure: no I/O; randomness from the OS CSPRNG unless a test passes its polynomials.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from alliance_psi.crypto.pedersen import (
    ORDER,
    Commitments,
    PedersenShare,
    Polynomial,
    add_elements,
    check_feldman_share,
    check_pedersen_share,
    commitment_at,
    decode_element,
    feldman_commitments,
    interpolate,
    mul_base,
    pedersen_commitments,
)
from alliance_psi.crypto.threshold import MAX_CUSTODIANS
from alliance_psi.errors import CryptoError, InvalidShare, MalformedElement

__all__ = [
    "Dealing",
    "DkgOutcome",
    "DkgParameters",
    "DkgResult",
    "Disqualified",
    "Fault",
    "Participant",
    "decode_commitments",
    "judge_extraction",
    "outcome",
    "qualify",
    "reconstruct",
]


@dataclass(frozen=True, slots=True)
class DkgParameters:
    """``threshold`` (τ) of ``participants`` (n), with participants numbered ``1..n``."""

    threshold: int
    participants: int

    def __post_init__(self) -> None:
        if not 2 <= self.participants <= MAX_CUSTODIANS:
            raise ValueError(f"key generation needs 2 to {MAX_CUSTODIANS} custodians, not {self.participants}")
        if not 1 <= self.threshold <= self.participants:
            raise ValueError(f"the threshold must be 1 to {self.participants} (the custodians), not {self.threshold}")

    @property
    def degree(self) -> int:
        """``t = τ − 1``: the degree of every polynomial, and the most complaints a dealer survives."""
        return self.threshold - 1

    @property
    def indices(self) -> range:
        return range(1, self.participants + 1)


class Fault(enum.StrEnum):
    """Why a dealer was disqualified (``by`` in ``Disqualified`` names the custodians concerned)."""

    DEALT_NOTHING = "dealt nothing"
    MALFORMED_COMMITMENTS = "published malformed commitments"
    TOO_MANY_COMPLAINTS = "complaints from more than τ−1 custodians"
    UNANSWERED_COMPLAINT = "did not answer a complaint"
    BAD_ANSWER = "answered a complaint with a share that fails its commitments"
    EQUIVOCATED = "sent different commitments to different custodians"


@dataclass(frozen=True, slots=True)
class Disqualified:
    """A dealer left out of QUAL: the ``fault`` and the participants it concerns (complainers)."""

    fault: Fault
    by: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Dealing:
    """Step 1 of dealer ``dealer``: the commitments to broadcast and one private share per participant."""

    dealer: int
    commitments: Commitments
    shares: Mapping[int, PedersenShare] = field(repr=False)


def decode_commitments(items: Sequence[bytes], params: DkgParameters) -> Commitments:
    """Commitments as a peer sent them: exactly ``τ`` canonical non-identity elements.

    Raises:
        MalformedElement: a wrong count, or an element that ``decode_element`` refuses.
    """
    if len(items) != params.threshold:
        raise MalformedElement(f"expected {params.threshold} commitments (τ), got {len(items)}")
    return tuple(decode_element(item) for item in items)


def qualify(
    params: DkgParameters,
    commitments: Mapping[int, Commitments | None],
    complaints: Mapping[int, Iterable[int]],
    answers: Mapping[int, Mapping[int, PedersenShare]],
    *,
    equivocated: Iterable[int] = (),
) -> dict[int, Disqualified]:
    """Step 1(d): who is disqualified, from what was broadcast; QUAL is every other index.

    ``commitments`` maps each dealer to its broadcast commitments (None or absent: it dealt
    nothing), ``complaints`` each complainer to the dealers it complained against, ``answers``
    each dealer to its revealed shares by complainer, ``equivocated`` the dealers the broadcast
    layer caught sending different commitments. Every participant computes the same result from
    the same broadcast values.
    """
    disqualified: dict[int, Disqualified] = {i: Disqualified(Fault.EQUIVOCATED) for i in equivocated}
    against: dict[int, set[int]] = {i: set() for i in params.indices}
    for complainer, dealers in complaints.items():
        for dealer in dealers:
            if dealer != complainer and dealer in against:
                against[dealer].add(complainer)
    for dealer in params.indices:
        if dealer in disqualified:
            continue
        dealt = commitments.get(dealer)
        if dealt is None:
            disqualified[dealer] = Disqualified(Fault.DEALT_NOTHING)
            continue
        if len(dealt) != params.threshold:
            disqualified[dealer] = Disqualified(Fault.MALFORMED_COMMITMENTS)
            continue
        complainers = frozenset(against[dealer])
        if len(complainers) > params.degree:
            disqualified[dealer] = Disqualified(Fault.TOO_MANY_COMPLAINTS, complainers)
            continue
        given = answers.get(dealer, {})
        unanswered = frozenset(j for j in complainers if j not in given)
        if unanswered:
            disqualified[dealer] = Disqualified(Fault.UNANSWERED_COMPLAINT, unanswered)
            continue
        bad = frozenset(j for j in complainers if not _passes_pedersen(dealt, j, given[j]))
        if bad:
            disqualified[dealer] = Disqualified(Fault.BAD_ANSWER, bad)
    return disqualified


def judge_extraction(
    params: DkgParameters,
    qualified: Iterable[int],
    commitments: Mapping[int, Commitments],
    extraction: Mapping[int, Commitments | None],
    complaints: Mapping[int, Mapping[int, PedersenShare]],
) -> dict[int, frozenset[int]]:
    """Step 4(c): the qualified dealers whose polynomial must be reconstructed in the open.

    A dealer is, with the complainers that showed it, if it published no (or malformed) public
    coefficients ``A_i``, or if a complainer's revealed share passes the Pedersen check against
    its ``C_i`` and fails the Feldman check against its ``A_i``. A complaint whose share fails the
    Pedersen check is false and ignored (the complainer lied, not the dealer).
    """
    found: dict[int, frozenset[int]] = {}
    for dealer in qualified:
        published = extraction.get(dealer)
        if published is None or len(published) != params.threshold:
            found[dealer] = frozenset()
            continue
        shown = frozenset(
            complainer
            for complainer, evidence in complaints.items()
            if complainer != dealer
            and dealer in evidence
            and _passes_pedersen(commitments[dealer], complainer, evidence[dealer])
            and not _passes_feldman(published, complainer, evidence[dealer].value)
        )
        if shown:
            found[dealer] = shown
    return found


def reconstruct(params: DkgParameters, commitments: Commitments, revealed: Mapping[int, PedersenShare]) -> Commitments:
    """Step 4(c): a dealer's public coefficients ``A_k = a_k·G`` from the shares others revealed.

    Only shares that pass the Pedersen check count (binding: they lie on the committed
    polynomial); ``τ`` of them determine it.

    Raises:
        InvalidShare: fewer than ``τ`` revealed shares pass the check (more than ``n − τ``
            participants faulty: the key cannot be generated).
    """
    valid = {j: s.value for j, s in sorted(revealed.items()) if _passes_pedersen(commitments, j, s)}
    if len(valid) < params.threshold:
        raise InvalidShare(
            f"only {len(valid)} revealed shares pass the dealer's commitments; {params.threshold} (τ) are needed"
        )
    chosen = dict(list(valid.items())[: params.threshold])
    return feldman_commitments(interpolate(chosen))


@dataclass(frozen=True, slots=True)
class DkgOutcome:
    """The public result every participant computes alike.

    ``public_key`` is ``K = k·G``; ``verification_keys[m]`` is ``K_m = k_m·G`` for every index
    ``m`` (a disqualified dealer's too: it still received shares); ``disqualified`` the dealers
    left out of QUAL and why; ``reconstructed`` the qualified dealers whose coefficients were
    reconstructed in the open (their contribution is public).
    """

    params: DkgParameters
    qualified: frozenset[int]
    disqualified: Mapping[int, Disqualified]
    reconstructed: Mapping[int, frozenset[int]]
    public_key: bytes
    verification_keys: Mapping[int, bytes]


def outcome(
    params: DkgParameters,
    disqualified: Mapping[int, Disqualified],
    coefficients: Mapping[int, Commitments],
    reconstructed: Mapping[int, frozenset[int]],
) -> DkgOutcome:
    """``K = Σ_{i ∈ QUAL} A_i0`` and ``K_m = Σ_{i ∈ QUAL} Σ_k A_ik·m^k``, from the qualified
    dealers' public coefficients (published or reconstructed).

    Raises:
        CryptoError: QUAL is empty, or ``K`` is the identity (a zero key, which RFC 9497 refuses).
    """
    qualified = frozenset(params.indices) - frozenset(disqualified)
    if not qualified:
        raise CryptoError("every dealer was disqualified: no key")
    ordered = sorted(qualified)
    public_key = add_elements(*(coefficients[i][0] for i in ordered))
    if public_key == bytes(32):
        raise CryptoError("the generated key is zero")
    verification = {m: add_elements(*(commitment_at(coefficients[i], m) for i in ordered)) for m in params.indices}
    return DkgOutcome(params, qualified, dict(disqualified), dict(reconstructed), public_key, verification)


@dataclass(frozen=True, slots=True)
class DkgResult:
    """One participant's result: its ``index``, its secret ``share`` ``k_index`` (never shown) and the
    public ``outcome``."""

    index: int
    share: int = field(repr=False)
    outcome: DkgOutcome


class Participant:
    """Participant ``index`` of one key generation: its own polynomials and the shares dealt to it.

    The methods follow the steps in order (module docstring). ``polynomials`` fixes the dealer's
    ``(f, f')`` for tests with known polynomials; otherwise they are drawn at random. DO NOT SEND
    A SHARE TO ANY OTHER PARTY than the one ``deal`` names, and reveal one only as ``answer`` and
    ``reveal`` say.
    """

    def __init__(
        self, params: DkgParameters, index: int, *, polynomials: tuple[Polynomial, Polynomial] | None = None
    ) -> None:
        if index not in params.indices:
            raise ValueError(f"participant index {index} is not in 1..{params.participants}")
        if polynomials is None:
            polynomials = (Polynomial.random(params.degree), Polynomial.random(params.degree))
        elif any(p.degree != params.degree for p in polynomials):
            raise ValueError(f"polynomials must have degree τ−1 = {params.degree}")
        self.params, self.index = params, index
        self._f, self._f_blinding = polynomials
        self._commitments: dict[int, Commitments] = {}
        self._shares: dict[int, PedersenShare] = {}  # Shares that passed their dealer's check.
        self._complaints: set[int] = set()
        self._qualified: frozenset[int] | None = None

    def deal(self) -> Dealing:
        """Step 1: commitments to broadcast and the share for each participant (this one's included)."""
        shares = {j: PedersenShare(self._f(j), self._f_blinding(j)) for j in self.params.indices}
        return Dealing(self.index, pedersen_commitments(self._f, self._f_blinding), shares)

    def receive(self, dealer: int, commitments: Commitments | None, share: PedersenShare | None) -> None:
        """Step 1(b): what ``dealer`` broadcast and sent here. A share that is missing or fails the
        check against the commitments becomes a complaint; no commitments at all is no complaint
        (the dealer is disqualified in the open)."""
        if commitments is None:
            return
        self._commitments[dealer] = commitments
        if share is not None and _passes_pedersen(commitments, self.index, share):
            self._shares[dealer] = share
        elif dealer != self.index:
            self._complaints.add(dealer)

    @property
    def complaints(self) -> frozenset[int]:
        """The dealers this participant complains against (to broadcast)."""
        return frozenset(self._complaints)

    def answer(self, complainers: Iterable[int]) -> dict[int, PedersenShare]:
        """Step 1(c): this dealer's shares for the participants that complained against it, to broadcast."""
        return {j: PedersenShare(self._f(j), self._f_blinding(j)) for j in complainers if j in self.params.indices}

    def adopt(
        self, disqualified: Mapping[int, Disqualified], answers: Mapping[int, Mapping[int, PedersenShare]]
    ) -> None:
        """Step 2: fix QUAL and take, from each qualified dealer complained against, its answer.

        Raises:
            InvalidShare: a qualified dealer's share is still missing (the broadcast was not the same
                for everyone: ``qualify`` keeps a dealer only with a valid answer to each complaint).
        """
        qualified = frozenset(self.params.indices) - frozenset(disqualified)
        for dealer in qualified:
            if dealer in self._shares:
                continue
            share = answers.get(dealer, {}).get(self.index)
            commitments = self._commitments.get(dealer)
            if share is None or commitments is None or not _passes_pedersen(commitments, self.index, share):
                raise InvalidShare(f"no valid share from qualified dealer {dealer}")
            self._shares[dealer] = share
        self._qualified = qualified

    def extraction(self) -> Commitments:
        """Step 4(a): this dealer's public coefficients ``A_k = a_k·G`` (broadcast once QUAL is fixed)."""
        self._require_qualified()
        return feldman_commitments(self._f)

    def check_extraction(self, extraction: Mapping[int, Commitments | None]) -> dict[int, PedersenShare]:
        """Step 4(b): the complaints to broadcast: for each qualified dealer whose published ``A_i``
        this participant's share fails, that share (its evidence)."""
        qualified = self._require_qualified()
        evidence = {}
        for dealer in sorted(qualified - {self.index}):
            published = extraction.get(dealer)
            share = self._shares[dealer]
            if published is not None and len(published) == self.params.threshold:
                if _passes_feldman(published, self.index, share.value):
                    continue
                evidence[dealer] = share
        return evidence

    def reveal(self, dealers: Iterable[int]) -> dict[int, PedersenShare]:
        """Step 4(c): this participant's shares from ``dealers`` (to be reconstructed), to broadcast."""
        return {dealer: self._shares[dealer] for dealer in dealers if dealer in self._shares}

    def result(self, public: DkgOutcome) -> DkgResult:
        """This participant's share ``k_j = Σ_{i ∈ QUAL} s_ij`` with the public outcome.

        Raises:
            InvalidShare: ``k_j·G`` is not ``K_j`` (the broadcast was not the same for everyone).
        """
        qualified = self._require_qualified()
        if qualified != public.qualified:
            raise InvalidShare("the outcome's qualified dealers are not the ones this participant adopted")
        share = sum(self._shares[dealer].value for dealer in qualified) % ORDER
        if mul_base(share) != public.verification_keys[self.index]:
            raise InvalidShare(f"participant {self.index}'s share does not match its public key share")
        return DkgResult(self.index, share, public)

    def _require_qualified(self) -> frozenset[int]:
        if self._qualified is None:
            raise CryptoError("QUAL is not fixed yet: call adopt first")
        return self._qualified


def _passes_pedersen(commitments: Commitments, x: int, share: PedersenShare) -> bool:
    try:
        check_pedersen_share(commitments, x, share)
    except InvalidShare:
        return False
    return True


def _passes_feldman(coefficients: Commitments, x: int, value: int) -> bool:
    try:
        check_feldman_share(coefficients, x, value)
    except InvalidShare:
        return False
    return True
