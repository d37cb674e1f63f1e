"""The custodian charges before it computes, refunds what it could not evaluate, and charges a batch once.

Issue 9 §7: the custodian computed a batch before checking the quota, and an interrupted join was
charged twice. These run against a real custodian over mutual TLS. "Nothing was computed" is
shown without timing: a batch of elements the custodian could not even decode is answered
RESOURCE_EXHAUSTED, not INVALID_ARGUMENT, so the quota check came before any element was read.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Engine, select

from alliance_psi.crypto.oprf import blind
from alliance_psi.errors import InvalidRequest
from alliance_psi.services.clients import CustodianClient
from alliance_psi.storage import QuotaRepository
from alliance_psi.storage.schema import audit_log
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import EPOCH, custodian_name, running_alliance

CUSTODIAN = custodian_name(0)
pytestmark = pytest.mark.timeout(120)

GOOD = [blind(b"phone\x00+8613700000%03d" % i).blinded_element for i in range(6)]
UNDECODABLE = b"\xff" * 32  # 32 bytes, but not a canonical ristretto255 encoding.


def audit(engine: Engine) -> list[tuple[str, dict[str, object]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.action, audit_log.c.detail).order_by(audit_log.c.seq))
        return [(r.action, json.loads(r.detail)) for r in rows if r.action.startswith("evaluate")]


def used(engine: Engine, member: str = "bank-a") -> int:
    with engine.connect() as conn:
        return QuotaRepository(conn).used(EPOCH, member)


def evaluate_raw(client: CustodianClient, elements: list[bytes]) -> grpc.StatusCode:
    from alliance_psi.protocol.messages import evaluate_request

    try:
        client.stub.Evaluate(evaluate_request(EPOCH, elements), timeout=10)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_a_batch_over_quota_is_refused_before_any_element_is_read(tmp_path: Path, pki: AlliancePki) -> None:
    with running_alliance(tmp_path, pki, custodians=1, quota=10) as alliance:
        engine = alliance.custodian_engines[0]
        with CustodianClient(alliance.custodian_addresses[0], pki.material("bank-a"), name=CUSTODIAN) as client:
            client.evaluate(EPOCH, GOOD)  # 6 of 10.
            # Five elements that cannot be decoded: a custodian that computed first would say
            # INVALID_ARGUMENT; one that reserves first refuses on quota and reads none of them.
            assert evaluate_raw(client, [UNDECODABLE] * 5) is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert used(engine) == 6
        assert [action for action, _ in audit(engine)] == ["evaluate", "evaluate.refused"]
        assert audit(engine)[-1][1] == {"key_epoch": EPOCH, "requested": 5, "used": 6, "quota": 10}


def test_a_batch_with_a_malformed_element_stays_charged(tmp_path: Path, pki: AlliancePki) -> None:
    # Fresh elements ending in a bad one cost the custodian a multiplication each: refunding them
    # made such batches free CPU for a hostile member (adversary finding b2b).
    with running_alliance(tmp_path, pki, custodians=1, quota=10) as alliance:
        engine = alliance.custodian_engines[0]
        with CustodianClient(alliance.custodian_addresses[0], pki.material("bank-a"), name=CUSTODIAN) as client:
            with pytest.raises(InvalidRequest, match="not a canonical ristretto255 encoding"):
                client.evaluate(EPOCH, [*GOOD[:3], UNDECODABLE])
            assert used(engine) == 4  # Nothing was returned, and the batch is charged.
            assert len(client.evaluate(EPOCH, GOOD)) == 6
        assert used(engine) == 10
        actions = [(action, detail.get("used")) for action, detail in audit(engine)]
        assert actions == [("evaluate", 4), ("evaluate", 10)]


def test_a_batch_sent_again_gets_the_same_answer_and_is_charged_once(tmp_path: Path, pki: AlliancePki) -> None:
    with running_alliance(tmp_path, pki, custodians=1, quota=10) as alliance:
        engine = alliance.custodian_engines[0]
        with (
            CustodianClient(alliance.custodian_addresses[0], pki.material("bank-a"), name=CUSTODIAN) as a,
            CustodianClient(alliance.custodian_addresses[0], pki.material("bank-b"), name=CUSTODIAN) as b,
        ):
            first = a.evaluate(EPOCH, GOOD)
            assert a.evaluate(EPOCH, GOOD) == first  # A retry, or a resumed join: the same answer, free.
            assert a.evaluate(EPOCH, GOOD) == first
            assert a.epoch().used == 6
            # Another order is another batch; so is the same batch from another member.
            a.evaluate(EPOCH, GOOD[:3][::-1])
            b.evaluate(EPOCH, GOOD)
        assert (used(engine, "bank-a"), used(engine, "bank-b")) == (9, 6)
        # The re-sends were answered from the custodian's kept answers: no charge, no transaction.
        charged = [detail["charged"] for action, detail in audit(engine) if action == "evaluate"]
        assert charged == [6, 3, 6]


def test_re_sending_one_batch_on_every_slot_costs_the_custodian_no_evaluation(tmp_path: Path, pki: AlliancePki) -> None:
    """Adversary finding 9: bank-a re-sends one batch on all its call slots, for free, while
    bank-b works. Every re-send is answered from the kept answers (no evaluation, no charge,
    no audit entry), and bank-b's evaluations all complete."""
    hostile = [blind(b"phone\x00+8613900%06d" % i).blinded_element for i in range(1024)]
    with running_alliance(tmp_path, pki, custodians=1, quota=100_000) as alliance:
        engine, address = alliance.custodian_engines[0], alliance.custodian_addresses[0]
        with (
            CustodianClient(address, pki.material("bank-a"), name=CUSTODIAN) as a,
            CustodianClient(address, pki.material("bank-b"), name=CUSTODIAN) as b,
        ):
            first = a.evaluate(EPOCH, hostile)
            answers: list[bool] = []

            def resend() -> None:
                for _ in range(10):
                    answers.append(a.evaluate(EPOCH, hostile) == first)

            threads = [threading.Thread(target=resend) for _ in range(7)]  # 7 of bank-a's 8 slots.
            for thread in threads:
                thread.start()
            victim = [b.evaluate(EPOCH, GOOD[i : i + 1] + GOOD[:i]) for i in range(6)]
            for thread in threads:
                thread.join()
        assert answers == [True] * 70
        assert [len(answer) for answer in victim] == [1, 2, 3, 4, 5, 6]
        assert (used(engine, "bank-a"), used(engine, "bank-b")) == (1024, 21)
        evaluated = [(entry["elements"], entry["charged"]) for action, entry in audit(engine) if action == "evaluate"]
        assert sorted(evaluated) == sorted([(1024, 1024), *((n, n) for n in range(1, 7))])


def test_re_sends_evaluated_again_are_free_up_to_the_bound_then_charged(tmp_path: Path, pki: AlliancePki) -> None:
    """Without kept answers (a restarted custodian, or answers dropped from memory) a re-send is
    computed again: free for 12 elements per member and epoch here, then charged as a new batch."""
    bounds = {"kept_answers_per_member": 0, "free_resent_per_member": 12}
    with running_alliance(tmp_path, pki, custodians=1, quota=20, custodian_options=bounds) as alliance:
        engine = alliance.custodian_engines[0]
        with CustodianClient(alliance.custodian_addresses[0], pki.material("bank-a"), name=CUSTODIAN) as a:
            first = a.evaluate(EPOCH, GOOD)
            assert [a.evaluate(EPOCH, GOOD) for _ in range(4)] == [first] * 4
            assert evaluate_raw(a, GOOD) is grpc.StatusCode.RESOURCE_EXHAUSTED  # 18 + 6 > 20.
        assert used(engine) == 18
        charged = [detail["charged"] for action, detail in audit(engine) if action == "evaluate"]
        assert charged == [6, 0, 0, 6, 6]
