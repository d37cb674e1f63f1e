"""The ``alliance-psi`` command.

Each role's commands live in their own module, imported only when one of them is used (see
``alliance_psi.cli._lazy``): a member node running ``node join`` never loads the importer's
normalizers, the report renderers or the servers' code.
"""

from __future__ import annotations

import os

import click

from alliance_psi import __version__
from alliance_psi._plural import plural
from alliance_psi.cli._lazy import LazyGroup

# Name -> "module:attribute"; `node` and `coordinator` are lazy groups too (alliance_psi.cli.node,
# alliance_psi.cli.coordinator), whose commands come from further modules.
COMMANDS = {
    "pki": "alliance_psi.cli.pki:pki_group",
    "custodian": "alliance_psi.cli.custodian:custodian_group",
    "coordinator": "alliance_psi.cli.coordinator:coordinator_group",
    "node": "alliance_psi.cli.node:node_group",
    "report": "alliance_psi.cli.reports:report_group",
    "demo": "alliance_psi.cli.demo:demo",
    "health": "alliance_psi.cli.health:health",
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alliance-psi")
def main() -> None:
    """alliance-psi: privacy-preserving lead matching for anti-fraud alliances."""
    # gRPC's C core prints an INFO line to stderr for every failed TLS handshake (any port scan);
    # keep its errors only, unless the environment asks for more (GRPC_VERBOSITY=INFO). Set before
    # gRPC loads: every command imports it lazily, after this.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


@main.command()
def selfcheck() -> None:
    """Check this machine's crypto against RFC 9497 known answers before using it."""
    from rich.console import Console
    from rich.table import Table

    from alliance_psi.crypto.selfcheck import run_selfcheck
    from alliance_psi.errors import CryptoError

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
    console.print(f"all {plural(len(results), 'check')} passed")


if __name__ == "__main__":  # pragma: no cover
    main()
