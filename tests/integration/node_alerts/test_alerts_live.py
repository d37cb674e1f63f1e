"""The member node's alert side against the real coordinator over mTLS on loopback: retraction
after a withdrawal, nothing for a member that holds nothing, and ``node follow`` killed and
restarted (a real process) with nothing lost or applied twice, its webhook down, then up.

The members' deltas travel the real way (chunks and commits over gRPC, ``tests.helpers.continuous``)
with tokens the node databases hold and labels sealed for real under each identifier's label key in
the scope, so the nodes' label checks run for real. Nothing waits on a clock to assert anything:
each wait is for a state, bounded by the test's timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from alliance_psi.crypto.labels import LabelContext, seal_label
from alliance_psi.protocol.alert_follower import AlertFollower, Backoff
from alliance_psi.protocol.leads import LeadLabel
from alliance_psi.protocol.node_alerts import Channel, DeliveryState, NoticePolicy
from alliance_psi.protocol.node_rows import CachedToken
from alliance_psi.services.member import SqlNodeUnitOfWork
from alliance_psi.storage import KeptResults, MemberRepository, create_schema, make_engine
from alliance_psi.storage.node_alerts import AlertFilter, NodeAlerts
from tests.helpers.continuous import DeltaSender, token
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import Alliance
from tests.integration.services.test_alert_delivery import alliance_with_scope, client

from .support import Receiver, free_port, write_secret

pytestmark = pytest.mark.timeout(240)

EPOCH = "epoch-test"
HEARTBEAT = {"alert_heartbeat": 0.5, "alert_poll": 0.1}  # A follower sees its stop within a heartbeat.


def phone(i: int) -> str:
    return f"+86139{(i * 48271 + 20481736) % 10**8:08d}"


def label_key(i: int) -> bytes:
    return hashlib.sha256(b"label key %d" % i).digest()


def nonce_key(member: str) -> bytes:
    return hashlib.sha256(b"nonce " + member.encode()).digest()


class Member:
    """One member: its node database (identifiers with their tokens) and its deltas to the scope."""

    def __init__(self, alliance: Alliance, scope_id: str, name: str, folder: Path) -> None:
        self.name, self.scope_id, self.alliance = name, scope_id, alliance
        self.set_scope = f"continuous:{scope_id}/{EPOCH}/phone/labels"
        folder.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{folder / 'node.db'}"
        self.engine = make_engine(self.url)
        create_schema(self.engine)
        with self.engine.begin() as conn:
            KeptResults(conn).record_scope(scope_id, self.set_scope, share_labels=True)
        self.sender = DeltaSender(client(alliance, name), name, scope_id)

    def hold(self, *numbers: int) -> None:
        """Import identifiers and commit their tokens and sealed labels to the scope."""
        with self.engine.begin() as conn:
            repo = MemberRepository(conn)
            rows = [
                {"type": "phone", "canonical": phone(i), "category": "wool_party", "severity": "level2"}
                for i in numbers
            ]
            repo.upsert_identifiers(rows)
            ids = {ref.canonical: ref.id for ref in repo.iter_identifiers()}
            repo.cache_tokens(EPOCH, [CachedToken(ids[phone(i)], token(i), label_key(i)) for i in numbers])
        self.sender.send({token(i): self.sealed(i) for i in numbers})

    def withdraw(self, *numbers: int) -> None:
        with self.engine.begin() as conn:
            for i in numbers:
                MemberRepository(conn).withdraw("phone", phone(i))
        self.sender.send(removals=[token(i) for i in numbers])

    def sealed(self, i: int) -> bytes:
        context = LabelContext(EPOCH, token(i), self.set_scope)
        plaintext = LeadLabel("wool_party", "level2", None, f"{self.name}-{i}").encode()
        return seal_label(label_key(i), plaintext, context, sealer_key=nonce_key(self.name))

    def applied(self) -> int:
        with self.engine.connect() as conn:
            return NodeAlerts(conn).applied_sequence("coordinator")

    def alerts(self) -> list[tuple[int, str, int, str | None]]:
        with self.engine.connect() as conn:
            return [(a.sequence, a.kind, a.holder_count, a.refused) for a in reversed(NodeAlerts(conn).find())]


@contextlib.contextmanager
def following(member: Member, until: int) -> Iterator[threading.Event]:
    """``member``'s follower in a thread until it applied alert ``until`` (or the block ends)."""
    reached, stop = threading.Event(), threading.Event()
    follower = AlertFollower(
        member_id=member.name,
        uow=SqlNodeUnitOfWork(member.engine),
        calls=client(member.alliance, member.name),
        coordinator_key=member.alliance.signing_key.public_key,
        nonce_key=nonce_key(member.name),
        policy=NoticePolicy((Channel.CONSOLE,)),
        backoff=Backoff(first=0.05, most=0.2),
        applied=lambda: reached.set() if member.applied() >= until else None,
    )
    thread = threading.Thread(target=follower.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield reached
    finally:
        stop.set()
        thread.join(timeout=30)


def test_a_withdrawal_retracts_the_lead_at_the_remaining_holder(tmp_path: Path, pki: AlliancePki) -> None:
    with alliance_with_scope(tmp_path, pki, **HEARTBEAT) as (alliance, scope_id):
        a, b = (Member(alliance, scope_id, name, tmp_path / name) for name in ("bank-a", "bank-b"))
        a.hold(1, 2)
        b.hold(1)
        with following(a, until=1) as reached:
            assert reached.wait(60)
        assert a.alerts() == [(1, "match", 2, None)]
        with a.engine.connect() as conn:
            (lead,) = NodeAlerts(conn).find(AlertFilter(current=True))
            assert [label.case_ref for label in lead.peer_labels] == ["bank-b-1"]  # Opened: checked for real.
        b.withdraw(1)
        with following(a, until=2) as reached:
            assert reached.wait(60)
        assert a.alerts() == [(1, "match", 2, None), (2, "retracted", 1, None)]
        with a.engine.connect() as conn:
            alerts = NodeAlerts(conn)
            assert alerts.find(AlertFilter(current=True)) == []  # The lead is no longer current.
            assert not alerts.is_current(scope_id, token(1))
            assert [m.state for m in alerts.messages(sequence=2)] == [DeliveryState.PENDING]


def test_a_member_that_holds_nothing_receives_nothing(tmp_path: Path, pki: AlliancePki) -> None:
    with alliance_with_scope(tmp_path, pki, **HEARTBEAT) as (alliance, scope_id):
        a, b, c = (Member(alliance, scope_id, name, tmp_path / name) for name in ("bank-a", "bank-b", "bank-c"))
        c.hold(9)
        a.hold(1)
        b.hold(1)
        with following(a, until=1) as reached:
            assert reached.wait(60)  # The match is released: bank-c's alerts would be too.
        with client(alliance, "bank-c") as coordinator:
            assert coordinator.ack_alerts(0) == (0, 0)  # Nothing released for bank-c.
        with following(c, until=1):
            pass
        assert c.alerts() == [] and c.applied() == 0


def node_toml(member: Member, folder: Path, alliance: Alliance, pki: AlliancePki) -> Path:
    secrets = folder / "secrets"
    secrets.mkdir()
    (secrets / "label-nonce.key").write_bytes(nonce_key(member.name))
    (secrets / "label-nonce.key").chmod(0o600)
    (folder / "signing.pub").write_text(alliance.signing_key.public_key.hex() + "\n")
    toml = folder / "node.toml"
    toml.write_text(
        f'[node]\ndatabase = "{member.url}"\nmember-id = "{member.name}"\nca = "{pki.directory / "ca.pem"}"\n'
        f'cert = "{pki.directory / (member.name + ".pem")}"\nkey = "{pki.directory / (member.name + ".key")}"\n'
        f'coordinator = "coordinator@{alliance.coordinator_address}"\ncustodian = ["custodian-1@127.0.0.1:1"]\n'
        'coordinator-key = "signing.pub"\ndata-dir = "secrets"\nalert-log = "alerts.jsonl"\n'
    )
    return toml


def start(toml: Path, receiver: Receiver) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "alliance_psi.cli.main", "node", "follow", "--config", str(toml),
        "--webhook-url", receiver.url, "--webhook-secret-file", str(toml.parent / "webhook.secret"),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


def wait_for(condition: object, process: subprocess.Popen[str]) -> None:
    while not condition():  # type: ignore[operator]
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        time.sleep(0.1)


def test_node_follow_killed_and_restarted_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, pki: AlliancePki
) -> None:
    with alliance_with_scope(tmp_path, pki, **HEARTBEAT) as (alliance, scope_id):
        folder = tmp_path / "bank-a"
        a, b = Member(alliance, scope_id, "bank-a", folder), Member(alliance, scope_id, "bank-b", tmp_path / "bank-b")
        toml = node_toml(a, folder, alliance, pki)
        write_secret(folder / "webhook.secret")
        receiver = Receiver(free_port())  # Down until the node's restart.
        a.hold(*range(1, 7))
        follower = start(toml, receiver)
        try:
            for i in (1, 2, 3):
                b.hold(i)
            wait_for(lambda: a.applied() >= 3, follower)
            follower.send_signal(signal.SIGKILL)
            follower.wait(timeout=30)
            for i in (4, 5, 6):
                b.hold(i)  # Released while the node is down.
            with receiver.serving():
                follower = start(toml, receiver)
                wait_for(lambda: a.applied() >= 6, follower)
                wait_for(lambda: _all_delivered(a.engine), follower)
            follower.send_signal(signal.SIGTERM)
            output, _ = follower.communicate(timeout=60)
            assert follower.returncode == 0, output
            assert "stopped" in output
        finally:
            if follower.poll() is None:
                follower.kill()
        assert [s for s, *_ in a.alerts()] == [1, 2, 3, 4, 5, 6]
        assert all(kind == "match" and refused is None for _, kind, _, refused in a.alerts())
        with client(alliance, "bank-a") as coordinator:
            assert coordinator.ack_alerts(0) == (6, 6)
        ids = {request.headers["webhook-id"] for request in receiver.requests}
        with a.engine.connect() as conn:
            expected = {m.message_id for m in NodeAlerts(conn).messages() if m.channel is Channel.WEBHOOK}
        assert ids == expected and len(expected) == 6
        logged = [json.loads(line) for line in (folder / "alerts.jsonl").read_text().splitlines()]
        assert {line["data"]["sequence"] for line in logged} == {1, 2, 3, 4, 5, 6}


def _all_delivered(engine: Engine) -> bool:
    with engine.connect() as conn:
        messages = NodeAlerts(conn).messages()
    return len(messages) == 18 and all(m.state is DeliveryState.DELIVERED for m in messages)
