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
