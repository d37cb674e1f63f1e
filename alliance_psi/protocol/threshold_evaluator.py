"""The member's side of threshold custody: τ of n custodians at once, hedged, checked, combined.

``ThresholdEvaluator`` is the member role's ``Evaluator`` for a threshold epoch (docs/design.md,
"Threshold custody"). For each batch of blinded elements it asks ``τ`` custodians in parallel,
naming that subset; each answers ``λ_i·k_i·B``; their sum is ``k·B``, which the member unblinds as
before. A custodian that fails (after its client's retries with back-off) is replaced by a further
one, and one that is slow (no answer after ``hedge_after`` seconds) gets a further one asked
beside it: the first ``τ`` good answers win. An answer for another subset than the one finally
used is converted with the public Lagrange coefficients (one scalar multiplication per element).
Custodians that could not be reached, or whose certificate was not the one expected, are left out
of the first choice for ``down_for`` seconds; custodians caught answering wrongly, or refusing for
good (quota spent, not enrolled, another epoch), are excluded for the evaluator's life and named
in every later error.

Verification (``VerifyMode``):

- ``proof``: each custodian proves its batch (RFC 9497 batched DLEQ proof against ``λ_i·K_i``,
  with ``K_i`` from the public epoch file). Detects any wrong answer from any custodian, names it
  at once. Costs the member two scalar multiplications per element per custodian.
- ``sample`` (default): ``THRESHOLD_SAMPLE`` random elements of each batch also go to one further
  custodian, which proves its answers for them (a DLEQ proof over the sample: a few dozen scalar
  multiplications per batch); the ``τ + 1`` answers for them must lie on one polynomial of degree
  ``τ − 1`` (every ``τ``-subset gives the same value). A custodian that answers a fraction ``f`` of
  a batch wrongly escapes with probability ``(1 − f)^sample`` per batch, unless the further
  custodian colludes with it (the sampled elements are the batch's own, in the same blinding, so
  the batch's custodians cannot tell them); a wrong share (``f = 1``), or an impostor without the
  share, is caught on the first batch. On a disagreement every custodian involved is asked again
  with proofs: whoever's proof fails, or whose proven answer differs from its unproven one, is
  excluded and named, and the batch is evaluated again. A batch is never accepted unchecked: with
  no further custodian usable (only ``τ`` left), or no good answer from it, the batch is proven.
- ``none``: no check (benchmarks only). A wrong answer gives wrong tokens, unnoticed.

The sums are checked (no identity), every element received is checked as a group element, and a
custodian is never asked by anything but its certificate name (the client's job).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum

from alliance_psi.crypto.dleq import verify_proof
from alliance_psi.crypto.threshold import combine, interpolate_elements, lagrange_coefficient
from alliance_psi.crypto.threshold_keys import PublicEpoch
from alliance_psi.defaults import CUSTODIAN_DOWN_SECONDS, HEDGE_AFTER_SECONDS, THRESHOLD_SAMPLE
from alliance_psi.errors import (
    AlliancePsiError,
    ConfigurationError,
    CryptoError,
    InvalidProof,
    MalformedElement,
    PeerUnavailable,
    RequestError,
    WrongEpoch,
)
from alliance_psi.protocol.custodian import Evaluation
from alliance_psi.protocol.custodian_health import CustodianHealth
from alliance_psi.protocol.ports import CustodianCalls

__all__ = ["ThresholdEvaluator", "VerifyMode"]


class VerifyMode(StrEnum):
    """How a member checks its custodians' answers (see the module docstring)."""

    SAMPLE = "sample"
    PROOF = "proof"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class _Answer:
    """One custodian's checked answer: ``elements[j] = λ_i^subset · k_i · B[j]``."""

    index: int
    subset: tuple[int, ...]
    elements: list[bytes]


