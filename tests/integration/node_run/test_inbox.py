"""``node run``'s inbox, a real process: files imported in order, bad files set aside whole, the CLI
working beside it, and SIGTERM ending it with exit code 0."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from alliance_psi.cli.main import main
from alliance_psi.storage.schema import identifiers
from tests.integration.node_run.support import DEADLINE, drop, node_run, node_toml, wait_for
from tests.integration.services.harness import phone, running_alliance

pytestmark = pytest.mark.timeout(600)

HEADER = "type,value,category\n"


def rows(numbers: range | list[int], category: str = "wool_party") -> str:
    return HEADER + "".join(f"phone,{phone(n)},{category}\n" for n in numbers)


def held(engine: Engine) -> set[str]:
    with engine.execution_options(sqlite_begin="DEFERRED").connect() as conn:
        return set(conn.execute(select(identifiers.c.canonical)).scalars())


def test_files_are_imported_in_order_and_the_cli_works_meanwhile(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        engine = alliance.member_engines["bank-a"]
        config = node_toml(tmp_path, pki, alliance, "bank-a", **{"join-rounds": "false"})
        inbox = tmp_path / "bank-a-inbox"
        before = held(engine)
        with node_run(config) as run:
            big = range(100_000, 120_000)  # Long enough an import that the next file arrives during it.
            drop(inbox, "a-big.csv", rows(big))
            run.wait_for_line("inbox: importing a-big.csv")
            drop(inbox, "b-small.csv", rows(range(200_000, 200_010)))
            # The CLI imports and withdraws while the node runs, on the same database.
            extra = tmp_path / "extra.csv"
            extra.write_text(rows(range(300_000, 300_005)), encoding="utf-8")
            imported = CliRunner().invoke(main, ["node", "import", str(extra), "--config", str(config)])
            assert imported.exit_code == 0, imported.output
            withdrawn = CliRunner().invoke(
                main,
                ["node", "withdraw", "--type", "phone", "--stdin", "--config", str(config)],
                input=phone(300_000) + "\n",
            )
            assert withdrawn.exit_code == 0 and "withdrawn" in withdrawn.output, withdrawn.output
            wait_for((inbox / "done" / "b-small.csv").exists, "b-small.csv in done/", run)
            assert (inbox / "done" / "a-big.csv").exists() and not list((inbox / "failed").iterdir())
            lines = run.lines
            order = [i for i, line in enumerate(lines) if "a-big.csv imported" in line or "importing b-small" in line]
            assert len(order) == 2 and "a-big.csv imported" in lines[order[0]], run.log
            assert run.stop() == 0, run.log
        expected = {phone(n) for n in [*big, *range(200_000, 200_010), *range(300_001, 300_005)]}
        assert held(engine) - before == expected
        assert not any(phone(n) in run.log for n in (100_000, 200_000, 300_001))  # No identifier in the log.


def test_a_bad_file_goes_to_failed_whole_with_its_rejects_and_a_line_naming_the_row(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        engine = alliance.member_engines["bank-a"]
        config = node_toml(tmp_path, pki, alliance, "bank-a", **{"join-rounds": "false"})
        inbox = tmp_path / "bank-a-inbox"
        before = held(engine)
        with node_run(config) as run:
            partial = inbox / "late.csv.part"
            partial.write_text(rows(range(400_000, 400_003)), encoding="utf-8")  # Still being written: left alone.
            bad = (
                HEADER + f"phone,{phone(500_000)},wool_party\nphone,12345,wool_party\nphone,{phone(500_001)},nonsense\n"
            )
            drop(inbox, "bad.csv", bad)
            drop(inbox, "empty.csv", HEADER)
            drop(inbox, "notes.txt", "not a blacklist\n")
            wait_for(lambda: len(list((inbox / "failed").glob("*"))) >= 5, "three files in failed/", run)
            line = run.wait_for_line("inbox: bad.csv failed")
            assert "2 rows rejected, nothing imported" in line and "row 3, value: invalid phone" in line, line
            assert "row 4, category: unknown category" in line and "12345" not in line, line
            assert (
                (inbox / "failed" / "bad.csv.rejects.csv")
                .read_text(encoding="utf-8-sig")
                .startswith("row,field,reason,type,value,category\n3,value,")
            )
            assert (
                (inbox / "failed" / "empty.csv.error.txt")
                .read_text()
                .endswith("empty.csv has a header but no data rows\n")
            )
            assert (inbox / "failed" / "notes.txt.error.txt").exists()
            assert held(engine) == before  # Not even bad.csv's valid row went in.
            assert partial.exists() and not (inbox / "done").joinpath("late.csv").exists()
            partial.rename(inbox / "late.csv")
            wait_for((inbox / "done" / "late.csv").exists, "late.csv in done/", run)
            assert held(engine) - before == {phone(n) for n in range(400_000, 400_003)}
            assert not list(inbox.glob(".*"))  # No rejects file left half-written or hidden in the inbox.
            run.signal(signal.SIGINT)
            run.signal(signal.SIGTERM)  # A second signal, as a second Ctrl-C or a supervisor's, changes nothing.
            assert run.proc.wait(DEADLINE) == 0, run.log


def test_sigterm_ends_it_with_exit_code_0(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        config = node_toml(tmp_path, pki, alliance, "bank-a")
        with node_run(config) as run:
            run.signal(signal.SIGTERM)
            assert run.stop() == 0, run.log
            assert "SIGTERM received, stopping" in run.log and "node run: stopped" in run.log, run.log


def test_killed_mid_import_it_leaves_no_half_written_rejects_file(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        config = node_toml(tmp_path, pki, alliance, "bank-a", **{"join-rounds": "false"})
        inbox = tmp_path / "bank-a-inbox"
        numbers = range(600_000, 640_000)
        text = HEADER + "".join(f"phone,{phone(n) if n % 100 else '12345'},wool_party\n" for n in numbers)
        with node_run(config) as first:
            drop(inbox, "big.csv", text)
            # Its rejects file is being written (hidden, beside its place): killed then.
            wait_for(lambda: list(inbox.glob("..big.csv.rejects.csv.*")), "a rejects file being written", first)
            first.kill()
        with node_run(config) as second:
            wait_for((inbox / "failed" / "big.csv").exists, "big.csv in failed/", second)
            assert (inbox / "failed" / "big.csv.rejects.csv").exists()
            assert not list(inbox.glob(".*")), list(inbox.glob(".*"))  # Nothing half-written left behind.
            assert second.stop() == 0, second.log
