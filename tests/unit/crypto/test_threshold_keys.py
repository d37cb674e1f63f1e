"""The share file and the public epoch file: round trips, and every way they can be wrong."""

from __future__ import annotations

import json

import pytest

from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.crypto.threshold_keys import (
    CustodianCommitment,
    PublicEpoch,
    ThresholdShare,
    deal_epoch_for_testing,
    is_threshold_share,
)
from alliance_psi.errors import ConfigurationError

NAMES = ["custodian-1", "custodian-2", "custodian-3"]


@pytest.fixture(scope="module")
def dealt() -> tuple[list[ThresholdShare], PublicEpoch]:
    return deal_epoch_for_testing("2026q4", NAMES, threshold=2)


def test_round_trips(dealt: tuple[list[ThresholdShare], PublicEpoch]) -> None:
    shares, public = dealt
    for share in shares:
        assert is_threshold_share(share.to_bytes())
        assert ThresholdShare.from_bytes(share.to_bytes()) == share
        public.check_share(share, NAMES[share.index - 1])
    assert PublicEpoch.from_bytes(public.to_bytes()) == public
    assert public.origin == "dealer" and public.n == 3 and public.threshold == 2
    assert [c.name for c in public.custodians] == NAMES


def test_file_fields(dealt: tuple[list[ThresholdShare], PublicEpoch]) -> None:
    shares, public = dealt
    doc = json.loads(shares[1].to_bytes())
    assert doc == {
        "format": "alliance-psi threshold share v1",
        "epoch": "2026q4",
        "suite": "ristretto255-SHA512",
        "index": 2,
        "threshold": 2,
        "n": 3,
        "share": shares[1].scalar.hex(),
    }
    doc = json.loads(public.to_bytes())
    assert doc["custodians"][1] == {"index": 2, "name": "custodian-2", "commitment": shares[1].commitment().hex()}
    assert doc["key"] == public.key.hex() and doc["origin"] == "dealer"


def test_repr_hides_the_share(dealt: tuple[list[ThresholdShare], PublicEpoch]) -> None:
    share = dealt[0][0]
    assert share.scalar.hex() not in repr(share)


def test_fingerprint_names_the_file(dealt: tuple[list[ThresholdShare], PublicEpoch]) -> None:
    public = dealt[1]
    assert public.fingerprint() == PublicEpoch.from_bytes(public.to_bytes()).fingerprint()
    other = deal_epoch_for_testing("2026q4", NAMES, threshold=2)[1]
    assert other.fingerprint() != public.fingerprint()


def test_given_key_is_the_epoch_key() -> None:
    key = SUITE.random_scalar()
    _, public = deal_epoch_for_testing("e", ["a", "b"], threshold=2, key=key)
    assert public.key == SUITE.scalar_mult_base(key)


def test_share_checked_against_the_wrong_custodian(dealt: tuple[list[ThresholdShare], PublicEpoch]) -> None:
    shares, public = dealt
    with pytest.raises(ConfigurationError, match="custodian 1's, which the public epoch file names 'custodian-1'"):
        public.check_share(shares[0], "custodian-2")


def test_corrupted_share_is_refused_at_start(dealt: tuple[list[ThresholdShare], PublicEpoch]) -> None:
    public = dealt[1]
    wrong = ThresholdShare("2026q4", SUITE.identifier, 2, 2, 3, SUITE.random_scalar())
    with pytest.raises(ConfigurationError, match="does not match custodian 2 .custodian-2.'s commitment K_2"):
        public.check_share(wrong, "custodian-2")


def test_share_of_another_epoch_is_refused(dealt: tuple[list[ThresholdShare], PublicEpoch]) -> None:
    public = dealt[1]
    other = deal_epoch_for_testing("2027q1", NAMES, threshold=2)[0][0]
    with pytest.raises(ConfigurationError, match="epoch is '2027q1'"):
        public.check_share(other, "custodian-1")
    three = deal_epoch_for_testing("2026q4", NAMES, threshold=3)[0][0]
    with pytest.raises(ConfigurationError, match="threshold is 3"):
        public.check_share(three, "custodian-1")


def _edited(public: PublicEpoch, **changes: object) -> bytes:
    doc = json.loads(public.to_bytes())
    doc.update(changes)
    return json.dumps(doc).encode()


