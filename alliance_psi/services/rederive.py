"""Re-deriving match tokens through the custodians, for ``alliance-psi report verify --online``.

A report's member signature says which identifier the member node attached to each signed match
token; only the OPRF under the epoch key can show that the identifier really gives that token.
``rederive_tokens`` runs the member's protocol steps 2 to 5 (docs/design.md) for a report's
identifiers with the caller's own member certificate: the custodians see blinded elements only,
as in a round, and charge each distinct identifier to the caller's quota at every custodian.
Nothing is cached or stored.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from alliance_psi.config import PeerEndpoint, TlsMaterial
from alliance_psi.crypto.parallel import ProcessMap, tokenize
from alliance_psi.crypto.threshold_keys import PublicEpoch
from alliance_psi.identifiers.types import Identifier, IdentifierType
from alliance_psi.services.clients import custodian_evaluator

__all__ = ["rederive_tokens"]


def rederive_tokens(
    tls: TlsMaterial,
    custodians: Sequence[PeerEndpoint],
    key_epoch: str,
    identifiers: Iterable[tuple[str, str]],
    *,
    public: PublicEpoch | None = None,
    verify: str = "sample",
) -> dict[tuple[str, str], bytes]:
    """The match token of each distinct ``(type, canonical value)`` under ``key_epoch``, through
    ``custodians`` in order (a chain), or any ``τ`` of them checked as ``verify`` says (``public``:
    a threshold epoch's public file).

    Costs one evaluation per distinct identifier at every custodian of the chain, or at ``τ`` of a
    threshold epoch's, charged to the member that ``tls`` names. A custodian with its own CA
    (``PeerEndpoint.ca``) is trusted only under it.

    Raises:
        ValueError: an identifier type that does not exist.
        ConfigurationError: a custodian's pinned CA file is wrong.
        QuotaExceeded, WrongEpoch, NotAuthenticated, NotAuthorized, PeerUnavailable: from the custodians.
    """
    distinct = sorted(set(identifiers))
    inputs = [Identifier(IdentifierType(kind), value).oprf_input() for kind, value in distinct]
    chain = custodian_evaluator(custodians, tls, public=public, verify=verify)
    evaluate = functools.partial(chain.evaluate, key_epoch)
    try:
        with ProcessMap(1) as pool:
            tokens = [token for _, derived in tokenize(inputs, evaluate, pool=pool) for token in derived.match_tokens]
    finally:
        chain.close()
    return dict(zip(distinct, tokens, strict=True))
