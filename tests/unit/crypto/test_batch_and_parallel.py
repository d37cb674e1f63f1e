"""Batch blinding and the streaming process-pool pipeline agree with the one-element RFC functions."""

from __future__ import annotations

import logging

import pytest

from alliance_psi.crypto import oprf
from alliance_psi.crypto.batch import blind_batch, derive_batch_blind, finalize_and_derive_batch, finalize_batch
from alliance_psi.crypto.derive import derive
from alliance_psi.crypto.key_shares import KeyShare, combine_shares_for_testing
from alliance_psi.crypto.parallel import ProcessMap, available_cores, chunked, tokenize, usable_workers
from alliance_psi.errors import CryptoError, MalformedElement

SHARES = [KeyShare.generate("e"), KeyShare.generate("e")]
KEY = combine_shares_for_testing(SHARES)


def custodians(elements):  # type: ignore[no-untyped-def]
    for share in SHARES:
        elements = share.blind_evaluate(elements)
    return elements


def inputs(n: int) -> list[bytes]:
    return [b"phone\x00+86138%08d" % i for i in range(n)]


def test_batch_matches_single_evaluation() -> None:
    xs = inputs(20)
    blinded = blind_batch(xs)
    outputs = finalize_batch(xs, blinded.blind, custodians(blinded.blinded_elements))
    assert outputs == [oprf.evaluate(KEY, x) for x in xs]


def test_batch_with_rfc_blind_matches_rfc_blind() -> None:
    r = bytes.fromhex("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706")
    assert blind_batch([b"\x00"], r).blinded_elements[0] == oprf.blind(b"\x00", r).blinded_element


def test_duplicate_inputs_in_a_batch_refused() -> None:
    with pytest.raises(ValueError, match="same input twice"):
        blind_batch([b"a", b"b", b"a"])


def test_finalize_refuses_wrong_count_and_bad_elements() -> None:
    xs = inputs(3)
    blinded = blind_batch(xs)
    evaluated = custodians(blinded.blinded_elements)
    with pytest.raises(MalformedElement, match="expected 3 evaluated elements, got 2"):
        finalize_batch(xs, blinded.blind, evaluated[:2])
    with pytest.raises(MalformedElement, match="identity"):
        finalize_batch(xs, blinded.blind, [evaluated[0], bytes(32), evaluated[2]])


def test_derived_batch_matches_derive() -> None:
    xs = inputs(5)
    blinded = blind_batch(xs)
    derived = finalize_and_derive_batch(xs, blinded.blind, custodians(blinded.blinded_elements))
    expected = [derive(oprf.evaluate(KEY, x)) for x in xs]
    assert list(derived.match_tokens) == [d.match_token for d in expected]
    assert list(derived.label_keys) == [d.label_key for d in expected]


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "two-processes"])
def test_tokenize_streams_in_order(workers: int) -> None:
    xs = inputs(700)
    calls: list[int] = []

    def evaluate(elements):  # type: ignore[no-untyped-def]
        calls.append(len(elements))
        return custodians(elements)

    with ProcessMap(workers) as pool:
        results = list(tokenize(iter(xs), evaluate, pool=pool, batch_size=64))
    assert [x for batch, _ in results for x in batch] == xs
    tokens = [t for _, derived in results for t in derived.match_tokens]
    assert tokens == [derive(oprf.evaluate(KEY, x)).match_token for x in xs]
    assert sorted(calls) == [60] + [64] * 10  # Evaluations may overlap, so any order.


def test_tokenize_propagates_custodian_errors() -> None:
    def broken(elements):  # type: ignore[no-untyped-def]
        return [bytes(32)] * len(elements)

    with ProcessMap(2) as pool, pytest.raises(MalformedElement):
        list(tokenize(inputs(10), broken, pool=pool, batch_size=4))


def test_tokenize_keeps_a_bounded_window() -> None:
    # The generator may read ahead at most `window` batches before the first result is consumed.
    consumed = 0

    def source():  # type: ignore[no-untyped-def]
        nonlocal consumed
        for x in inputs(10_000):
            consumed += 1
            yield x

    with ProcessMap(1) as pool:
        stream = tokenize(source(), custodians, pool=pool, batch_size=10, window=3)
        next(stream)
        assert consumed <= 10 * 4


def test_chunked() -> None:
    assert list(chunked(range(5), 2)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        list(chunked([1], 0))


def test_zero_blind_refused() -> None:
    with pytest.raises(CryptoError, match="zero scalar"):
        blind_batch([b"a"], bytes(32))


def test_keyed_blinds_repeat_a_batch_exactly_and_nothing_else() -> None:
    key, other_key = b"\x11" * 32, b"\x22" * 32
    xs = inputs(8)
    first = blind_batch(xs, blind_key=key, context=b"2026q4")
    assert blind_batch(xs, blind_key=key, context=b"2026q4") == first  # A re-sent batch is byte-identical.
    # Another key, epoch, order or one input more or less: another blind, no element in common.
    for other in (
        blind_batch(xs, blind_key=other_key, context=b"2026q4"),
        blind_batch(xs, blind_key=key, context=b"2027q1"),
        blind_batch(xs[::-1], blind_key=key, context=b"2026q4"),
        blind_batch(xs[:-1], blind_key=key, context=b"2026q4"),
    ):
        assert other.blind != first.blind
        assert not set(other.blinded_elements) & set(first.blinded_elements)
    # And it is a correct blind: the OPRF output is the unkeyed one.
    assert finalize_batch(xs, first.blind, custodians(first.blinded_elements)) == [oprf.evaluate(KEY, x) for x in xs]
    with pytest.raises(ValueError, match="32 bytes"):
        derive_batch_blind(b"short", b"", xs)


def test_tokenize_with_a_blind_key_sends_the_same_requests_twice() -> None:
    sent: list[list[tuple[bytes, ...]]] = [[], []]
    for run in (0, 1):

        def evaluate(elements, run=run):  # type: ignore[no-untyped-def]
            sent[run].append(tuple(elements))
            return custodians(elements)

        with ProcessMap(1) as pool:
            list(tokenize(iter(inputs(30)), evaluate, pool=pool, batch_size=8, blind_key=b"\x33" * 32))
    # The same batches, byte for byte (in whatever order the pipeline sent them).
    assert sorted(sent[0]) == sorted(sent[1]) and sum(map(len, sent[0])) == 30


@pytest.mark.parametrize("workers", [0, -1])
def test_a_worker_count_below_one_is_refused_naming_it(workers: int) -> None:
    with pytest.raises(ValueError, match=f"worker processes must be at least 1, got {workers}"):
        usable_workers(workers)


def test_more_workers_than_cores_are_clamped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    cores = available_cores()
    with caplog.at_level(logging.WARNING, logger="alliance_psi.crypto.parallel"):
        assert usable_workers(cores) == cores
        assert not caplog.records
        assert usable_workers(cores + 5) == cores
    assert caplog.messages == [
        f"{cores + 5} worker processes asked for, but only {cores} cores are available: using {cores}"
    ]
    assert usable_workers(None) == cores
    with ProcessMap(cores + 1) as pool:
        assert pool.workers == cores