def test_swapped_commitment_is_refused(dealt: tuple[list[ThresholdShare], PublicEpoch]) -> None:
    public = dealt[1]
    doc = json.loads(public.to_bytes())
    doc["custodians"][2]["commitment"] = SUITE.scalar_mult_base(SUITE.random_scalar()).hex()
    with pytest.raises(ConfigurationError, match=r"custodian 3 \(custodian-3\): its commitment is not on"):
        PublicEpoch.from_bytes(json.dumps(doc).encode())


def test_swapped_key_is_refused(dealt: tuple[list[ThresholdShare], PublicEpoch]) -> None:
    public = dealt[1]
    with pytest.raises(ConfigurationError, match="do not interpolate to the key K"):
        PublicEpoch.from_bytes(_edited(public, key=SUITE.scalar_mult_base(SUITE.random_scalar()).hex()))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"format": "alliance-psi public epoch v2"}, "expected format"),
        ({"threshold": 4}, "need 1 <= threshold <= n"),
        ({"threshold": 0}, "need 1 <= threshold <= n"),
        ({"threshold": "2"}, "threshold must be an integer"),
        ({"n": 4}, "custodians must list n = 4"),
        ({"origin": "someone"}, "origin must be one of"),
        ({"suite": "P256-SHA256"}, "unknown OPRF suite"),
        ({"epoch": ""}, "epoch must be"),
        ({"key": "00" * 32}, "key K is not usable: identity"),
        ({"key": "zz"}, "key must be 64 hexadecimal digits"),
        ({"extra": 1}, "unknown key 'extra'"),
    ],
)
def test_bad_public_files(
    dealt: tuple[list[ThresholdShare], PublicEpoch], changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        PublicEpoch.from_bytes(_edited(dealt[1], **changes))


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda c: c[1].update(index=1), "indexes must be 1..3, each once"),
        (lambda c: c[1].update(name="custodian-1"), "appears twice"),
        (lambda c: c[1].update(name="Custodian 2"), "not a lowercase DNS label"),
        (lambda c: c[1].update(commitment="00" * 32), "custodian 2 .custodian-2.: commitment not usable"),
        (lambda c: c[1].pop("name"), "each custodian entry holds exactly"),
    ],
)
def test_bad_custodian_entries(dealt: tuple[list[ThresholdShare], PublicEpoch], edit: object, reason: str) -> None:
    doc = json.loads(dealt[1].to_bytes())
    edit(doc["custodians"])  # type: ignore[operator]
    with pytest.raises(ConfigurationError, match=reason):
        PublicEpoch.from_bytes(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x01", "not JSON"),
        (b"[]", "expected format"),
        (b'{"format": "alliance-psi threshold share v1"}', "missing"),
    ],
)
def test_not_share_files(data: bytes, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        ThresholdShare.from_bytes(data)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"index": 4}, "share index must be 1..3"),
        ({"index": 0}, "share index must be 1..3"),
        ({"share": "00" * 32}, "not usable: zero scalar"),
        ({"share": "ff" * 32}, "not reduced"),
        ({"share": "ab"}, "share must be 64 hexadecimal digits"),
        ({"n": 1}, "need 1 <= threshold <= n"),
    ],
)
def test_bad_share_files(
    dealt: tuple[list[ThresholdShare], PublicEpoch], changes: dict[str, object], reason: str
) -> None:
    doc = json.loads(dealt[0][0].to_bytes())
    doc.update(changes)
    with pytest.raises(ConfigurationError, match=reason):
        ThresholdShare.from_bytes(json.dumps(doc).encode())


def test_an_error_never_shows_the_share(dealt: tuple[list[ThresholdShare], PublicEpoch]) -> None:
    share = dealt[0][0]
    doc = json.loads(share.to_bytes())
    doc["index"] = 9
    with pytest.raises(ConfigurationError) as caught:
        ThresholdShare.from_bytes(json.dumps(doc).encode())
    assert share.scalar.hex() not in str(caught.value)


def test_create_sorts_by_index() -> None:
    _, public = deal_epoch_for_testing("e", NAMES, threshold=2)
    again = PublicEpoch.create(
        epoch="e", threshold=2, origin="dkg", key=public.key, custodians=list(reversed(public.custodians))
    )
    assert again.custodians == public.custodians
    assert isinstance(again.custodians[0], CustodianCommitment)
