"""A ``node join`` process killed mid-tokenization and run again is charged once per identifier,
tokenizes none of the batches it had cached again, and ends with the tokens of an uninterrupted run.

Issue 9 §7: batches the custodians had evaluated but the node had not yet cached when it died were
evaluated, and charged, again on the next run (+4.8 % at the README's sizes). The node now
derives each batch's blind from its own secret and the batch, so the rerun re-sends those
batches byte-identical, and the custodians, remembering the digests of charged batches, do not
charge them again. The node is a real process, killed with SIGKILL (its worker processes too).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from alliance_psi.cli._processes import cli_command
from alliance_psi.errors import ConfigurationError
from alliance_psi.storage import QuotaRepository
from alliance_psi.storage.schema import identifiers, token_cache
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import EPOCH, Planted, load, phone, running_alliance
from tests.integration.test_cli_node_join import write_toml

pytestmark = pytest.mark.timeout(600)

EXTRA = 30_000  # bank-a's identifiers beyond the planted ones: about 30 batches of 1,024.


def charged(engine: Engine) -> int:
    with engine.connect() as conn:
        return QuotaRepository(conn).used(EPOCH, "bank-a")


def cached(node_db: Engine) -> int:
    with node_db.execution_options(sqlite_begin="DEFERRED").connect() as conn:
        return int(conn.execute(select(func.count()).select_from(token_cache)).scalar_one())


def tokens_by_value(node_db: Engine) -> dict[str, tuple[bytes, bytes]]:
    """{canonical identifier: (match token, label key)} of a node's cached tokens in ``EPOCH``."""
    query = select(identifiers.c.canonical, token_cache.c.match_token, token_cache.c.label_key).join(
        token_cache, token_cache.c.identifier_id == identifiers.c.id
    )
    with node_db.execution_options(sqlite_begin="DEFERRED").connect() as conn:
        return {row[0]: (row[1], row[2]) for row in conn.execute(query.where(token_cache.c.key_epoch == EPOCH))}


def test_a_join_killed_mid_tokenization_is_not_charged_twice(tmp_path: Path, pki: AlliancePki) -> None:
    planted = Planted.make(size=20)
    with running_alliance(tmp_path, pki, custodians=2, quota=10_000_000, planted=planted) as alliance:
        node_db = alliance.member_engines["bank-a"]
        load(node_db, [phone(1_000_000 + i) for i in range(EXTRA)], "wool_party")
        distinct = len(planted.holdings["bank-a"]) + EXTRA
        round_id = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
        bank_b = alliance.node("bank-b")
        bank_b.tokenize(EPOCH, ["phone"])
        bank_b.submit(bank_b.coordinator.get_round(round_id)[0])
        config = write_toml(tmp_path / "a.toml", pki, alliance, "bank-a", workers="2")
        join = cli_command("node", "--config", str(config), "join", round_id, "--wait", "60")

        # Run 1: killed once the custodians have charged batches the node has not cached yet.
        first = subprocess.Popen(join, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 300
        while not (charged(alliance.custodian_engines[1]) > cached(node_db) > 0):
            assert first.poll() is None, "the join ended before it could be interrupted"
            assert time.monotonic() < deadline, "the join never reached the middle of tokenization"
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=60)
        at_kill = [charged(engine) for engine in alliance.custodian_engines]
        cached_at_kill = cached(node_db)
        assert 0 < cached_at_kill < distinct
        # What the interruption left behind: elements charged at the custodians, never cached.
        assert min(at_kill) > cached_at_kill, (at_kill, cached_at_kill)

        # Run 2: the same command completes the join, re-sending what was lost.
        second = subprocess.run(join, capture_output=True, text=True, timeout=300, check=False)
        assert second.returncode == 0, second.stdout + second.stderr
        assert cached(node_db) == distinct
        assert [charged(engine) for engine in alliance.custodian_engines] == [distinct, distinct]
        # The node's own count: the batches cached before the kill were not tokenized again.
        assert re.search(rf"new tokens computed[\s│]+{distinct - cached_at_kill:,}\s", second.stdout), second.stdout

        # The tokens equal one uninterrupted run's: bank-c holds the same identifiers, tokenized at once.
        load(alliance.member_engines["bank-c"], [phone(1_000_000 + i) for i in range(EXTRA)], "wool_party")
        assert alliance.node("bank-c").tokenize(EPOCH, ["phone"]) >= EXTRA
        resumed, uninterrupted = tokens_by_value(node_db), tokens_by_value(alliance.member_engines["bank-c"])
        extra = {phone(1_000_000 + i) for i in range(EXTRA)}
        assert {v: resumed[v] for v in extra} == {v: uninterrupted[v] for v in extra}


def test_the_blind_key_is_a_private_node_secret(tmp_path: Path) -> None:
    from alliance_psi.services.member import load_blind_key

    key = load_blind_key(tmp_path / "secrets")
    assert load_blind_key(tmp_path / "secrets") == key and len(key) == 32
    assert oct((tmp_path / "secrets" / "blind.key").stat().st_mode & 0o777) == "0o600"
    (tmp_path / "secrets" / "blind.key").write_bytes(b"short")
    with pytest.raises(ConfigurationError, match="is not a blind key"):
        load_blind_key(tmp_path / "secrets")
