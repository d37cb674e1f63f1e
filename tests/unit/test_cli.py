"""The command line: exit codes and exact messages."""

from __future__ import annotations

from click.testing import CliRunner

from alliance_psi import __version__
from alliance_psi.cli.main import main


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"alliance-psi, version {__version__}\n"


def test_selfcheck_passes() -> None:
    result = CliRunner().invoke(main, ["selfcheck"])
    assert result.exit_code == 0, result.output
    assert "RFC 9497 Finalize" in result.output
    assert result.output.rstrip().endswith("all 8 checks passed")


def test_selfcheck_fails_loudly_when_the_library_is_wrong(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Simulate a broken element decoder (as libsodium 1.0.18 alone would be) and expect a refusal.
    from alliance_psi.crypto import selfcheck

    monkeypatch.setattr(selfcheck, "_top_bit_alias_refused", lambda: False)
    result = CliRunner().invoke(main, ["selfcheck"])
    assert result.exit_code == 1
    assert "crypto self-check failed: non-canonical element refused" in result.output


def test_unknown_command() -> None:
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output


def test_columns_never_cut_a_cell_and_align_chinese_by_display_width() -> None:
    from alliance_psi.cli._columns import columns

    long_id = "r" * 64
    text = columns(("name", "round"), [("季度", long_id), ("ab", "r-1"), ("two\nlines", "r-2")])
    assert text.splitlines() == [
        "name       round",
        "季度       " + long_id,
        "ab         r-1",
        "two lines  r-2",
    ]


def test_plural() -> None:
    from alliance_psi._plural import plural

    assert [plural(n, "lead") for n in (0, 1, 2, 1234)] == ["0 leads", "1 lead", "2 leads", "1,234 leads"]
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == "3 entries"


def test_node_run_logs_what_the_alert_side_reports_console_safe(caplog) -> None:  # type: ignore[no-untyped-def]
    # The alert side's lines carry the coordinator's words (a scope, an error's message): an
    # escape sequence must not reach the terminal, a line break must not forge a log line.
    import logging

    from alliance_psi.cli.node_run import _safe_warning

    log = logging.getLogger("alliance_psi.node")
    with caplog.at_level(logging.WARNING, logger="alliance_psi.node"):
        _safe_warning(log, "alerts: ")("InvalidSignature: scope \x1b[2Jq1\n2026-01-01 INFO forged\u202e")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "alerts: InvalidSignature: scope \ufffd[2Jq1\ufffd2026-01-01 INFO forged\ufffd")
    ]


def test_every_database_option_checks_for_a_url() -> None:
    """A bare path given as ``--database`` is refused naming the option, by every command that takes one."""
    import click

    from alliance_psi.cli._options import DatabaseUrl

    def commands(group: click.Group, ctx: click.Context) -> list[click.Command]:
        found: list[click.Command] = []
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            found += commands(command, ctx) if isinstance(command, click.Group) else [command]
        return found

    with click.Context(main) as ctx:
        taking = [
            (command.name, option)
            for command in commands(main, ctx)
            for option in command.params
            if "--database" in option.opts
        ]
    assert len(taking) >= 20
    assert [name for name, option in taking if not isinstance(option.type, DatabaseUrl)] == []


def test_peer_usage_lines_spell_the_ca_as_the_help_text_does() -> None:
    keygen = CliRunner().invoke(main, ["custodian", "keygen", "--help"], env={"COLUMNS": "200"})
    assert "--peer NAME@HOST:PORT[+HOST:PORT…][,ca=FILE]" in keygen.output
    assert "NAME@HOST:PORT[,ca=FILE] (its own CA" in keygen.output and "CA=FILE" not in keygen.output
    join = CliRunner().invoke(main, ["node", "join", "--help"], env={"COLUMNS": "200"})
    assert "--custodian NAME@HOST:PORT[+HOST:PORT…][,ca=FILE]" in join.output
    assert "--coordinator [NAME@]HOST:PORT " in join.output  # The coordinator takes no replicas and no CA.
