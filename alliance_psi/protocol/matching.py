"""Matching a closed round and issuing every committed member's signed result (DESIGN.md step 7).

One pass over the tokens two or more of the round's members hold, in token order: the operator's
holder counts come from all of them, each member's result from those at the threshold. Each peer
label carries its attested sealer when that member chose to be named in the round (its enrolled
display name, or its member id): the coordinator, which knows who sent each label, vouches for it
under its signature, so a member cannot pose as another by writing a name into its label. Each
member's leaves go to the database a page at a time (``result_codec.ResultBuilder``), never all
in memory. Then, in the same transaction:

1. each result is recorded in the audit log (``result.issue``: round, member, count, root);
2. ``round.matched`` is appended, and the log's head is signed as a checkpoint;
3. each member's header is signed, carrying that checkpoint and the index of its own entry.

So every result a member accepts is provably in the log the coordinator signed, and a result
issued behind the log's back (or a log rewritten afterwards) contradicts a signed document.

A round whose labels are sealed at match (``Round.labels_at_match``) keeps no labels in the
standing sets: after it closes, ``ask_for_labels`` asks the holders whose labels a matched
token's leaves will carry, and ``issue_results`` takes the labels they answered (a holder that
did not answer in the window is carried without one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from itertools import groupby
from operator import itemgetter

from alliance_psi.crypto.merkle import leaf_hash
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.checkpoints import sign_checkpoint
from alliance_psi.protocol.label_cap import carried_labels, rank_holders
from alliance_psi.protocol.model import PeerLabel, Round
from alliance_psi.protocol.ports import CoordinatorTx
from alliance_psi.protocol.result_codec import ResultBuilder, ResultHeader, holder_leaves, sign_header

__all__ = ["ask_for_labels", "issue_results"]


def _leaves(
    token: bytes, count: int, holders: list[tuple[str, bytes | None]], found: Round, sealers: Mapping[str, str]
) -> list[bytes]:
    """Each holder's leaf (in ``holders``' order), carrying at most the round's label cap of the
    other holders' labels (``label_cap.carried_labels``)."""
    if not found.share_labels:
        return holder_leaves(token, count, [None] * len(holders))
    carried = carried_labels(token, holders, cap=found.label_cap, salt=found.label_salt)
    if not found.label_cap or len(carried) <= found.label_cap:  # Every label fits under the cap.
        return holder_leaves(
            token, count, [PeerLabel(label, sealers.get(m)) if label else None for m, label in holders]
        )
    # The first cap + 1 holders in the secret order see each other; everyone else (a holder without
    # a label too, even when exactly cap + 1 are labelled) sees the first cap.
    chosen = holder_leaves(token, count, [PeerLabel(label, sealers.get(m)) for m, label in carried])
    position = {member: index for index, (member, _) in enumerate(carried)}
    return [chosen[position.get(member, len(carried) - 1)] for member, _ in holders]


def _matched(tx: CoordinatorTx, found: Round) -> Iterator[tuple[bytes, list[tuple[str, bytes | None]], int]]:
    """(token, [(holder, label from its standing set)], holder count) of every token two or more
    of the round's members hold, in token order (labels None unless the sets keep them)."""
    # The repository's rows come in token order, a token's holders together (C-level grouping).
    for token, group in groupby(tx.matching.match(found.round_id, 2, labels=found.labels_in_sets), key=itemgetter(0)):
        rows = list(group)
        yield token, [(member, label) for _, member, label, _ in rows], rows[0][3]


def ask_for_labels(tx: CoordinatorTx, found: Round) -> int:
    """Labels sealed at match: record, for each token at or above the round's threshold, that the
    holders whose labels its leaves will carry are asked for their label (all of them, or the
    first ``label_cap + 1`` in the round's secret order: ``label_cap.rank_holders``); return how
    many labels were asked for. The other holders are asked for nothing: their labels would not be
    carried, so they are never sealed."""

    def requests() -> Iterator[tuple[bytes, str]]:
        for token, holders, count in _matched(tx, found):
            if count < found.threshold:
                continue
            members = [member for member, _ in holders]
            if found.label_cap and len(members) > found.label_cap + 1:
                members = rank_holders(found.label_salt, token, members)[: found.label_cap + 1]
            yield from ((token, member) for member in members)

    return tx.labels.ask(found.round_id, requests())


