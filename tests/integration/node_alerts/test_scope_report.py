"""``node report SCOPE`` for a continuous scope: the leads that stand now, each with its signed
alert, signed by the node, and saying it is a scope's state, not a round's result."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, update

from alliance_psi.cli.main import main
from alliance_psi.protocol.alerts import AlertKind, SignedAlert, verify_alert
from alliance_psi.reports import check_member_signature
from alliance_psi.reports.render import CSV_COLUMNS
from alliance_psi.storage import MemberRepository, create_schema, make_engine
from alliance_psi.storage.schema import member_alerts

from .fake_alerts import MEMBER, SCOPE_ID, FakeCoordinator, load_node, peer_label, value
from .test_follower import follower


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def node(tmp_path: Path, pki) -> tuple[Path, Engine, FakeCoordinator]:  # type: ignore[no-untyped-def]
    """bank-a's folder, a node database that applied alerts for identifiers 0..4, and the coordinator."""
    folder = tmp_path / "bank-a"
    folder.mkdir()
    for name in ("ca.pem", "bank-a.pem", "bank-a.key"):
        shutil.copy(pki.directory / name, folder / name)
    engine = make_engine(f"sqlite:///{folder / 'node.db'}")
    create_schema(engine)
    load_node(engine, range(5))
    coordinator = FakeCoordinator()
    (folder / "signing.pub").write_text(coordinator.key.public_key.hex() + "\n")
    coordinator.alert(AlertKind.MATCH, 1, 2, (peer_label(1, "bank-b"),))
    coordinator.alert(AlertKind.MATCH, 2, 2, (peer_label(2, "bank-b"),))
    coordinator.alert(AlertKind.JOINED, 1, 3, (peer_label(1, "bank-b"), peer_label(1, "bank-c")))
    coordinator.alert(AlertKind.MATCH, 3, 2, (peer_label(3, "bank-c"),))
    coordinator.alert(AlertKind.RETRACTED, 2, 1)
    follower(engine, coordinator).follow(threading.Event())
    with engine.begin() as conn:
        MemberRepository(conn).withdraw("phone", value(3))
    return folder, engine, coordinator


def report(folder: Path, fmt: str, *extra: str) -> Result:
    return run(
        "node", "report", SCOPE_ID, "--format", fmt, "-o", str(folder / f"state.{fmt}"),
        "--database", f"sqlite:///{folder / 'node.db'}", "--member-id", MEMBER,
        "--coordinator-key", str(folder / "signing.pub"), "--cert", str(folder / "bank-a.pem"),
        "--key", str(folder / "bank-a.key"), *extra,
    )  # fmt: skip


def test_the_state_holds_the_standing_leads_with_their_signed_alerts(node, pki) -> None:  # type: ignore[no-untyped-def]
    folder, _, coordinator = node
    result = report(folder, "json")
    assert result.exit_code == 0, result.output
    assert "the current state of continuous scope watch-1, 1 standing lead as of alert 5 (not a round's result)" in (
        " ".join(result.output.split())
    )
    document = json.loads((folder / "state.json").read_text())
    assert document["report_kind"] == "continuous-scope state" and "not the result of a round" in document["statement"]
    (lead,) = document["leads"]  # Identifier 2 was retracted, identifier 3 withdrawn.
    assert (lead["value"], lead["holder_count"], lead["alert"]["kind"]) == (value(1), 3, "joined")
    assert sorted(label["member"] for label in lead["peer_labels"]) == ["bank-b", "bank-c"]
    signed = SignedAlert(
        base64.b64decode(lead["alert"]["alert_b64"]), base64.b64decode(lead["alert"]["signature_b64"]), ""
    )
    assert verify_alert(coordinator.key.public_key, signed, member_id=MEMBER).holder_count == 3
    assert check_member_signature(document, ca_cert_pem=(folder / "ca.pem").read_bytes()).member_id == MEMBER
    assert (folder / "state.json").stat().st_mode & 0o777 == 0o600


def test_the_csv_starts_with_its_header_and_the_terminal_says_what_it_is(node) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = node
    result = report(folder, "csv")
    assert result.exit_code == 0, result.output
    assert "The leads that stand in continuous scope watch-1 as of alert 5" in result.output
    text = (folder / "state.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))  # What a CSV reader sees: the header, then the leads.
    assert len(rows) == 1 and tuple(rows[0]) == CSV_COLUMNS
    assert value(1) in text and value(2) not in text


def test_html_is_refused_for_a_scope(node) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = node
    result = report(folder, "html")
    assert result.exit_code != 0 and "is a continuous scope" in result.output


@pytest.mark.parametrize(
    "sequence, change",
    [(3, {"holder_count": 9}), (5, {"kind": "match"})],  # A retraction edited into a match: a lead again.
    ids=["holders", "kind"],
)
def test_a_kept_alert_changed_in_the_database_is_refused(node, sequence: int, change: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    folder, engine, _ = node
    with engine.begin() as conn:
        conn.execute(update(member_alerts).where(member_alerts.c.sequence == sequence).values(**change))
    result = report(folder, "json")
    assert result.exit_code == 1 and "does not match the alert the coordinator signed" in result.output
    assert not (folder / "state.json").exists()
