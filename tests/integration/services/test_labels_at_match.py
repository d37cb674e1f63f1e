"""Labels sealed at match over real gRPC and mutual TLS, the coordinator on SQLite and PostgreSQL.

Members send tokens only; once the round closes, the coordinator asks the carried holders of each
matched token for its label, and the nodes waiting for their result answer. What the coordinator
keeps: no label in any standing set, the asked labels only until the results carry them. What a
member cannot do: answer a token it was not asked for, or send an oversized answer.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from alliance_psi.errors import InvalidRequest, LimitExceeded, NotFound, RoundClosed
from alliance_psi.protocol import messages
from alliance_psi.protocol.messages import pb_coordinator
from alliance_psi.protocol.model import RoundState
from alliance_psi.services.clients import CoordinatorClient
from alliance_psi.storage import KeptResults
from alliance_psi.storage.schema import audit_log, member_sets, round_labels
from tests.integration.services.harness import MEMBERS, Planted, running_alliance

pytestmark = pytest.mark.timeout(300)

SEALED = 301


def _asked_in_log(engine: Any) -> int:
    with engine.connect() as conn:
        details = conn.execute(select(audit_log.c.detail).where(audit_log.c.action == "round.labels_asked")).scalars()
        return sum(json.loads(detail)["labels_asked"] for detail in details)


def test_tokens_only_are_kept_and_the_matched_tokens_carried_holders_label_them(
    tmp_path: Path, pki: Any, engine: Any
) -> None:
    planted = Planted.make(size=10)
    with running_alliance(tmp_path, pki, planted=planted, coordinator_engine=engine) as alliance:
        admin = alliance.admin()
        round_ = admin.create_round(alliance.spec(2, label_cap=1, labels_at_match=True))
        assert round_.labels_at_match and round_.label_window_seconds == 300
        nodes = {m: alliance.node(m, share_name=True) for m in MEMBERS}
        with ThreadPoolExecutor(3) as pool:
            joins = {m: pool.submit(n.join, round_.round_id, wait=60) for m, n in nodes.items()}
            outcomes = {m: f.result() for m, f in joins.items()}
        final, _ = admin.get_round(round_.round_id)
        with engine.connect() as conn:
            labels_in_sets = conn.execute(
                select(func.count()).select_from(member_sets).where(member_sets.c.sealed_label.is_not(None))
            ).scalar_one()
            tokens_in_sets = conn.execute(select(func.count()).select_from(member_sets)).scalar_one()
            left_asked = conn.execute(select(func.count()).select_from(round_labels)).scalar_one()
        asked = _asked_in_log(engine)
        beyond = {m: nodes[m].labels_beyond_result(round_.round_id) for m in MEMBERS}
        # Had the coordinator asked bank-a for a token its result does not hold, bank-a would see it.
        with alliance.member_engines["bank-a"].begin() as conn:
            KeptResults(conn).record_label_answers(round_.round_id, [bytes(16)])
        beyond_after = nodes["bank-a"].labels_beyond_result(round_.round_id)

    assert final.state is RoundState.MATCHED and final.labels_due is not None
    assert beyond == dict.fromkeys(MEMBERS, 0) and beyond_after == 1
    assert (labels_in_sets, left_asked) == (0, 0) and tokens_in_sets == sum(len(h) for h in planted.holdings.values())
    # Matched tokens: 5 + 4 + 3 held by two (both asked), 6 held by three (two asked under cap 1).
    assert asked == 2 * (5 + 4 + 3) + 2 * 6
    for member, outcome in outcomes.items():
        assert outcome.result is not None and outcome.result.label_cap == 1
        assert {lead.canonical: lead.holder_count for lead in outcome.leads} == planted.expected(member, 2)
        assert all(len(lead.peer_labels) == 1 and lead.backed_count is None for lead in outcome.leads)
        assert all(label.member in MEMBERS for lead in outcome.leads for label in lead.peer_labels)


def test_a_member_answers_only_what_it_was_asked_and_within_the_wire_limit(tmp_path: Path, pki: Any) -> None:
    planted = Planted.make(size=5)
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        admin = alliance.admin()
        round_ = admin.create_round(alliance.spec(2, labels_at_match=True, invited=("bank-a", "bank-b")))
        rid = round_.round_id
        hostile = CoordinatorClient(alliance.coordinator_address, pki.material("bank-a"))
        with pytest.raises(RoundClosed, match="is open: it asks for no labels now"):
            hostile.label_requests(rid)
        with pytest.raises(NotFound):  # Not invited: the round does not exist for it.
            CoordinatorClient(alliance.coordinator_address, pki.material("bank-c")).label_requests(rid)
        alliance.node("bank-a").join(rid, wait=0)
        alliance.node("bank-b").join(rid, wait=0)  # Closes the round; bank-b answers at once.
        assert admin.get_round(rid)[0].labels_awaited == (("bank-a", 11),)  # The operator's view only.
        assert hostile.get_round(rid)[0].labels_awaited == ()
        asked = hostile.label_requests(rid)
        assert len(asked) == 5 + 6  # What bank-a and bank-b both hold (the 6 bank-c holds too: it was not invited).
        label = b"\x02" + bytes(SEALED - 1)
        with pytest.raises(InvalidRequest, match="item 1: not a token this member was asked to label"):
            hostile.answer_labels(rid, [(asked[0], label), (bytes(16), label)])
        with pytest.raises(InvalidRequest, match="item 0: sealed label must be empty or 301 bytes"):
            hostile.answer_labels(rid, [(asked[0], b"\x02" * 400)])
        # A full page of answers passes the wire limit (refused for its content); more does not.
        full = [(asked[0], label), *((i.to_bytes(16, "big"), label) for i in range(1, 4096))]
        with pytest.raises(InvalidRequest, match="item 1: not a token this member was asked"):
            hostile.answer_labels(rid, full)
        # Over the method's wire limit: refused before it is decoded.
        request = pb_coordinator.AnswerLabelsRequest(round_id=rid)
        request.items.extend(
            pb_coordinator.SubmittedToken(match_token=bytes(16), sealed_label=label) for _ in range(4097 + 200)
        )
        with pytest.raises(LimitExceeded):
            hostile._call(lambda t: hostile.stub.AnswerLabels(request, timeout=t))
        assert len(hostile.label_requests(rid)) == 11  # Nothing of the refused calls was kept.
        assert messages.LABELS_REQUEST.max_bytes < 4 * 1024 * 1024
        hostile.close()