def _with_answers(
    tx: CoordinatorTx, found: Round, matched: Iterator[tuple[bytes, list[tuple[str, bytes | None]], int]]
) -> Iterator[tuple[bytes, list[tuple[str, bytes | None]], int]]:
    """``matched`` with each holder's label as it answered when asked at match (None: not asked,
    or no answer): a merge of two streams in token order."""
    answers = tx.labels.answers(found.round_id)
    answer = next(answers, None)
    for token, holders, count in matched:
        if count < found.threshold:
            yield token, holders, count
            continue
        labels: dict[str, bytes] = {}
        while answer is not None and answer[0] < token:
            answer = next(answers, None)
        while answer is not None and answer[0] == token:
            labels[answer[1]] = answer[2]
            answer = next(answers, None)
        yield token, [(member, labels.get(member)) for member, _ in holders], count


def issue_results(
    tx: CoordinatorTx,
    found: Round,
    key: SigningKey,
    *,
    issuer: str,
    at: datetime,
    page_bytes: int,
    key_pins: Callable[[str], bytes | None] = lambda member_id: None,
) -> None:
    """Match ``found`` and store every committed member's signed result, in ``tx``; each header
    names the key pin ``key_pins`` gives for its member (the coordinator's enrolled key, or none)."""
    round_id = found.round_id
    members = tx.submissions.committed_members(round_id)
    sealers = tx.submissions.sealer_names(round_id) if found.share_labels else {}
    results = {m: ResultBuilder(page_bytes) for m in members}
    matched_tokens = 0
    by_holders: dict[int, int] = {}
    matched = _matched(tx, found)
    for token, holders, count in _with_answers(tx, found, matched) if found.labels_at_match else matched:
        by_holders[count] = by_holders.get(count, 0) + 1
        if count < found.threshold:
            continue
        matched_tokens += 1
        leaves = _leaves(token, count, holders, found, sealers)
        # Without a label every holder's leaf is the same: hashed once for all their trees.
        digest = leaf_hash(leaves[0]) if all(leaf is leaves[0] for leaf in leaves) else None
        for (member, _), leaf in zip(holders, leaves, strict=True):
            page = results[member].add_leaf(leaf, digest)
            if page is not None:
                tx.results.store_result_page(round_id, member, page.page_index, page.first_leaf, page.leaves)
    issued: dict[str, int] = {}
    for member in members:
        builder = results[member]
        last = builder.finish()
        if last is not None:
            tx.results.store_result_page(round_id, member, last.page_index, last.first_leaf, last.leaves)
        detail = {"round_id": round_id, "member_id": member, "matches": builder.count, "root": builder.root().hex()}
        issued[member] = tx.audit.append(actor=issuer, action="result.issue", at=at, detail=detail) - 1
    tx.matching.record_holder_counts(round_id, dict(sorted(by_holders.items())))
    done: dict[str, object] = {"round_id": round_id, "members": len(members), "matched_tokens": matched_tokens}
    if found.labels_at_match:  # Who did not answer in the window: the asked labels go with the results.
        done["labels_unanswered"] = tx.labels.unanswered_by_member(round_id)
    tx.audit.append(actor=issuer, action="round.matched", at=at, detail=done)
    size, root = tx.audit.head()
    checkpoint = sign_checkpoint(key, issuer, size, root, at)
    for member in members:
        builder = results[member]
        header = ResultHeader(
            round_id,
            member,
            found.key_epoch,
            found.threshold,
            tx.submissions.submitted_count(round_id, member),
            builder.count,
            builder.root(),
            checkpoint,
            issued[member],
            key_pins(member) or b"",
            found.label_cap if found.share_labels else 0,
        )
        signed = sign_header(key, header)
        tx.results.store_result(round_id, member, signed.header, signed.signature, builder.pages, at=at)
    if found.labels_at_match:
        tx.labels.clear(round_id)  # The results carry the answered labels now.
