"""The files of a threshold key epoch: one custodian's share, and the epoch's public commitments.

A **share file** (secret, mode 0600, one per custodian) is JSON::

    {"format": "alliance-psi threshold share v1", "epoch": "2026q4", "suite": "ristretto255-SHA512",
     "index": 2, "threshold": 2, "n": 3, "share": "<hex of k_2, 32 bytes>"}

The **public epoch file** (members load it; nothing in it is secret) is JSON::

    {"format": "alliance-psi public epoch v1", "epoch": "2026q4", "suite": "ristretto255-SHA512",
     "threshold": 2, "n": 3, "origin": "dkg", "key": "<hex of K = k·G>",
     "custodians": [{"index": 1, "name": "custodian-1", "commitment": "<hex of K_1 = k_1·G>"}, ...]}

``origin`` is ``"dkg"`` (the custodians' distributed key generation) or ``"dealer"``
(``deal_epoch_for_testing``: one party drew the key and knew it; tests and demos only).
Indexes are 1 to ``n``, each once; names are the custodians' certificate names, each once.
``PublicEpoch.from_bytes`` checks that the commitments lie on one polynomial of degree
``threshold − 1`` whose value at zero is ``key``, so a file where one ``K_i`` was swapped is refused.
``PublicEpoch.fingerprint`` is what parties compare out of band to know they hold the same file.

Both formats are written by ``to_bytes`` as canonical JSON (sorted keys, no spaces), and read by
``from_bytes``, which refuses anything else (unknown keys included) with ``ConfigurationError``
naming the field. DO NOT SEND A SHARE TO ANY OTHER PARTY; its ``repr`` never shows the scalar.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alliance_psi.crypto.dleq import generate_proof
from alliance_psi.crypto.suite import RISTRETTO255_SHA512, Suite, get_suite
from alliance_psi.crypto.threshold import MAX_CUSTODIANS, deal_for_testing, fold, interpolate_elements
from alliance_psi.errors import ConfigurationError, CryptoError

__all__ = [
    "CustodianCommitment",
    "EPOCH_FORMAT",
    "ORIGINS",
    "PublicEpoch",
    "SHARE_FORMAT",
    "ThresholdShare",
    "deal_epoch_for_testing",
    "is_threshold_share",
]

SHARE_FORMAT = "alliance-psi threshold share v1"
EPOCH_FORMAT = "alliance-psi public epoch v1"
ORIGINS = ("dkg", "dealer")
_SHARE_KEYS = {"format", "epoch", "suite", "index", "threshold", "n", "share"}
_EPOCH_KEYS = {"format", "epoch", "suite", "threshold", "n", "origin", "key", "custodians"}
_CUSTODIAN_KEYS = {"index", "name", "commitment"}
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_FINGERPRINT_TAG = b"alliance-psi/v1 public epoch"


def _check_epoch_fields(epoch: object, suite_id: object, threshold: object, n: object) -> Suite:
    if not isinstance(epoch, str) or not epoch or len(epoch.encode("utf-8")) > 255:
        raise ConfigurationError("epoch must be 1 to 255 bytes of UTF-8")
    if not isinstance(suite_id, str):
        raise ConfigurationError("suite must be a string")
    suite = get_suite(suite_id)
    for name, value in (("threshold", threshold), ("n", n)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigurationError(f"{name} must be an integer")
    assert isinstance(threshold, int) and isinstance(n, int)
    if not 1 <= threshold <= n <= MAX_CUSTODIANS:
        raise ConfigurationError(f"need 1 <= threshold <= n <= {MAX_CUSTODIANS}, got threshold {threshold} of {n}")
    return suite


def _hex(value: object, what: str, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise ConfigurationError(f"{what} must be {2 * size} hexadecimal digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ConfigurationError(f"{what} must be {2 * size} hexadecimal digits") from None


def _load_json(data: bytes, *, fmt: str, keys: set[str], what: str) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigurationError(f"not {what} (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != fmt:
        raise ConfigurationError(f"not {what} (expected format {fmt!r})")
    missing, unknown = keys - document.keys(), document.keys() - keys
    if missing:
        raise ConfigurationError(f"{what}: missing {', '.join(sorted(missing))}")
    if unknown:
        raise ConfigurationError(f"{what}: unknown key {sorted(unknown)[0]!r}")
    return document


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def is_threshold_share(data: bytes) -> bool:
    """Whether ``data`` looks like a threshold share file (as opposed to a chain ``KeyShare``)."""
    return data.lstrip()[:1] == b"{"


@dataclass(frozen=True, slots=True)
class ThresholdShare:
    """Custodian ``index``'s share ``k_i = f(index)`` of epoch ``epoch``'s key (``threshold`` of ``n``)."""

    epoch: str
    suite_id: str
    index: int
    threshold: int
    n: int
    scalar: bytes = field(repr=False)

    def __post_init__(self) -> None:
        suite = _check_epoch_fields(self.epoch, self.suite_id, self.threshold, self.n)
        if not isinstance(self.index, int) or isinstance(self.index, bool) or not 1 <= self.index <= self.n:
            raise ConfigurationError(f"share index must be 1..{self.n}, got {self.index!r}")
        try:
            suite.deserialize_scalar(self.scalar)
        except CryptoError as exc:
            raise ConfigurationError(f"key share {self.index} of epoch {self.epoch!r} is not usable: {exc}") from None

    @property
    def suite(self) -> Suite:
        return get_suite(self.suite_id)

    def commitment(self) -> bytes:
        """``K_i = k_i·G``: the public commitment to this share, as in the public epoch file."""
        return self.suite.scalar_mult_base(self.scalar)

    def folded(self, subset: Sequence[int]) -> bytes:
        """``λ_i·k_i`` for ``subset`` (checked by the caller): the scalar one batch is multiplied by. Secret."""
        return fold(self.scalar, self.index, subset, suite=self.suite)

    def blind_evaluate(
        self, blinded_elements: Sequence[bytes], subset: Sequence[int], *, prove: bool = False
    ) -> tuple[list[bytes], bytes]:
        """``λ_i·k_i·B`` for every element ``B``, and with ``prove`` the batch's DLEQ proof (else ``b""``).

        ``subset`` must be checked (``threshold.check_subset`` with this share's index). The proof
        is RFC 9497 ``GenerateProof(λ_i·k_i, G, λ_i·K_i, B[], answers[])``: a member checks it with
        the public ``K_i`` and the public ``λ_i``.

        Raises ``MalformedElement`` on the first element that is not a canonical, non-identity
        element, naming its index; nothing is returned for a batch that holds one.
        """
        suite, scalar = self.suite, self.folded(subset)
        evaluated = suite.scalar_mult_batch(scalar, blinded_elements)
        if not prove:
            return evaluated, b""
        generator = suite.scalar_mult_base(suite.scalar_from_int(1))
        proof = generate_proof(
            scalar, generator, suite.scalar_mult_base(scalar), blinded_elements, evaluated, suite=suite
        )
        return evaluated, proof

    def to_bytes(self) -> bytes:
        """The share file's bytes. Secret: write them with mode 0600."""
        return _canonical(
            {
                "format": SHARE_FORMAT,
                "epoch": self.epoch,
                "suite": self.suite_id,
                "index": self.index,
                "threshold": self.threshold,
                "n": self.n,
                "share": self.scalar.hex(),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ThresholdShare:
        """Parse a share file. Raises ``ConfigurationError`` naming what is wrong (never the scalar)."""
        doc = _load_json(data, fmt=SHARE_FORMAT, keys=_SHARE_KEYS, what="a threshold key share")
        suite = _check_epoch_fields(doc["epoch"], doc["suite"], doc["threshold"], doc["n"])
        scalar = _hex(doc["share"], "share", suite.Ns)
        return cls(doc["epoch"], doc["suite"], doc["index"], doc["threshold"], doc["n"], scalar)


@dataclass(frozen=True, slots=True)
class CustodianCommitment:
    """One custodian's entry in the public epoch file: its index, certificate name and ``K_i``."""

    index: int
    name: str
    commitment: bytes


@dataclass(frozen=True, slots=True)
class PublicEpoch:
    """What every party knows of a threshold epoch: ``τ``, ``n``, ``K`` and each custodian's ``K_i``.

    Built only through ``from_bytes`` or ``create``, both of which run ``check``.
    """

    epoch: str
    suite_id: str
    threshold: int
    origin: str
    key: bytes
    custodians: tuple[CustodianCommitment, ...]

    @property
    def n(self) -> int:
        return len(self.custodians)

    @property
    def suite(self) -> Suite:
        return get_suite(self.suite_id)

    @classmethod
    def create(
        cls,
        *,
        epoch: str,
        threshold: int,
        origin: str,
        key: bytes,
        custodians: Sequence[CustodianCommitment],
        suite: Suite = RISTRETTO255_SHA512,
    ) -> PublicEpoch:
        """A checked public epoch (``check``); raises ``ConfigurationError`` naming the fault."""
        public = cls(epoch, suite.identifier, threshold, origin, key, tuple(sorted(custodians, key=lambda c: c.index)))
        public.check()
        return public

    def check(self) -> None:
        """Refuse an epoch whose fields or commitments do not hold together.

        Every ``K_i`` and ``K`` must be a valid non-identity element; indexes are exactly 1..n;
        names are distinct DNS labels; and the ``K_i`` lie on one polynomial of degree
        ``threshold − 1`` through ``K`` at zero (each ``K_j`` past the first ``τ`` is interpolated
        from those, and ``K`` too).

        Raises:
            ConfigurationError: naming the field, index or custodian at fault.
        """
        suite = _check_epoch_fields(self.epoch, self.suite_id, self.threshold, self.n)
        if self.origin not in ORIGINS:
            raise ConfigurationError(f"origin must be one of {', '.join(ORIGINS)}, not {self.origin!r}")
        try:
            suite.deserialize_element(self.key)
        except CryptoError as exc:
            raise ConfigurationError(f"key K is not usable: {exc}") from None
        names: set[str] = set()
        for position, entry in enumerate(self.custodians, start=1):
            if entry.index != position:
                raise ConfigurationError(f"custodian indexes must be 1..{self.n}, each once (found {entry.index})")
            if not isinstance(entry.name, str) or _NAME.fullmatch(entry.name) is None:
                raise ConfigurationError(f"custodian {entry.index}: name {entry.name!r} is not a lowercase DNS label")
            if entry.name in names:
                raise ConfigurationError(f"custodian name {entry.name!r} appears twice")
            names.add(entry.name)
            try:
                suite.deserialize_element(entry.commitment)
            except CryptoError as exc:
                raise ConfigurationError(
                    f"custodian {entry.index} ({entry.name}): commitment not usable: {exc}"
                ) from None
        base = [(c.index, c.commitment) for c in self.custodians[: self.threshold]]
        if not hmac.compare_digest(interpolate_elements(base, 0, suite=suite), self.key):
            raise ConfigurationError(
                f"the commitments of custodians 1..{self.threshold} do not interpolate to the key K: "
                "the file mixes epochs or was altered"
            )
        for entry in self.custodians[self.threshold :]:
            if not hmac.compare_digest(interpolate_elements(base, entry.index, suite=suite), entry.commitment):
                raise ConfigurationError(
                    f"custodian {entry.index} ({entry.name}): its commitment is not on the epoch's polynomial "
                    "(the file mixes epochs or was altered)"
                )

    def by_name(self, name: str) -> CustodianCommitment:
        """The entry of the custodian named ``name``; raises ``ConfigurationError`` if none."""
        for entry in self.custodians:
            if entry.name == name:
                return entry
        raise ConfigurationError(
            f"epoch {self.epoch!r} has no custodian named {name!r} (it has {', '.join(c.name for c in self.custodians)})"
        )

    def by_index(self, index: int) -> CustodianCommitment:
        return self.custodians[index - 1]

    def check_share(self, share: ThresholdShare, name: str) -> None:
        """Refuse to serve ``share`` as custodian ``name`` unless it is this epoch's share of ``name``.

        Raises:
            ConfigurationError: another epoch, suite, threshold or size; ``name`` is not the
                custodian at the share's index; or ``k_i·G`` is not the commitment ``K_i``.
        """
        for what, ours, theirs in (
            ("epoch", share.epoch, self.epoch),
            ("suite", share.suite_id, self.suite_id),
            ("threshold", share.threshold, self.threshold),
            ("n", share.n, self.n),
        ):
            if ours != theirs:
                raise ConfigurationError(f"the key share's {what} is {ours!r}; the public epoch file says {theirs!r}")
        entry = self.by_index(share.index)
        if entry.name != name:
            raise ConfigurationError(
                f"the key share is custodian {share.index}'s, which the public epoch file names {entry.name!r}, "
                f"not {name!r}"
            )
        if not hmac.compare_digest(share.commitment(), entry.commitment):
            raise ConfigurationError(
                f"the key share does not match custodian {share.index} ({name})'s commitment K_{share.index} in the "
                "public epoch file: wrong or damaged share, or another epoch's file"
            )

    def fingerprint(self) -> str:
        """SHA-256 of the canonical file, in hex: compare it out of band to know two parties hold the same epoch."""
        return hashlib.sha256(_FINGERPRINT_TAG + self.to_bytes()).hexdigest()

    def to_bytes(self) -> bytes:
        return _canonical(
            {
                "format": EPOCH_FORMAT,
                "epoch": self.epoch,
                "suite": self.suite_id,
                "threshold": self.threshold,
                "n": self.n,
                "origin": self.origin,
                "key": self.key.hex(),
                "custodians": [
                    {"index": c.index, "name": c.name, "commitment": c.commitment.hex()} for c in self.custodians
                ],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicEpoch:
        """Parse and ``check`` a public epoch file; raises ``ConfigurationError`` naming the fault."""
        doc = _load_json(data, fmt=EPOCH_FORMAT, keys=_EPOCH_KEYS, what="a public epoch file")
        suite = _check_epoch_fields(doc["epoch"], doc["suite"], doc["threshold"], doc["n"])
        entries = doc["custodians"]
        if not isinstance(entries, list) or len(entries) != doc["n"]:
            raise ConfigurationError(f"custodians must list n = {doc['n']} entries")
        custodians = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.keys() != _CUSTODIAN_KEYS:
                raise ConfigurationError(f"each custodian entry holds exactly {', '.join(sorted(_CUSTODIAN_KEYS))}")
            index = entry["index"]
            if not isinstance(index, int) or isinstance(index, bool):
                raise ConfigurationError("custodian index must be an integer")
            commitment = _hex(entry["commitment"], f"custodian {index}'s commitment", suite.Ne)
            custodians.append(CustodianCommitment(index, entry["name"], commitment))
        return cls.create(
            epoch=doc["epoch"],
            threshold=doc["threshold"],
            origin=doc["origin"],
            key=_hex(doc["key"], "key", suite.Ne),
            custodians=custodians,
            suite=suite,
        )


def deal_epoch_for_testing(
    epoch: str,
    names: Sequence[str],
    *,
    threshold: int,
    key: bytes | None = None,
    suite: Suite = RISTRETTO255_SHA512,
) -> tuple[list[ThresholdShare], PublicEpoch]:
    """A dealer's epoch: one share per name (index = position + 1) and the public file (origin "dealer").

    WARNING: for tests and the demo. The dealer draws (or is given) the whole key ``k`` and could
    evaluate the PRF alone; an alliance generates its epochs with the distributed key generation.

    Raises:
        ConfigurationError: ``threshold`` not in 1..len(names), too many names, or a bad name.
    """
    try:
        k = suite.random_scalar() if key is None else suite.deserialize_scalar(key)
        dealt = deal_for_testing(k, threshold=threshold, count=len(names), suite=suite)
    except CryptoError as exc:
        raise ConfigurationError(str(exc)) from None
    shares = [ThresholdShare(epoch, suite.identifier, i, threshold, len(names), s) for i, s in dealt]
    public = PublicEpoch.create(
        epoch=epoch,
        threshold=threshold,
        origin="dealer",
        key=suite.scalar_mult_base(k),
        custodians=[CustodianCommitment(s.index, name, s.commitment()) for s, name in zip(shares, names, strict=True)],
        suite=suite,
    )
    return shares, public
