"""``alliance-psi node checkpoints-export`` and ``node checkpoints-check``: the node as a witness of
the coordinator's audit log.

A node keeps every checkpoint of the coordinator's log it saw (on each join and fetch) and the
signed evidence of any inconsistency. ``checkpoints-export`` writes them to a file that another
member, an auditor or the operator can check (``coordinator audit-verify --checkpoints``);
``checkpoints-check`` checks another member's file against this node's own view of the log, which
is how a log forked between two members is caught.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from alliance_psi._files import write_file_atomic
from alliance_psi._plural import plural
from alliance_psi.cli._options import reported
from alliance_psi.cli.node import database_option, member_config, network_options, node_group, open_node_database

__all__ = ["checkpoints_check", "checkpoints_export"]

_FILE = click.Path(dir_okay=False, path_type=Path)


@node_group.command("checkpoints-export")
@click.option("-o", "--output", type=_FILE, required=True, help="JSON file to write.")
@database_option
def checkpoints_export(output: Path, database: str) -> None:
    """Write the checkpoints of the coordinator's audit log this node kept, and any evidence."""
    from alliance_psi.protocol.log_evidence import write_document
    from alliance_psi.storage import CheckpointStore

    with reported():
        with open_node_database(database, read_only=True) as engine, engine.connect() as conn:
            store = CheckpointStore(conn)
            checkpoints, evidence = store.all(), store.evidence()
        write_file_atomic(output, write_document(checkpoints, evidence), private=False)
    found = f"; {plural(len(evidence), 'piece')} of evidence of an inconsistent log" if evidence else ""
    click.echo(f"wrote {output}: {plural(len(checkpoints), 'checkpoint')}{found}")


@node_group.command("checkpoints-check")
@click.argument("file", type=_FILE)
@database_option
@network_options
def checkpoints_check(file: Path, database: str, **options: Any) -> None:
    """Check another member's exported checkpoints against this node's view of the coordinator's log."""
    from alliance_psi.errors import ConfigurationError
    from alliance_psi.protocol.log_evidence import read_document
    from alliance_psi.services.member import MemberNode

    with reported():
        with open_node_database(database):
            pass
        try:
            checkpoints, _ = read_document(file.read_bytes())
        except OSError as exc:
            raise ConfigurationError(f"{file}: {exc.strerror}") from None
        with MemberNode.from_config(member_config(database, **options)) as node:
            node.role.check_log()
            for signed in checkpoints:
                node.role.log.witness(signed)
    click.echo(
        f"{file}: {plural(len(checkpoints), 'checkpoint')} consistent with this node's view of the coordinator's log"
    )
