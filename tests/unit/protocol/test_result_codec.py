"""Signed results as Merkle trees: canonical headers and leaves, strict parsing, streamed checks of
every page, one lead proven alone, and every way a result can be refused."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.crypto.merkle import MemoryTree, leaf_hash
from alliance_psi.crypto.signing import SigningKey, load_public_key, verify
from alliance_psi.errors import ConfigurationError, InvalidRequest, InvalidSignature, ResultMismatch
from alliance_psi.protocol.checkpoints import SignedCheckpoint, sign_checkpoint
from alliance_psi.protocol.model import MatchedToken, MemberResult, PeerLabel
from alliance_psi.protocol.result_codec import (
    LeafPage,
    LeafProof,
    LeafVerifier,
    ResultBuilder,
    ResultHeader,
    check_issue_entry,
    decode_header,
    decode_leaf,
    encode_header,
    encode_leaf,
    holder_leaves,
    lead_proofs,
    open_header,
    reopen_result,
    result_tree,
    sign_header,
    verify_lead,
)

KEY = SigningKey.generate()
A, B = b"\x01" * 16, b"\x02" * 16
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# The audit log a coordinator signed after matching: entry 1 issued bank-a's result (see
# ``test_the_result_is_checked_against_its_audit_log_entry``; elsewhere only the signature counts).
CHECKPOINT = sign_checkpoint(KEY, "coordinator", 3, bytes(32), T0)


def tree(
    r: MemberResult, checkpoint: SignedCheckpoint = CHECKPOINT, audit_index: int = 1
) -> tuple[ResultHeader, tuple[bytes, ...]]:
    return result_tree(r, checkpoint=checkpoint, audit_index=audit_index)


def result(**overrides) -> MemberResult:  # type: ignore[no-untyped-def]
    fields = {
        "round_id": "r-1",
        "member_id": "bank-a",
        "key_epoch": "e1",
        "threshold": 2,
        "submitted_count": 3,
        "matches": (
            MatchedToken(B, 3, (PeerLabel(b"L2", "bank-c"), PeerLabel(b"L1"))),
            MatchedToken(A, 2, ()),
        ),
    }
    fields.update(overrides)
    return MemberResult(**fields)  # type: ignore[arg-type]


def signed(r: MemberResult | None = None) -> tuple[bytes, bytes, tuple[bytes, ...]]:
    header, leaves = tree(r or result())
    s = sign_header(KEY, header)
    return s.header, s.signature, leaves


def test_leaves_are_canonical_whatever_the_order() -> None:
    labels = (PeerLabel(b"L2", "bank-c"), PeerLabel(b"L1"))
    one, other = MatchedToken(B, 3, labels), MatchedToken(B, 3, tuple(reversed(labels)))
    assert encode_leaf(one) == encode_leaf(other)
    assert decode_leaf(encode_leaf(one)).peer_labels == (PeerLabel(b"L1"), PeerLabel(b"L2", "bank-c"))
    # Tokens in order, whatever the order of the matches in memory.
    assert tree(result()) == tree(result(matches=tuple(reversed(result().matches))))
    assert [decode_leaf(leaf).match_token for leaf in tree(result())[1]] == [A, B]


tokens = st.binary(min_size=16, max_size=16)
labels = st.lists(
    st.tuples(st.binary(min_size=0, max_size=40), st.sampled_from([None, "bank-b", "某银行"])), max_size=3
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(tokens, st.tuples(st.integers(2, 50), labels), max_size=8), st.integers(0, 2**40))
def test_round_trip_and_streamed_check(entries, submitted) -> None:  # type: ignore[no-untyped-def]
    matches = tuple(
        MatchedToken(t, c, tuple(sorted((PeerLabel(s, n) for s, n in ls), key=lambda p: (p.sealed, p.sealer or ""))))
        for t, (c, ls) in sorted(entries.items())
    )
    original = result(submitted_count=submitted, matches=matches)
    header, leaves = tree(original)
    assert decode_header(encode_header(header)) == header
    assert tuple(decode_leaf(leaf) for leaf in leaves) == matches
    assert reopen_result(KEY.public_key, *signed(original)[:2], leaves, round_id="r-1", member_id="bank-a") == original


holder_labels = st.lists(
    st.one_of(
        st.none(),
        st.builds(
            PeerLabel,
            st.sampled_from([b"", b"L1", b"L2", b"\xff" * 3]),
            st.sampled_from([None, "", "bank-b", "某银行"]),
        ),
    ),
    min_size=1,
    max_size=7,
)


@settings(max_examples=200)
@given(tokens, st.integers(1, 2**32 - 1), holder_labels)
def test_holder_leaves_are_each_holders_canonical_leaf(token, count, labels) -> None:  # type: ignore[no-untyped-def]
    """What the coordinator's matching step builds for every holder of a token at once is, for
    each holder, the canonical leaf of its match: every other holder's label, none of its own
    (equal labels, unnamed sealers and holders without a label included)."""
    leaves = holder_leaves(token, count, labels)
    assert len(leaves) == len(labels)
    for holder, leaf in enumerate(leaves):
        peers = tuple(label for other, label in enumerate(labels) if other != holder and label is not None)
        assert leaf == encode_leaf(MatchedToken(token, count, peers))


def test_a_prebuilt_leaf_adds_as_its_match_would() -> None:
    matches = [MatchedToken(i.to_bytes(16, "big"), 3, (PeerLabel(b"L", "bank-b"),) * (i % 3)) for i in range(300)]
    built, prebuilt = ResultBuilder(page_bytes=1024), ResultBuilder(page_bytes=1024)
    pages = [built.add(match) for match in matches]
    prebuilt_pages = [
        prebuilt.add_leaf(encode_leaf(match), leaf_hash(encode_leaf(match)) if i % 2 else None)
        for i, match in enumerate(matches)
    ]
    assert pages == prebuilt_pages and built.finish() == prebuilt.finish() and built.root() == prebuilt.root()


def test_pages_stay_small_and_check_out() -> None:
    many = tuple(MatchedToken(i.to_bytes(16, "big"), 2, (PeerLabel(bytes(SEALED_LABEL_BYTES)),)) for i in range(3000))
    builder, pages = ResultBuilder(page_bytes=64 * 1024), []
    for match in many:
        if (page := builder.add(match)) is not None:
            pages.append(page)
    pages.append(builder.finish())
    header, _ = tree(result(matches=many))
    assert builder.root() == header.root and builder.count == 3000
    assert len(pages) > 10 and all(sum(len(leaf) for leaf in p.leaves) <= 64 * 1024 for p in pages if p)
    verifier = LeafVerifier(header)
    for page in pages:
        assert page is not None
        verifier.add(page)
    verifier.finish()


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda p: p[:-1], "truncated"),
        (lambda p: p + b"\x00", "not in canonical form"),
        (lambda p: b"APSI-RESULT\x03" + p[12:], "unknown format or version"),
        (lambda p: b"", "truncated"),
    ],
    ids=["truncated", "trailing", "old-version", "empty"],
)
def test_malformed_headers_refused(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    header, _ = tree(result())
    with pytest.raises(InvalidRequest, match=reason):
        decode_header(mutate(encode_header(header)))


def test_the_header_names_the_members_key_pin_or_none() -> None:
    pin = bytes(range(32))
    header, _ = result_tree(result(), checkpoint=CHECKPOINT, audit_index=1, member_key_pin=pin)
    assert decode_header(encode_header(header)).member_key_pin == pin
    assert decode_header(encode_header(replace(header, member_key_pin=b""))).member_key_pin == b""
    with pytest.raises(ValueError, match="a member key pin is 32 bytes"):
        encode_header(replace(header, member_key_pin=b"short"))
    # The pin's length byte says 5: no such pin (the rest would otherwise parse as 4 trailing bytes).
    data = encode_header(replace(header, member_key_pin=b""))
    with pytest.raises(InvalidRequest, match="a member key pin is 32 bytes or none, not 5"):
        decode_header(data[:-1] + b"\x05" + b"abcde")


def test_unsorted_labels_are_not_canonical() -> None:
    leaf = encode_leaf(MatchedToken(A, 3, (PeerLabel(b"L1"), PeerLabel(b"L2"))))
    first, second = leaf.find(b"L1") - 2, leaf.find(b"L2") - 2
    swapped = leaf[:first] + leaf[second:] + leaf[first:second]
    with pytest.raises(InvalidRequest, match="canonical order"):
        decode_leaf(swapped)


def test_open_header_verifies_then_checks_who_it_is_for() -> None:
    header, signature, _ = signed()
    assert open_header(KEY.public_key, header, signature, round_id="r-1", member_id="bank-a") == decode_header(header)
    with pytest.raises(InvalidSignature, match="expected 'r-1' and 'bank-b'"):
        open_header(KEY.public_key, header, signature, round_id="r-1", member_id="bank-b")
    with pytest.raises(InvalidSignature, match="does not verify"):
        open_header(SigningKey.generate().public_key, header, signature, round_id="r-1", member_id="bank-a")
    tampered = header[:-1] + bytes([header[-1] ^ 1])
    with pytest.raises(InvalidSignature):
        open_header(KEY.public_key, tampered, signature, round_id="r-1", member_id="bank-a")


def _verify(header_bytes: bytes, pages: list[LeafPage]) -> None:
    verifier = LeafVerifier(decode_header(header_bytes))
    for page in pages:
        verifier.add(page)
    verifier.finish()


def test_leaves_that_do_not_make_the_signed_root_are_refused() -> None:
    header, _, leaves = signed()
    _verify(header, [LeafPage(0, 0, leaves)])
    edited = encode_leaf(MatchedToken(B, 4, decode_leaf(leaves[1]).peer_labels))  # A holder count raised.
    with pytest.raises(ResultMismatch, match="do not make the signed Merkle root"):
        _verify(header, [LeafPage(0, 0, (leaves[0], edited))])
    dropped = encode_leaf(MatchedToken(B, 3, decode_leaf(leaves[1]).peer_labels[:1]))  # A peer label removed.
    with pytest.raises(ResultMismatch, match="Merkle root"):
        _verify(header, [LeafPage(0, 0, (leaves[0], dropped))])
    with pytest.raises(ResultMismatch, match="1 leaves, the signed header 2"):
        _verify(header, [LeafPage(0, 0, leaves[:1])])
    with pytest.raises(ResultMismatch, match="more leaves than the 2 signed"):
        _verify(header, [LeafPage(0, 0, (*leaves, encode_leaf(MatchedToken(b"\x03" * 16, 2))))])
    with pytest.raises(ResultMismatch, match="strictly increasing"):
        _verify(header, [LeafPage(0, 0, tuple(reversed(leaves)))])
    with pytest.raises(ResultMismatch, match="out of order"):
        _verify(header, [LeafPage(1, 0, leaves)])
    with pytest.raises(ResultMismatch, match="out of order"):
        _verify(header, [LeafPage(0, 0, leaves[:1]), LeafPage(1, 0, leaves[1:])])
    with pytest.raises(ResultMismatch, match="leaf 0: malformed"):
        _verify(header, [LeafPage(0, 0, (b"junk",))])


def test_one_lead_is_provable_alone() -> None:
    many = tuple(MatchedToken(i.to_bytes(16, "big"), 2 + i % 3, (PeerLabel(bytes([i])),)) for i in range(37))
    header, signature, leaves = signed(result(matches=many))
    proofs = lead_proofs(leaves, [0, 17, 36])
    opened, match = verify_lead(KEY.public_key, header, signature, proofs[17], round_id="r-1", member_id="bank-a")
    assert match == many[17] and opened.match_count == 37
    with pytest.raises(ResultMismatch, match="leaf 17 is not in the signed result"):
        verify_lead(KEY.public_key, header, signature, replace(proofs[17], leaf=leaves[18]))
    with pytest.raises(ResultMismatch):
        verify_lead(KEY.public_key, header, signature, replace(proofs[17], index=16))
    with pytest.raises(InvalidSignature, match="expected 'r-1' and 'bank-b'"):
        verify_lead(KEY.public_key, header, signature, proofs[0], round_id="r-1", member_id="bank-b")
    forged = LeafProof(0, encode_leaf(MatchedToken(b"\xff" * 16, 9)), proofs[0].proof)
    with pytest.raises(ResultMismatch):
        verify_lead(KEY.public_key, header, signature, forged)


def _entry(member: str, root: bytes, matches: int, action: str = "result.issue") -> bytes:
    detail = {"round_id": "r-1", "member_id": member, "matches": matches, "root": root.hex()}
    return json.dumps({"action": action, "detail": detail, "seq": 2}).encode()


def test_the_result_is_checked_against_its_audit_log_entry() -> None:
    header, _ = tree(result())
    log = [leaf_hash(b"round.create"), None, leaf_hash(b"round.matched")]

    def signed_log(entry: bytes) -> tuple[ResultHeader, list[bytes]]:
        leaves = [leaf_hash(entry) if leaf is None else leaf for leaf in log]
        log_tree = MemoryTree(leaves)
        checkpoint = sign_checkpoint(KEY, "coordinator", 3, log_tree.root(), T0)
        opened = decode_header(sign_header(KEY, replace(header, checkpoint=checkpoint)).header)
        return opened, log_tree.inclusion_proof(1)

    honest = _entry("bank-a", header.root, 2)
    opened, proof = signed_log(honest)
    check_issue_entry(opened, honest, proof)
    with pytest.raises(ResultMismatch, match="not in the signed checkpoint"):
        check_issue_entry(opened, _entry("bank-a", header.root, 3), proof)  # Not the entry the log holds.
    for other in (_entry("bank-b", header.root, 2), _entry("bank-a", bytes(32), 2), _entry("bank-a", header.root, 5)):
        logged, other_proof = signed_log(other)  # In the log, but for another result.
        with pytest.raises(ResultMismatch, match="records another result than the signed header"):
            check_issue_entry(logged, other, other_proof)
    not_issue = _entry("bank-a", header.root, 2, action="round.create")
    logged, other_proof = signed_log(not_issue)
    with pytest.raises(ResultMismatch, match="records another result"):
        check_issue_entry(logged, not_issue, other_proof)
    garbage = b"not json"
    logged, other_proof = signed_log(garbage)
    with pytest.raises(ResultMismatch, match="is not a result.issue entry"):
        check_issue_entry(logged, garbage, other_proof)


def test_a_header_whose_checkpoint_another_key_signed_is_refused() -> None:
    header, _ = tree(result(), checkpoint=sign_checkpoint(SigningKey.generate(), "coordinator", 3, bytes(32), T0))
    signed_header = sign_header(KEY, header)
    with pytest.raises(InvalidSignature):
        open_header(KEY.public_key, signed_header.header, signed_header.signature)


def test_signature_is_bound_to_its_context() -> None:
    signature = KEY.sign("report", b"doc")
    verify(KEY.public_key, "report", b"doc", signature)
    with pytest.raises(InvalidSignature):
        verify(KEY.public_key, "result", b"doc", signature)


def test_key_formats() -> None:
    pem = KEY.to_pem()
    again = SigningKey.from_pem(pem)
    assert again.public_key == KEY.public_key and len(KEY.key_id) == 16
    assert load_public_key(KEY.public_key.hex().encode()) == KEY.public_key
    assert load_public_key(KEY.public_key) == KEY.public_key
    with pytest.raises(ConfigurationError, match="32 raw bytes"):
        load_public_key(b"nonsense")
    with pytest.raises(ConfigurationError, match="not a PEM private key"):
        SigningKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert KEY.to_pem().decode() not in repr(KEY)


def test_the_header_signs_the_label_cap_and_leaves_over_it_are_refused() -> None:
    header, leaves = tree(result())
    capped = replace(header, label_cap=1)
    assert decode_header(encode_header(capped)).label_cap == 1
    # Leaf 1 carries 2 peer labels: over a signed cap of 1 the result is refused, whatever its root.
    with pytest.raises(ResultMismatch, match="leaf 1: 2 peer labels, more than the signed label cap 1"):
        _verify(encode_header(capped), [LeafPage(0, 0, leaves)])
    _verify(encode_header(replace(header, label_cap=2)), [LeafPage(0, 0, leaves)])


def test_a_header_of_version_4_kept_before_label_caps_still_reads_as_no_cap() -> None:
    header, leaves = tree(result())
    data = encode_header(header)
    # Version 4 had no label cap: the two bytes after the threshold are not there.
    cap_at = len(b"APSI-RESULT") + 1 + sum(2 + len(t) for t in ("r-1", "bank-a", "e1")) + 2
    assert data[cap_at : cap_at + 2] == b"\x00\x00"
    version_4 = b"APSI-RESULT\x04" + data[12:cap_at] + data[cap_at + 2 :]
    assert decode_header(version_4) == replace(header, label_cap=0)
    _verify(version_4, [LeafPage(0, 0, leaves)])
