"""node.toml as a newcomer writes it: ``--config`` before or after the command, paths relative to
the file, and a node database that only ``node import`` may create (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import inspect, text

from alliance_psi.cli.main import main
from alliance_psi.cli.node import node_group
from alliance_psi.config import NODE_FILE_KEYS, read_node_file, resolve_database_url
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.errors import ConfigurationError
from tests.helpers.printed import quoted_commands, run_as_printed

NODE_COMMANDS = sorted(node_group.list_commands(None))  # type: ignore[arg-type]
# Enough for every node command to reach its database; nothing here is ever dialled.
NETWORK = """member-id = "bank-a"
ca = "ca.pem"
cert = "bank-a.pem"
key = "bank-a.key"
coordinator = "localhost:1"
custodian = ["custodian-1@localhost:2", "custodian-2@localhost:3"]
coordinator-key = "signing.pub"
data-dir = "secrets"
"""
# Each node command with the arguments it needs to get as far as its database.
ARGUMENTS = {
    "alerts": [],
    "checkpoints-check": ["checkpoints.json"],
    "checkpoints-export": ["-o", "checkpoints.json"],
    "delta": ["s-1"],
    "fetch": ["r-1"],
    "follow": [],
    "import": ["blacklist.csv"],
    "join": ["r-1"],
    "purge-expired": [],
    "report": ["r-1", "--format", "json", "-o", "out.json"],
    "results": [],
    "run": [],
    "status": [],
    "withdraw": ["--type", "phone", "--stdin"],
}


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def node_folder(tmp_path: Path, pki) -> Path:  # type: ignore[no-untyped-def]
    """bank-a/ with node.toml (database and paths relative to it), its files and a blacklist, like the README's."""
    folder = tmp_path / "bank-a"
    folder.mkdir()
    for name in ("ca.pem", "bank-a.pem", "bank-a.key"):
        shutil.copy(pki.directory / name, folder / name)
    (folder / "node.toml").write_text(f'[node]\ndatabase = "sqlite:///bank-a.db"\n{NETWORK}', encoding="utf-8")
    (folder / "blacklist.csv").write_text("type,value\nphone,139 1527 4680\nqq,48213679\n", encoding="utf-8")
    (folder / "signing.pub").write_text(SigningKey.generate().public_key.hex() + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current directory: another folder than the one node.toml is in."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    return other


def test_every_node_command_is_covered() -> None:
    assert NODE_COMMANDS == sorted(ARGUMENTS)


@pytest.mark.parametrize("command", NODE_COMMANDS)
def test_config_is_read_before_and_after_the_command_name(command: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n", encoding="utf-8")
    for args in (["node", "--config", str(bad), command], ["node", command, "--config", str(bad)]):
        result = run(*args, *ARGUMENTS[command])
        assert result.exit_code == 2 and f"{bad} is not valid TOML" in result.output, (args, result.output)


def test_import_with_config_after_the_command_uses_the_files_folder(node_folder: Path, elsewhere: Path) -> None:
    imported = run("node", "import", str(node_folder / "blacklist.csv"), "--config", str(node_folder / "node.toml"))
    assert imported.exit_code == 0, imported.output
    assert (node_folder / "bank-a.db").exists() and not (elsewhere / "bank-a.db").exists()
    toml = str(node_folder / "node.toml")
    for args in (["node", "status", "--config", toml], ["node", "--config", toml, "status"]):
        status = run(*args)
        assert status.exit_code == 0, status.output
        assert re.search(r"^\s*total\s+2\s*$", status.output, re.MULTILINE), status.output


def test_a_config_after_the_command_wins_over_one_before_it(node_folder: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[node]\ndatabase = "sqlite:///other.db"\n', encoding="utf-8")
    toml = str(node_folder / "node.toml")
    result = run("node", "--config", toml, "import", str(node_folder / "blacklist.csv"), "--config", str(other))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "other.db").exists() and not (node_folder / "bank-a.db").exists()


@pytest.mark.parametrize("command", [c for c in NODE_COMMANDS if c != "import"])
def test_only_import_creates_the_node_database(command: str, node_folder: Path, elsewhere: Path) -> None:
    given = f"../{node_folder.name}/node.toml"  # Relative to the current folder, as a user types it.
    result = run("node", command, *ARGUMENTS[command], "--config", given)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(
        f"Error: no node database at {node_folder / 'bank-a.db'}: `alliance-psi node import FILE --config {given}` "
        "creates it (no other node command does)"
    ), result.output
    assert not (node_folder / "bank-a.db").exists() and not (node_folder / "secrets").exists()
    assert list(elsewhere.iterdir()) == []
    # The suggested command runs as printed.
    (hint,) = quoted_commands(result.output)
    imported = run_as_printed(hint, FILE=str(node_folder / "blacklist.csv"))
    assert imported.exit_code == 0, imported.output
    assert (node_folder / "bank-a.db").exists() and list(elsewhere.iterdir()) == []


@pytest.fixture
def empty_postgres(pg_admin_engine) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A PostgreSQL database with no tables, its URL carrying a password that must never be shown."""
    name = f"node_{uuid.uuid4().hex[:12]}"
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_admin_engine.url.set(database=name)
    yield url.render_as_string(hide_password=False)
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_only_import_creates_the_node_tables_on_postgresql(empty_postgres: str, tmp_path: Path) -> None:
    from alliance_psi.storage import make_engine

    refused = run("node", "status", "--database", empty_postgres)
    assert refused.exit_code == 1 and "holds no node database: `alliance-psi node import FILE` creates it" in (
        refused.output
    )
    engine = make_engine(empty_postgres)
    try:
        assert inspect(engine).get_table_names() == []
        password = engine.url.password
        assert not password or str(password) not in refused.output
        source = tmp_path / "blacklist.csv"
        source.write_text("type,value\nphone,13915274680\n", encoding="utf-8")
        assert run("node", "import", str(source), "--database", empty_postgres).exit_code == 0
        assert "identifiers" in inspect(engine).get_table_names()
        assert run("node", "status", "--database", empty_postgres).exit_code == 0
    finally:
        engine.dispose()


def test_read_node_file_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    folder.mkdir()
    settings = folder / "node.toml"
    settings.write_text(
        '[node]\ndatabase = "sqlite:///db/bank-a.db?timeout=5"\nca = "/etc/alliance/ca.pem"\n'
        'cert = "pki/bank-a.pem"\ndata-dir = "."\nmember-id = "pki/not-a-path"\n',
        encoding="utf-8",
    )
    values = read_node_file(Path(str(settings)))
    assert values == {
        "database": f"sqlite:///{folder}/db/bank-a.db?timeout=5",
        "ca": "/etc/alliance/ca.pem",
        "cert": str(folder / "pki" / "bank-a.pem"),
        "data-dir": str(folder),
        "member-id": "pki/not-a-path",
    }


def test_read_node_file_resolves_each_custodians_ca_against_its_folder(tmp_path: Path) -> None:
    settings = tmp_path / "node.toml"
    settings.write_text(
        '[node]\ncustodian = ["custodian-1@h:1", "custodian-2@h:2,ca=c2/ca.pem", '
        '{ name = "custodian-3", address = "h:3", ca = "/etc/c3.pem" }, { name = "custodian-4", address = "h:4" }]\n',
        encoding="utf-8",
    )
    assert read_node_file(settings)["custodian"] == [
        "custodian-1@h:1",
        f"custodian-2@h:2,ca={tmp_path / 'c2' / 'ca.pem'}",
        {"name": "custodian-3", "address": "h:3", "ca": "/etc/c3.pem"},
        {"name": "custodian-4", "address": "h:4"},
    ]


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:////srv/node/bank-a.db",
        "postgresql+psycopg://alliance:secret@db.internal/alliance",
        "sqlite:///file:bank-a.db?mode=ro&uri=true",
    ],
)
def test_database_urls_that_name_no_relative_file_stay_as_written(url: str, tmp_path: Path) -> None:
    assert resolve_database_url(url, tmp_path) == url


@pytest.mark.parametrize("command", NODE_COMMANDS)
def test_a_database_path_without_a_url_scheme_is_refused_naming_database(
    command: str, node_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(node_folder)
    (node_folder / "node.toml").write_text(f'[node]\ndatabase = "bank-a.db"\n{NETWORK}', encoding="utf-8")
    config = ("--config", str(node_folder / "node.toml"))
    for given in (config, (*config, "--database", "bank-a.db")):
        refused = run("node", command, *given, *ARGUMENTS[command])
        assert refused.exit_code == 2, refused.output
        assert "Invalid value for '--database'" in refused.output
        assert "'bank-a.db' is not a database URL; a SQLite file is written sqlite:///bank-a.db" in refused.output
    assert not list(node_folder.glob("*.db"))


@pytest.mark.parametrize(
    "content, message",
    [
        ("[node\n", "is not valid TOML"),
        ("[other]\n", "unknown key 'other' outside [node]: every setting goes in the [node] table"),
        ("node = 1\n", "has no [node] table"),
        ("[node]\ncert = 5\n", "cert must be a string, not int"),
        ('[node]\ndatabase = ["sqlite:///x.db"]\n', "database must be a string, not list"),
    ],
)
def test_read_node_file_names_what_is_wrong(content: str, message: str, tmp_path: Path) -> None:
    settings = tmp_path / "node.toml"
    settings.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=f"^{settings}.*{message.replace('[', '.').replace(']', '.')}"):
        read_node_file(settings)
    with pytest.raises(ConfigurationError, match="cannot read"):
        read_node_file(tmp_path / "missing.toml")


def test_node_file_keys_are_the_options_the_file_sets() -> None:
    # Every option a node command reads from ALLIANCE_PSI_NODE_* is a key of node.toml, and no more.
    ctx = click.Context(node_group)
    options = {
        param.opts[0].removeprefix("--")
        for name in NODE_COMMANDS
        for param in node_group.get_command(ctx, name).params  # type: ignore[union-attr]
        if isinstance(param.envvar, str) and param.envvar.startswith("ALLIANCE_PSI_NODE_")
    }
    assert options == set(NODE_FILE_KEYS)


@pytest.mark.parametrize(
    "line, message",
    [
        ('databse = "sqlite:///x.db"', "unknown key 'databse' in [node]; did you mean 'database'?"),
        ('memberid = "bank-a"', "unknown key 'memberid' in [node]; did you mean 'member-id'?"),
        ('data_dir = "secrets"', "unknown key 'data_dir' in [node]; did you mean 'data-dir'?"),
        ('coordinator_key = "signing.pub"', "unknown key 'coordinator_key' in [node]; did you mean 'coordinator-key'?"),
        ("colour = 1", f"unknown key 'colour' in [node]; the keys are {', '.join(NODE_FILE_KEYS)}"),
    ],
)
def test_an_unknown_key_is_refused_with_the_closest_and_nothing_is_created(
    line: str, message: str, node_folder: Path, elsewhere: Path
) -> None:
    # Before, data_dir was taken as --data-dir but not resolved against the file's folder: the
    # node made ./secrets in the current directory, apart from the rest of its state.
    settings = node_folder / "node.toml"
    settings.write_text(
        f'[node]\ndatabase = "sqlite:///bank-a.db"\n{NETWORK.replace("data-dir", "# data-dir")}{line}\n',
        encoding="utf-8",
    )
    before = sorted(node_folder.iterdir())
    for args in (
        ["node", "--config", str(settings), "import", str(node_folder / "blacklist.csv")],
        ["node", "join", "r-1", "--config", str(settings)],
    ):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert f"Error: Invalid value for --config: {settings}: {message}" in " ".join(result.output.split()), (
            result.output
        )
    assert sorted(node_folder.iterdir()) == before
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    "content, message",
    [
        ('database = "sqlite:///x.db"\n[node]\n', "unknown key 'database' outside [node]: every setting goes in"),
        (
            '[nodes]\ndatabase = "sqlite:///x.db"\n',
            "unknown key 'nodes' outside [node]: every setting goes in the [node] table; did you mean [node]?",
        ),
    ],
)
def test_a_key_outside_the_node_table_is_refused(content: str, message: str, tmp_path: Path) -> None:
    settings = tmp_path / "node.toml"
    settings.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError) as refused:
        read_node_file(settings)
    assert str(refused.value).startswith(f"{settings}: {message}")


def test_a_node_file_saved_with_a_byte_order_mark_is_read(node_folder: Path, elsewhere: Path) -> None:
    settings = node_folder / "node.toml"
    settings.write_text(settings.read_text(encoding="utf-8"), encoding="utf-8-sig")  # As Notepad saves it.
    assert settings.read_bytes().startswith(b"\xef\xbb\xbf")
    imported = run("node", "import", str(node_folder / "blacklist.csv"), "--config", str(settings))
    assert imported.exit_code == 0, imported.output
    assert (node_folder / "bank-a.db").exists() and list(elsewhere.iterdir()) == []


def test_a_utf16_node_file_is_refused_naming_its_byte_order_mark(tmp_path: Path) -> None:
    settings = tmp_path / "node.toml"
    settings.write_text('[node]\ndatabase = "sqlite:///x.db"\n', encoding="utf-16")
    result = run("node", "status", "--config", str(settings))
    assert result.exit_code == 2
    assert f"{settings} is not UTF-8 text (it starts with a UTF-16 byte order mark): save it as UTF-8" in " ".join(
        result.output.split()
    ), result.output
    assert list(tmp_path.iterdir()) == [settings]


def test_report_of_a_round_not_joined_suggests_a_join_that_runs(node_folder: Path, elsewhere: Path) -> None:
    given = f"../{node_folder.name}/node.toml"
    assert run("node", "import", str(node_folder / "blacklist.csv"), "--config", given).exit_code == 0
    result = run("node", "report", "r-nope", "--config", given, "--format", "html", "-o", "leads.html")
    assert (result.exit_code, result.output) == (
        1,
        f"Error: no result kept for round r-nope: run `alliance-psi node join r-nope --config {given}` first\n",
    )
    # As printed, the join has every option it needs: it goes as far as the (absent) coordinator.
    (join,) = quoted_commands(result.output)
    joined = run_as_printed(join)
    assert joined.exit_code == 1, joined.output
    assert joined.output.splitlines()[-1].startswith(
        "Error: the coordinator at localhost:1 is unreachable after 4 attempts: nothing accepts connections there"
    ), joined.output
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("value", ["0", "-2"])
def test_a_worker_count_below_one_is_refused_on_the_command_line_and_in_node_toml(
    node_folder: Path, value: str
) -> None:
    config = str(node_folder / "node.toml")
    given = run("node", "--config", config, "join", "r-1", "--workers", value)
    assert given.exit_code == 2 and "--workers" in given.output and "is not in the range x>=1" in given.output
    (node_folder / "node.toml").write_text(
        (node_folder / "node.toml").read_text(encoding="utf-8") + f"workers = {value}\n", encoding="utf-8"
    )
    from_file = run("node", "--config", config, "join", "r-1")
    assert from_file.exit_code == 2 and "workers" in from_file.output and "x>=1" in from_file.output


def test_member_config_refuses_a_worker_count_below_one() -> None:
    from alliance_psi.config import MemberConfig, PeerEndpoint, TlsConfig

    with pytest.raises(ConfigurationError, match="workers .crypto worker processes. must be at least 1, got 0"):
        MemberConfig(
            member_id="bank-a",
            database="sqlite://",
            tls=TlsConfig(Path("ca.pem"), Path("a.pem"), Path("a.key")),
            coordinator=PeerEndpoint("coordinator", "localhost:1"),
            custodians=(),
            coordinator_public_key=Path("signing.pub"),
            data_dir=Path("secrets"),
            workers=0,
        )
