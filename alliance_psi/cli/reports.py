"""``alliance-psi report verify`` and ``alliance-psi coordinator report``.

``report verify`` lets anyone holding the coordinator's public key check a JSON lead report; it
prints ``valid: …`` or exits 1 with the exact mismatch. ``coordinator report`` is the alliance
operator's aggregate view of a round: participants, submission sizes and matches by holder
count, never a token, a label or an identifier. It attaches itself to ``coordinator_group``.

Console text that comes from a database or a file (round names, member ids) goes through
``console_safe`` first, so it cannot move the cursor, rewrite earlier lines or carry rich markup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from alliance_psi.cli._options import reported
from alliance_psi.cli.coordinator import coordinator_group
from alliance_psi.errors import ConfigurationError

__all__ = ["console_safe", "holders_text", "read_public_key", "report_group"]

_FILE = click.Path(dir_okay=False, path_type=Path)


def console_safe(text: str) -> str:
    """``text`` fit for the console: control and format characters (escape sequences, bidi overrides) become U+FFFD."""
    from alliance_psi.reports.render import display_text

    return display_text(text)


def read_public_key(path: Path) -> bytes:
    """The coordinator's raw public key from a file (hex, raw or PEM); ``ConfigurationError`` naming the file."""
    from alliance_psi.crypto.signing import load_public_key

    try:
        return load_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"coordinator key {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigurationError(f"coordinator key {path}: {exc}") from None


def holders_text(counts: dict[int, int]) -> str:
    """Leads by holder count in one line: ``1 held by 4, 2 held by 3, 4 held by 2`` (or ``none``)."""
    return ", ".join(f"{count} held by {holders}" for holders, count in counts.items()) or "none"


@click.group("report")
def report_group() -> None:
    """Check investigator reports against the coordinator's signature."""


@report_group.command("verify")
@click.argument("report_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--coordinator-key",
    type=_FILE,
    required=True,
    envvar="ALLIANCE_PSI_REPORT_COORDINATOR_KEY",
    show_envvar=True,
    help="The coordinator's public signing key (signing.pub).",
)
def verify_command(report_file: Path, coordinator_key: Path) -> None:
    """Check a JSON lead report: its signature, and that every lead is in the signed result."""
    from alliance_psi.reports import verify_report_json

    with reported():
        public_key = read_public_key(coordinator_key)
        try:
            data = report_file.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{report_file}: {exc.strerror}") from None
        checked = verify_report_json(data, public_key)
    omitted = f" ({checked.omitted} not listed)" if checked.omitted else ""
    click.echo(
        console_safe(
            f"valid: {checked.leads} leads of {checked.signed_matches} signed matches{omitted} in round {checked.round_id} "
            f"({checked.round_name}) for member {checked.member_id}; leads {holders_text(checked.by_holder_count)}; "
            f"threshold {checked.threshold}, key epoch {checked.key_epoch}, coordinator key {checked.key_id}"
        )
    )


def _aggregate(database: str, round_id: str) -> dict[str, Any]:
    from alliance_psi.storage import CoordinatorRepository, make_engine

    engine = make_engine(database).execution_options(sqlite_begin="DEFERRED")
    try:
        with engine.connect() as conn:
            repo = CoordinatorRepository(conn)
            round = repo.get_round(round_id)
            aggregate = repo.aggregate(round_id)
    finally:
        engine.dispose()
    by_holders = {int(holders): count for holders, count in aggregate["matches_by_holder_count"].items()}
    return {
        "round_id": round.round_id,
        "name": round.name,
        "state": str(round.state),
        "threshold": round.threshold,
        "key_epoch": round.key_epoch,
        "committed_members": aggregate["committed_members"],
        "submissions": aggregate["submissions"],
        "matches_by_holder_count": {str(holders): count for holders, count in sorted(by_holders.items())},
        "matches_at_threshold": sum(count for holders, count in by_holders.items() if holders >= round.threshold),
    }


def _print_aggregate(view: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    console.print(
        Text(
            console_safe(
                f"round {view['round_id']} ({view['name']}): {view['state']}, threshold {view['threshold']}, "
                f"key epoch {view['key_epoch']}; {view['committed_members']} members committed, "
                f"{view['matches_at_threshold']} tokens held by at least {view['threshold']} members"
            )
        )
    )
    members = Table(title="submissions")
    for column in ("member", "state", "sent this round", "set size"):
        members.add_column(column, justify="left" if column in ("member", "state") else "right")
    for member, entry in view["submissions"].items():
        size = "" if entry.get("set_count") is None else str(entry["set_count"])
        members.add_row(Text(console_safe(member)), Text(entry["state"]), str(entry["item_count"]), size)
    matches = Table(title="matches")
    matches.add_column("holders", justify="right")
    matches.add_column("tokens", justify="right")
    for holders, count in view["matches_by_holder_count"].items():
        matches.add_row(holders, str(count))
    console.print(members)
    console.print(matches)


@coordinator_group.command("report")
@click.argument("round_id")
@click.option("--database", required=True, help="The coordinator's database URL.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)
def coordinator_report(round_id: str, database: str, output_format: str) -> None:
    """Aggregate view of a round for the operator: sizes and counts only, never a token."""
    with reported():
        view = _aggregate(database, round_id)
    if output_format == "json":
        click.echo(json.dumps(view, ensure_ascii=False, sort_keys=True, indent=2))
    else:
        _print_aggregate(view)
