"""The ``alliance-psi`` command."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from alliance_psi import __version__
from alliance_psi.errors import CryptoError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alliance-psi")
def main() -> None:
    """alliance-psi: privacy-preserving lead matching for anti-fraud alliances."""


@main.command()
def selfcheck() -> None:
    """Check this machine's crypto against RFC 9497 known answers before using it."""
    from alliance_psi.crypto.selfcheck import run_selfcheck

    console = Console()
    try:
        results = run_selfcheck()
    except CryptoError as exc:
        raise click.ClickException(str(exc)) from None
    table = Table(title="crypto self-check")
    table.add_column("check")
    table.add_column("result")
    for result in results:
        table.add_row(result.name, "[green]pass[/green]")
    console.print(table)
    console.print(f"all {len(results)} checks passed")


def _register() -> None:
    from alliance_psi.cli import node_import, node_report, node_round  # noqa: F401 - they attach to node_group
    from alliance_psi.cli.coordinator import coordinator_group
    from alliance_psi.cli.custodian import custodian_group
    from alliance_psi.cli.node import node_group
    from alliance_psi.cli.pki import pki_group

    from alliance_psi.cli.demo import demo
    from alliance_psi.cli.reports import report_group  # Also attaches `coordinator report`.

    for group in (pki_group, custodian_group, coordinator_group, node_group, report_group, demo):
        main.add_command(group)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