@dataclass(frozen=True, slots=True)
class _Sample:
    """A sample of a batch asked of one further custodian, for ``subset``, at ``positions``."""

    index: int
    subset: tuple[int, ...]
    positions: list[int]
    elements: list[bytes]
    future: Future[Evaluation]


def _silent(message: str) -> None:
    return None


class ThresholdEvaluator:
    """The member role's ``Evaluator`` over the custodians of one threshold epoch.

    ``custodians`` are clients of the epoch's custodians in the member's order of preference
    (each named as in ``public``; at least ``τ`` of them). ``report`` receives one line per event
    a person should know of (a custodian down, slow, excluded), each once. Safe to call from
    several threads at once (the member pipeline evaluates two batches at a time).

    Raises (constructor):
        ConfigurationError: a custodian that ``public`` does not name, one named twice, or fewer
            than ``τ`` custodians.
    """

    def __init__(
        self,
        public: PublicEpoch,
        custodians: Sequence[CustodianCalls],
        *,
        verify: VerifyMode = VerifyMode.SAMPLE,
        sample_size: int = THRESHOLD_SAMPLE,
        hedge_after: float = HEDGE_AFTER_SECONDS,
        down_for: float = CUSTODIAN_DOWN_SECONDS,
        report: Callable[[str], None] = _silent,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.public, self.verify, self.sample_size = public, VerifyMode(verify), sample_size
        self.hedge_after, self.clock = hedge_after, clock
        self.suite = public.suite
        self._calls: dict[int, CustodianCalls] = {}
        for client in custodians:
            index = public.by_name(client.name).index
            if index in self._calls:
                raise ConfigurationError(f"custodian {client.name} is configured twice")
            self._calls[index] = client
        if len(self._calls) < public.threshold:
            raise ConfigurationError(
                f"epoch {public.epoch!r} needs {public.threshold} custodians; the node lists {len(self._calls)}"
            )
        names = {c.index: c.name for c in public.custodians}
        self.health = CustodianHealth(list(self._calls), names, down_for=down_for, report=report, clock=clock)
        self._pool = ThreadPoolExecutor(max_workers=4 * len(self._calls) + 2, thread_name_prefix="custodian")
        self._random = secrets.SystemRandom()
        self._generator = self.suite.scalar_mult_base(self.suite.scalar_from_int(1))

    def _name(self, index: int) -> str:
        return self.public.by_index(index).name

    @property
    def excluded(self) -> dict[str, str]:
        """The custodians excluded so far, by name, with the reason."""
        return self.health.excluded

    def _unavailable(self, failures: dict[int, str], answered: int) -> PeerUnavailable:
        return self.health.unavailable(failures, answered, epoch=self.public.epoch, threshold=self.public.threshold)

    # The epoch -----------------------------------------------------------------------------------

    def key_epochs(self) -> list[str]:
        """``[epoch]`` once ``τ`` custodians serve the public file's epoch with their commitment in it.

        Custodians serving another share (another ``K_i``, index or size) are excluded and named;
        unreachable ones are marked down. When fewer than ``τ`` serve the epoch but others serve
        another epoch, returns the epochs served (so the caller can name them).

        Raises:
            PeerUnavailable: fewer than ``τ`` custodians answer, naming each one that did not.
        """
        public = self.public
        futures = {self._pool.submit(self._calls[i].epoch): i for i in self.health.candidates(set())}
        failures: dict[int, str] = {}
        good: list[int] = []
        others: set[str] = set()
        enough_at: float | None = None
        pending = set(futures)
        while pending:
            timeout = None if enough_at is None else max(0.0, enough_at + self.hedge_after - self.clock())
            done, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            if not done:
                break  # τ serve the epoch; the rest are slow and are left for later batches.
            for future in done:
                index = futures[future]
                try:
                    status = future.result()
                except RequestError as exc:  # Not enrolled there, or another refusal for good.
                    failures[index] = str(exc)
                    self.health.exclude(index, str(exc))
                    continue
                except AlliancePsiError as exc:
                    failures[index] = str(exc)
                    self.health.mark_down(index, str(exc))
                    continue
                entry = public.by_index(index)
                if status.key_epoch != public.epoch:
                    failures[index] = f"serves key epoch {status.key_epoch!r}, not {public.epoch!r}"
                    others.add(status.key_epoch)
                    self.health.exclude(index, failures[index])
                elif (status.index, status.threshold, status.custodian_count, status.commitment) != (
                    entry.index,
                    public.threshold,
                    public.n,
                    entry.commitment,
                ):
                    failures[index] = (
                        f"serves share {status.index} of {status.threshold}-of-{status.custodian_count} with "
                        f"another commitment than custodian {entry.index} of the public epoch file "
                        f"(fingerprint {public.fingerprint()})"
                    )
                    self.health.exclude(index, failures[index])
                else:
                    good.append(index)
            if len(good) >= public.threshold and enough_at is None:
                enough_at = self.clock()
        if len(good) >= public.threshold:
            return [public.epoch]
        if others:
            return sorted(others)
        raise self._unavailable(failures, len(good))

    # Evaluation ----------------------------------------------------------------------------------

    def evaluate(self, key_epoch: str, elements: Sequence[bytes]) -> list[bytes]:
        """``k·B`` for each blinded element ``B``: ``τ`` custodians' folded answers, checked and added.

        Raises:
            WrongEpoch: ``key_epoch`` is not the public file's epoch.
            PeerUnavailable: fewer than ``τ`` custodians gave a good answer; names each other one
                with its reason (down, refused, excluded for a wrong answer).
            MalformedElement: the answers add up to the identity (no honest set does).
        """
        if key_epoch != self.public.epoch:
            raise WrongEpoch(f"the public epoch file is for key epoch {self.public.epoch!r}, not {key_epoch!r}")
        batch = list(elements)
        tau = self.public.threshold
        prove = self.verify is VerifyMode.PROOF
        for _ in range(len(self._calls) + 2):  # Each pass excludes a custodian, turns to proofs or returns.
            first = self.health.candidates(set())[:tau]
            if len(first) < tau:
                raise self._unavailable({}, 0)
            sample = self._sample(batch, first) if self.verify is VerifyMode.SAMPLE and not prove else None
            # Without a further custodian for the sample, the batch is proven instead.
            prove = prove or (self.verify is VerifyMode.SAMPLE and sample is None)
            answers = self._gather(batch, first, prove=prove)
            if sample is not None:
                agreed = self._sample_agrees(batch, answers, sample)
                if agreed is None:  # No further custodian's answer to check them with: prove them.
                    prove = True
                if not agreed:
                    continue
            final = tuple(sorted(answers)[:tau])
            return combine([self._converted(answers[i], final) for i in final], suite=self.suite)
        raise CryptoError("custodians kept disagreeing after every faulty one was excluded")

    def _ask(self, index: int, batch: Sequence[bytes], subset: tuple[int, ...], prove: bool) -> Future[Evaluation]:
        client = self._calls[index]
        return self._pool.submit(client.evaluate_folded, self.public.epoch, batch, subset=subset, prove=prove)

    def _subset_with(self, index: int, keep: Sequence[int]) -> tuple[int, ...]:
        """``index`` and the first others of ``keep``, then of all custodians: ``τ`` distinct indexes."""
        chosen = [index]
        for other in [*keep, *range(1, self.public.n + 1)]:
            if len(chosen) == self.public.threshold:
                break
            if other not in chosen:
                chosen.append(other)
        return tuple(sorted(chosen))

    def _checked(
        self, index: int, subset: tuple[int, ...], batch: Sequence[bytes], got: Evaluation, prove: bool
    ) -> _Answer:
        """The answer with every element checked, and its proof if one was asked for.

        Raises ``MalformedElement`` or ``InvalidProof`` naming what is wrong.
        """
        if len(got.elements) != len(batch):
            raise MalformedElement(f"answered {len(got.elements)} elements for a batch of {len(batch)}")
        elements = [self.suite.deserialize_element(e) for e in got.elements]
        if prove:
            folded_key = self.suite.scalar_mult(
                lagrange_coefficient(index, subset, suite=self.suite), self.public.by_index(index).commitment
            )
            verify_proof(self._generator, folded_key, batch, elements, got.proof, suite=self.suite)
        return _Answer(index, subset, elements)

    def _gather(self, batch: Sequence[bytes], first: list[int], *, prove: bool) -> dict[int, _Answer]:
        """Good answers of at least ``τ`` custodians for ``batch``, from ``first`` on, hedging and
        replacing as needed."""
        tau = self.public.threshold
        answers: dict[int, _Answer] = {}
        failures: dict[int, str] = {}
        pending: dict[Future[Evaluation], tuple[int, tuple[int, ...]]] = {}
        for index in first:
            pending[self._ask(index, batch, tuple(sorted(first)), prove)] = (index, tuple(sorted(first)))

        def launch(avoid_slow: int | None) -> bool:
            asked = {i for i, _ in pending.values()} | set(answers) | set(failures)
            spare = self.health.candidates(asked)
            if not spare:
                return False
            keep = [*answers, *(i for i, _ in pending.values() if i != avoid_slow)]
            subset = self._subset_with(spare[0], keep)
            pending[self._ask(spare[0], batch, subset, prove)] = (spare[0], subset)
            return True

        while len(answers) < tau:
            if len(answers) + len(pending) < tau and not launch(None) and not pending:
                raise self._unavailable(failures, len(answers))
            if not pending:
                continue
            done, _ = wait(list(pending), timeout=self.hedge_after, return_when=FIRST_COMPLETED)
            if not done:
                slow = [i for i, _ in pending.values()]
                if launch(slow[0]):
                    self.health.say(f"custodian {', '.join(self._name(i) for i in slow)} slow: asking another one too")
                continue
            for future in done:
                index, subset = pending.pop(future)
                try:
                    answers[index] = self._checked(index, subset, batch, future.result(), prove)
                except RequestError as exc:
                    failures[index] = str(exc)
                    self.health.exclude(index, str(exc))
                except PeerUnavailable as exc:  # HandshakeFailed too: a server dying mid-handshake looks so.
                    failures[index] = str(exc)
                    self.health.mark_down(index, str(exc))
                except (MalformedElement, InvalidProof) as exc:
                    failures[index] = f"its answer is wrong: {exc}"
                    self.health.exclude(index, failures[index])
        return answers

    def _converted(self, answer: _Answer, final: tuple[int, ...]) -> list[bytes]:
        """``answer`` for the subset ``final``: times ``λ_i^final / λ_i^subset`` if the subsets differ."""
        if answer.subset == final:
            return answer.elements
        suite, i = self.suite, answer.index
        factor = suite.scalar_mul(
            lagrange_coefficient(i, final, suite=suite),
            suite.scalar_inverse(lagrange_coefficient(i, answer.subset, suite=suite)),
        )
        return [suite.scalar_mult(factor, e) for e in answer.elements]

    # The sample check ----------------------------------------------------------------------------

    def _sample(self, batch: Sequence[bytes], first: list[int]) -> _Sample | None:
        """Ask one custodian beyond ``first`` for a random sample of ``batch`` (None if there is none)."""
        spare = self.health.candidates(set(first), down_too=False)
        if not spare:
            self.health.say(
                f"only {len(first)} custodians are usable, too few for the sample check: every batch is proven "
                "until another one is back"
            )
            return None
        extra = spare[0]
        positions = sorted(self._random.sample(range(len(batch)), min(self.sample_size, len(batch))))
        elements = [batch[p] for p in positions]
        subset = self._subset_with(extra, first)
        return _Sample(extra, subset, positions, elements, self._ask(extra, elements, subset, True))

    def _unfolding(self, index: int, subset: tuple[int, ...]) -> bytes:
        """``1 / λ_i^subset``: turns custodian ``index``'s answer ``λ_i·k_i·B`` into ``k_i·B``."""
        return self.suite.scalar_inverse(lagrange_coefficient(index, subset, suite=self.suite))

    def _sample_agrees(self, batch: list[bytes], answers: dict[int, _Answer], sample: _Sample) -> bool | None:
        """Whether the further custodian's answers for the sample agree with ``answers``.

        True when they agree; False when they do not, once the custodians at fault are excluded;
        None when there is no further custodian's answer to check them with (it answered for the
        batch itself, in place of another, or gave no good answer: then it is marked down or
        excluded). The caller asks the batch again: never accepted unchecked.
        """
        extra = sample.index
        if extra in answers:  # It replaced a custodian of the batch: no fresh voice for the sample.
            return None
        try:
            got = sample.future.result(timeout=self.hedge_after)
            checked = self._checked(extra, sample.subset, sample.elements, got, True)
        except TimeoutError:
            self.health.mark_down(extra, "no answer to the sample check in time")
            return None
        except PeerUnavailable as exc:
            self.health.mark_down(extra, str(exc))
            return None
        except RequestError as exc:
            self.health.exclude(extra, f"refused the sample check: {exc}")
            return None
        except (MalformedElement, InvalidProof) as exc:
            self.health.exclude(extra, f"its answer is wrong: {exc}")
            return None
        mult = self.suite.scalar_mult
        voices = {
            i: (self._unfolding(i, a.subset), [a.elements[p] for p in sample.positions]) for i, a in answers.items()
        }
        voices[extra] = (self._unfolding(extra, sample.subset), checked.elements)
        base = sorted(answers)[: self.public.threshold]
        for k in range(len(sample.positions)):
            points = [(i, mult(voices[i][0], voices[i][1][k])) for i in base]
            for j, (unfold, said) in voices.items():
                if j not in base and interpolate_elements(points, j, suite=self.suite) != mult(unfold, said[k]):
                    self._find_faulty(batch, answers, checked, sample.elements)
                    return False
        return True

    def _find_faulty(
        self, batch: list[bytes], answers: dict[int, _Answer], sample: _Answer, sampled: list[bytes]
    ) -> None:
        """After a disagreement: ask each custodian involved again, with a proof, and exclude the liars.

        A custodian is at fault if its proof fails or its proven answer differs from what it said
        without one. Raises ``CryptoError`` if no one is (the public file would be inconsistent,
        which loading it refuses).
        """
        involved = [(a.index, a.subset, batch, a.elements) for a in answers.values()]
        involved.append((sample.index, sample.subset, sampled, sample.elements))
        futures = {
            self._ask(i, elements, subset, True): (i, subset, elements, said) for i, subset, elements, said in involved
        }
        found, unknown = False, False
        for future, (index, subset, elements, said) in futures.items():
            try:
                proven = self._checked(index, subset, elements, future.result(), True)
            except (InvalidProof, MalformedElement) as exc:
                self.health.exclude(
                    index, f"its answers disagree with the other custodians' and its proof fails: {exc}"
                )
                found = True
                continue
            except AlliancePsiError as exc:
                self.health.mark_down(index, str(exc))
                unknown = True
                continue
            if proven.elements != said:
                self.health.exclude(
                    index, "it answered differently without a proof than with one (it evaluated wrongly)"
                )
                found = True
        if not found and not unknown:
            raise CryptoError(
                "custodians' answers disagree, yet each proves its own: check the public epoch file "
                f"(fingerprint {self.public.fingerprint()})"
            )

    def close(self) -> None:
        """Stop waiting for calls still in flight (their clients are closed by their owner)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
