"""2-of-3 threshold custody with every custodian a real ``custodian serve`` process and the member a
real ``node join`` process: a custodian killed mid-join changes nothing in the tokens; with two down,
the node names both."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from alliance_psi.cli._processes import ServerProcess, cli_command, tls_args
from alliance_psi.cli.main import main
from alliance_psi.crypto import oprf
from alliance_psi.crypto.derive import derive
from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.crypto.threshold_keys import PublicEpoch, ThresholdShare
from alliance_psi.identifiers.types import Identifier, IdentifierType
from alliance_psi.storage import QuotaRepository
from alliance_psi.storage.schema import identifiers as identifiers_table
from alliance_psi.storage.schema import token_cache
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import EPOCH, Alliance, Planted, load, phone, running_alliance
from tests.integration.services.processes import enrol
from tests.integration.test_cli_node_join import write_toml

pytestmark = pytest.mark.timeout(900)

NAMES = ("custodian-1", "custodian-2", "custodian-3")
EXTRA = 6_000  # bank-a's identifiers beyond the planted ones: six batches of 1,024.


def custodian_processes(tmp_path: Path, pki: AlliancePki) -> tuple[Path, list[ServerProcess], list[str]]:
    """A dealt 2-of-3 epoch and its three custodians, each a process on its own quota database."""
    folder = tmp_path / "epoch"
    args = ["custodian", "deal", "--epoch", EPOCH, "--threshold", "2", "--out", str(folder)]
    for name in NAMES:
        args += ["--custodian", name]
    assert CliRunner().invoke(main, args).exit_code == 0
    shares = {name: folder / f"{name}.share" for name in NAMES}
    return folder / "epoch.json", *serve_custodians(tmp_path, pki, shares, folder / "epoch.json")


def serve_custodians(
    tmp_path: Path, pki: AlliancePki, shares: Mapping[str, Path], epoch_file: Path
) -> tuple[list[ServerProcess], list[str]]:
    """A ``custodian serve`` process for each custodian of ``shares`` (name: share file), each
    on its own quota database in ``tmp_path`` where bank-a to -c are enrolled; and the databases."""
    servers, databases = [], []
    for name, share in shares.items():
        database = f"sqlite:///{tmp_path / f'{name}.db'}"
        enrol("custodian", database, pki, ["bank-a", "bank-b", "bank-c"])
        command = ["custodian", "serve", "--name", name, "--listen", "127.0.0.1:0", *tls_args(pki.directory, name)]
        command += ["--key-share", str(share), "--epoch-file", str(epoch_file)]
        servers.append(ServerProcess([*command, "--database", database]))
        databases.append(database)
    return servers, databases


def epoch_key(epoch_file: Path) -> bytes:
    """The dealt key, rebuilt from custodians 1 and 2's share files (only a test does this)."""
    folder = epoch_file.parent
    shares = [ThresholdShare.from_bytes((folder / f"{name}.share").read_bytes()) for name in NAMES[:2]]
    return SUITE.scalar_add(shares[0].folded((1, 2)), shares[1].folded((1, 2)))


