"""``node alerts`` (list, filters, show, ack, dead letters, redeliver) and ``node follow``'s refusal
of a bad notifier configuration, through the real command line."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from alliance_psi.cli.main import main
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.node_alerts import Channel, NoticePolicy
from alliance_psi.protocol.node_rows import CachedToken
from alliance_psi.storage import MemberRepository, create_schema, make_engine
from alliance_psi.storage.node_alerts import NodeAlerts
from tests.helpers.printed import quoted_commands, run_as_printed

from .support import applied, write_secret

VALUE = "+8613915274680"


def token(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()[:16]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def database(tmp_path: Path) -> str:
    """A node database holding one identifier (token "a") and three alerts about tokens a, b and a."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = make_engine(url)
    create_schema(engine)
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.upsert_identifiers(
            [{"type": "phone", "canonical": VALUE, "category": "anti_collection", "severity": "level1"}]
        )
        (ref,) = repo.iter_identifiers()
        repo.cache_tokens("epoch-test", [CachedToken(ref.id, token("a"), bytes(32))])
    policy = NoticePolicy((Channel.WEBHOOK, Channel.CONSOLE))
    for alert in (
        applied(1, token("a")),
        applied(2, token("b")),
        applied(3, token("a"), kind="joined", holders=3),
    ):
        with engine.begin() as conn:
            NodeAlerts(conn).apply("coordinator", alert, policy.messages(alert, None))
    with engine.begin() as conn:
        NodeAlerts(conn).failed(1, Channel.WEBHOOK, at=alert.applied_at, error="HTTP 503: down", retry_at=None)
    engine.dispose()
    return url


def test_alerts_are_listed_newest_first_with_identifiers_masked(database: str) -> None:
    result = run("node", "alerts", "--database", database)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == ["seq", "3", "2", "1"]
    assert "phone ****4680" in lines[1] and "current" in lines[1] and "joined" in lines[1]
    assert " - " in lines[2] and "past" in lines[3]  # Token b is not the node's (any more).
    assert "13915274680" not in result.output


def test_filters(database: str) -> None:
    current = run("node", "alerts", "--database", database, "--current")
    assert [line.split()[0] for line in current.output.splitlines()[1:]] == ["3", "2"]
    kind = run("node", "alerts", "--database", database, "--kind", "joined")
    assert [line.split()[0] for line in kind.output.splitlines()[1:]] == ["3"]
    none = run("node", "alerts", "--database", database, "--scope", "another")
    assert none.output.strip() == "no alerts match these filters"


def test_show_ack_and_show_again(database: str) -> None:
    shown = run("node", "alerts", "3", "--database", database)
    assert shown.exit_code == 0, shown.output
    assert "phone ****4680" in shown.output and "holders         3 (threshold 2)" in shown.output
    assert "wool_party level1 - B-77, from bank-b (attested)" in shown.output
    assert "yes: a current lead" in shown.output
    full = run("node", "alerts", "3", "--full", "--database", database)
    assert VALUE in full.output
    acked = run("node", "alerts", "3", "--ack", "--note", "case 2026-118", "--database", database)
    assert acked.output.strip() == "alert 3 acknowledged"
    again = run("node", "alerts", "3", "--ack", "--database", database)
    assert again.output.strip() == "alert 3 was already acknowledged"
    assert "case 2026-118" in run("node", "alerts", "3", "--database", database).output
    unacked = run("node", "alerts", "--unacked", "--database", database)
    assert [line.split()[0] for line in unacked.output.splitlines()[1:]] == ["2", "1"]


def test_dead_letters_are_listed_and_redelivered(database: str) -> None:
    dead = run("node", "alerts", "--dead", "--database", database)
    assert "webhook" in dead.output and "HTTP 503: down" in dead.output
    again = run("node", "alerts", "1", "--redeliver", "--database", database)
    assert again.exit_code == 0 and "webhook notice sent again" in again.output
    assert "no dead letters" in run("node", "alerts", "--dead", "--database", database).output
    nothing = run("node", "alerts", "1", "--redeliver", "--database", database)
    assert nothing.exit_code == 1 and "has no dead notice" in nothing.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["7"], "no alert with id or sequence '7'"),
        (["²"], "no alert with id or sequence '²'"),  # A digit to str.isdigit, not to int().
        (["99999999999999999999"], "no alert with id or sequence '99999999999999999999'"),
        (["--ack"], "need an ALERT"),
        (["1", "--note", "x"], "--note goes with --ack"),
    ],
)
def test_bad_use_says_what_is_wrong(database: str, args: list[str], message: str) -> None:
    result = run("node", "alerts", *args, "--database", database)
    assert result.exit_code != 0 and message in result.output


@pytest.fixture
def node_folder(tmp_path: Path, pki, database: str) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "bank-a"
    folder.mkdir()
    for name in ("ca.pem", "bank-a.pem", "bank-a.key"):
        shutil.copy(pki.directory / name, folder / name)
    (folder / "signing.pub").write_text(SigningKey.generate().public_key.hex() + "\n")
    (folder / "node.toml").write_text(
        f'[node]\ndatabase = "{database}"\nmember-id = "bank-a"\nca = "ca.pem"\ncert = "bank-a.pem"\n'
        'key = "bank-a.key"\ncoordinator = "localhost:1"\ncustodian = ["custodian-1@localhost:2"]\n'
        'coordinator-key = "signing.pub"\ndata-dir = "secrets"\n'
    )
    return folder


@pytest.mark.parametrize("args", [["99"], ["2", "--redeliver"]])
def test_an_alert_not_found_suggests_the_listing_with_the_config(
    node_folder: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README promises suggested commands run as printed: the listing, with the --config given.
    monkeypatch.chdir(node_folder.parent)
    result = run("node", "alerts", *args, "--config", "bank-a/node.toml")
    assert result.exit_code == 1
    suggested = quoted_commands(result.output)
    assert suggested == [f"alliance-psi node alerts --config bank-a/node.toml{' --dead' if len(args) > 1 else ''}"]
    assert "node alerts list" not in result.output
    listed = run_as_printed(suggested[0])
    assert listed.exit_code == 0, listed.output


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--webhook-url", "http://cases.example/hook", "--webhook-secret-file", "{secret}"],
            "plain http to cases.example",
        ),
        (["--webhook-url", "cases.example", "--webhook-secret-file", "{secret}"], "give an https:// URL with a host"),
        (["--webhook-url", "https://cases.example/hook"], "--webhook-url needs --webhook-secret-file"),
        (["--webhook-url", "https://cases.example/hook", "--webhook-secret-file", "{missing}"], "does not exist"),
        (
            ["--webhook-url", "https://cases.example/hook", "--webhook-secret-file", "{plain}"],
            "does not start with 'whsec_'",
        ),
        (["--webhook-url", "https://cases.example/hook", "--webhook-secret-file", "{open}"], "chmod 600"),
    ],
)
def test_follow_refuses_a_bad_webhook_configuration(node_folder: Path, options: list[str], message: str) -> None:
    write_secret(node_folder / "webhook.secret")
    (node_folder / "plain.secret").write_text("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n")
    (node_folder / "plain.secret").chmod(0o600)
    write_secret(node_folder / "open.secret")
    (node_folder / "open.secret").chmod(0o644)
    paths = {
        "secret": node_folder / "webhook.secret",
        "missing": node_folder / "nowhere.secret",
        "plain": node_folder / "plain.secret",
        "open": node_folder / "open.secret",
    }
    args = [option.format(**paths) for option in options]
    result = run("node", "follow", "--config", str(node_folder / "node.toml"), *args)
    assert result.exit_code != 0, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
