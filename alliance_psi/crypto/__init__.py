"""The crypto layer: bytes in, bytes out; no I/O, no network, no storage.

RFC 9497 OPRF (``oprf``), RFC 9380 expansion (``h2c``), group suites (``suite``), custodian key
shares of the multiplicative chain (``key_shares``), Shamir-shared threshold keys (``threshold``,
their files ``threshold_keys``), RFC 9497 batched DLEQ proofs (``dleq``), token and label-key derivation (``derive``), sealed labels
(``labels``), key-ceremony shares sealed to their receiver (``sealed_shares``), batch forms
(``batch``), the process-pool pipeline (``parallel``) and the known-answer self-check (``selfcheck``).
"""

from alliance_psi.crypto.batch import BlindedBatch, DerivedBatch, blind_batch, finalize_and_derive_batch, finalize_batch
from alliance_psi.crypto.derive import Derived, derive
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.labels import LabelContext, open_label, seal_label
from alliance_psi.crypto.oprf import BlindResult, blind, blind_evaluate, derive_key_pair, evaluate, finalize
from alliance_psi.crypto.parallel import ProcessMap, tokenize
from alliance_psi.crypto.suite import RISTRETTO255_SHA512, Suite, get_suite

__all__ = [
    "BlindResult",
    "BlindedBatch",
    "Derived",
    "DerivedBatch",
    "KeyShare",
    "LabelContext",
    "ProcessMap",
    "RISTRETTO255_SHA512",
    "Suite",
    "blind",
    "blind_batch",
    "blind_evaluate",
    "derive",
    "derive_key_pair",
    "evaluate",
    "finalize",
    "finalize_and_derive_batch",
    "finalize_batch",
    "get_suite",
    "open_label",
    "seal_label",
    "tokenize",
]