def tokens_right(engine: Engine, key: bytes) -> bool:
    """Whether every cached token of the node is the single-key OPRF's (RFC 9497 Evaluate, then derive)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(identifiers_table.c.type, identifiers_table.c.canonical, token_cache.c.match_token).join(
                token_cache, token_cache.c.identifier_id == identifiers_table.c.id
            )
        ).all()
    assert rows
    return all(
        bytes(token) == derive(oprf.evaluate(key, Identifier(IdentifierType(kind), value).oprf_input())).match_token
        for kind, value, token in rows
    )


def used(database: str) -> int:
    from alliance_psi.storage import make_engine

    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            return QuotaRepository(conn).used(EPOCH, "bank-a")
    finally:
        engine.dispose()


def cached(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(token_cache)).scalar_one())


@contextlib.contextmanager
def alliance_of(tmp_path: Path, pki: AlliancePki, epoch_file: Path, servers: list[ServerProcess]) -> Iterator[Alliance]:
    """The harness's coordinator and members, with ``servers`` as the custodians of ``epoch_file``;
    the servers are stopped at the end."""
    try:
        with running_alliance(tmp_path, pki, custodians=0, planted=Planted.make(size=20)) as alliance:
            alliance.custodian_addresses = [server.address for server in servers]
            alliance.public = PublicEpoch.from_bytes(epoch_file.read_bytes())
            yield alliance
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def threshold_alliance(
    tmp_path: Path, pki: AlliancePki
) -> Iterator[tuple[Alliance, Path, list[ServerProcess], list[str]]]:
    epoch_file, servers, databases = custodian_processes(tmp_path, pki)
    with alliance_of(tmp_path, pki, epoch_file, servers) as alliance:
        yield alliance, epoch_file, servers, databases


def test_a_custodian_killed_mid_join_changes_nothing(
    tmp_path: Path, pki: AlliancePki, threshold_alliance: tuple[Alliance, Path, list[ServerProcess], list[str]]
) -> None:
    alliance, epoch_file, servers, databases = threshold_alliance
    node_db = alliance.member_engines["bank-a"]
    load(node_db, [phone(2_000_000 + i) for i in range(EXTRA)], "wool_party")
    round_id = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
    bank_b = alliance.node("bank-b")
    bank_b.tokenize(EPOCH, ["phone"])
    bank_b.submit(bank_b.coordinator.get_round(round_id)[0])
    config = write_toml(tmp_path / "a.toml", pki, alliance, "bank-a", **{"epoch-file": str(epoch_file)})
    join = subprocess.Popen(
        cli_command("node", "--config", str(config), "join", round_id, "--wait", "120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # custodian-1 (first choice) dies once it has answered a batch and while batches remain.
    deadline = time.monotonic() + 300
    while not used(databases[0]) or not cached(node_db):
        assert join.poll() is None, "the join ended before a custodian could be killed"
        assert time.monotonic() < deadline, "the join never started tokenizing"
        time.sleep(0.02)
    os.kill(servers[0].proc.pid, signal.SIGKILL)
    servers[0].proc.wait(timeout=30)
    killed_at = cached(node_db)
    out, err = join.communicate(timeout=600)
    assert join.returncode == 0, out + err
    assert killed_at < cached(node_db)  # Batches were still to come when custodian-1 died.
    assert "round joined; result verified" in out
    assert "warning: custodian custodian-1 is down, using the others" in err, err
    # Every token is RFC 9497's OPRF under the epoch key, whichever custodians made it.
    assert tokens_right(node_db, epoch_key(epoch_file))
    assert used(databases[2]) > 0  # custodian-3 took custodian-1's place.


def test_two_custodians_down_are_both_named(
    tmp_path: Path, pki: AlliancePki, threshold_alliance: tuple[Alliance, Path, list[ServerProcess], list[str]]
) -> None:
    alliance, epoch_file, servers, _ = threshold_alliance
    round_id = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
    for server in servers[1:]:
        server.kill()
    config = write_toml(tmp_path / "a.toml", pki, alliance, "bank-a", **{"epoch-file": str(epoch_file)})
    result = subprocess.run(
        cli_command("node", "--config", str(config), "join", round_id, "--wait", "0"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: key epoch '{EPOCH}' needs 2 of its 3 custodians and only 1 answered: ")
    assert f"custodian-2: custodian custodian-2 at {servers[1].address} is unreachable" in error
    assert f"custodian-3: custodian custodian-3 at {servers[2].address} is unreachable" in error
    assert cached(alliance.member_engines["bank-a"]) == 0


def test_node_run_logs_a_custodian_down_by_name(
    tmp_path: Path, pki: AlliancePki, threshold_alliance: tuple[Alliance, Path, list[ServerProcess], list[str]]
) -> None:
    # A long-running node must say what `node join` says when a threshold custodian is down.
    from tests.integration.node_run.support import node_run, node_toml

    alliance, epoch_file, servers, _ = threshold_alliance
    servers[0].stop()
    round_id = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
    config = node_toml(tmp_path, pki, alliance, "bank-a", **{"epoch-file": str(epoch_file)})
    with node_run(config) as run:
        line = run.wait_for_line("custodian custodian-1 is down")
        run.wait_for_line(f"round {round_id}")
        assert run.stop() == 0
    assert "using the others" in line
    assert not any(phone(i) in run.log for i in range(20))  # Custodian names only, no identifier.
