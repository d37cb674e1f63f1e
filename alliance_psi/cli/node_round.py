"""``alliance-psi node join`` and ``node fetch``: this member's part of a round, over the network."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from alliance_psi.cli._options import reported
from alliance_psi.cli.node import database_option, member_config, network_options, node_group
from alliance_psi.defaults import JOIN_WAIT_SECONDS

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["fetch", "join"]

_STAGES = {"tokenize": "identifiers tokenized", "submit": "changes sent"}


@contextmanager
def _progress() -> Iterator[Any]:
    """A rich progress callback on stderr when it is a terminal; a no-op otherwise."""
    if not sys.stderr.isatty():
        yield lambda stage, done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(_STAGES.get(stage, stage), total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update


def _summary(title: str, rows: list[tuple[str, str]]) -> Table:
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows:
        table.add_row(key, value)
    return table


@node_group.command("join")
@click.argument("round_id")
@database_option
@network_options
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=JOIN_WAIT_SECONDS,
    show_default=True,
    help="Seconds to wait for the round to be matched after submitting.",
)
def join(round_id: str, database: str, wait: float, **options: Any) -> None:
    """Run this member's part of ROUND_ID to the end: tokens, submission, verified result."""
    from rich.console import Console

    from alliance_psi.services.member import MemberNode

    config = member_config(database, **options)
    if len(config.custodians) < 2:
        click.echo(
            "warning: one key custodian: that custodian together with the coordinator could test guesses of "
            "low-entropy identifiers; production alliances run two or more independent custodians",
            err=True,
        )
    with reported(), _progress() as progress:
        node = MemberNode.from_config(config, progress=progress)
        try:
            outcome = node.join(round_id, wait=wait)
        finally:
            node.close()
    holders = Counter(lead.holder_count for lead in outcome.leads)
    rows = [
        ("round", f"{outcome.round.round_id} ({outcome.round.name})"),
        ("threshold", str(outcome.round.threshold)),
        ("new tokens computed", f"{outcome.tokens_computed:,}"),
        ("items in the matched set", f"{outcome.submitted:,}"),
        ("sent this round", f"{outcome.delta_count:,}" + (" (whole set)" if outcome.replaced else " (changes only)")),
        ("leads", f"{len(outcome.leads):,}"),
    ]
    rows += [(f"  held by {n} members", f"{count:,}") for n, count in sorted(holders.items(), reverse=True)]
    rows += [(f"seconds: {stage}", f"{value:.2f}") for stage, value in outcome.seconds.items()]
    Console().print(_summary("round joined; result verified", rows))
    click.echo(f"write the investigator report with: alliance-psi node report {round_id} --format html -o FILE")


@node_group.command("fetch")
@click.argument("round_id")
@database_option
@network_options
@click.option(
    "--wait", type=click.FloatRange(min=0), default=0, show_default=True, help="Seconds to wait for matching."
)
def fetch(round_id: str, database: str, wait: float, **options: Any) -> None:
    """Fetch, verify and keep this member's result for ROUND_ID (after a join that stopped waiting)."""
    from alliance_psi.services.member import MemberNode

    with reported():
        node = MemberNode.from_config(member_config(database, **options))
        try:
            round_, _ = node.coordinator.get_round(round_id)
            result, _, _ = node.fetch_and_keep(round_, wait=wait)
        finally:
            node.close()
    click.echo(f"result for round {round_id} verified and kept: {len(result.matches)} matched tokens")
