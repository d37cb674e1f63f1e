"""``alliance-psi node join`` and ``node fetch``: this member's part of a round, over the network."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from alliance_psi._plural import plural
from alliance_psi.cli._options import member_trust_warnings, reported
from alliance_psi.cli.node import (
    database_option,
    member_config,
    network_options,
    node_command_text,
    node_group,
    open_node_database,
)
from alliance_psi.defaults import JOIN_WAIT_SECONDS

if TYPE_CHECKING:
    from rich.table import Table

    from alliance_psi.protocol.leads import RefusedLead
    from alliance_psi.protocol.member import JoinOutcome

__all__ = ["delta", "fetch", "join"]

_STAGES = {
    "tokenize": "identifiers tokenized",
    "submit": "changes sent",
    "labels": "labels sealed for matched tokens",
    "fetch": "result leaves verified",
}


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
    """A two-column table; text from the coordinator (round names) is made console-safe, never markup."""
    from rich.table import Table
    from rich.text import Text

    from alliance_psi.cli.reports import console_safe

    table = Table(title=Text(title), show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows:
        table.add_row(Text(key), Text(console_safe(value)))
    return table


def _held_by_type(database: str) -> dict[str, int]:
    """How many identifiers the node holds of each type; refuses a missing node database."""
    from alliance_psi.storage import MemberRepository

    held: Counter[str] = Counter()
    with open_node_database(database, read_only=True) as engine, engine.connect() as conn:
        for type_, _, count in MemberRepository(conn).counts():
            held[type_] += count
    return dict(held)


def left_out_text(held: dict[str, int], allowed_types: tuple[str, ...]) -> str | None:
    """``2 identifiers left out by the round's types (email: 1, qq: 1)``, or None if none were."""
    left = {type_: count for type_, count in sorted(held.items()) if type_ not in allowed_types}
    if not left:
        return None
    by_type = ", ".join(f"{type_}: {count:,}" for type_, count in left.items())
    return f"{plural(sum(left.values()), 'identifier')} left out by the round's types ({by_type})"


def _custodian_event(message: str) -> None:
    """A threshold custodian's event (down, slow, excluded), said as it happens."""
    click.echo(f"warning: {message}", err=True)


@node_group.command("join")
@click.argument("round_id")
@database_option
@network_options
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=JOIN_WAIT_SECONDS,
    show_default=True,
    help="Seconds to wait for the round to be matched after submitting (0: do not wait).",
)
def join(round_id: str, database: str, wait: float, **options: Any) -> None:
    """Run this member's part of ROUND_ID to the end: tokens, submission, verified result.

    Exit code 0 once this member's items are committed, with the verified result, or without it
    if the round is not matched within --wait seconds (then `node fetch` gets it later).
    """
    from rich.console import Console

    from alliance_psi.services.clients import ThresholdCustodians
    from alliance_psi.services.member import MemberNode

    config = member_config(database, **options)
    with reported():
        held = _held_by_type(database)
        for warning in member_trust_warnings(config):  # Before any custodian is dialled.
            click.echo(warning, err=True)
        with _progress() as progress:
            with MemberNode.from_config(config, progress=progress, report=_custodian_event) as node:
                outcome = node.role.join(round_id, wait=wait)
                excluded = node.custodians.excluded if isinstance(node.custodians, ThresholdCustodians) else {}
    rows = [
        ("round", f"{outcome.round.round_id} ({outcome.round.name})"),
        ("threshold", str(outcome.round.threshold)),
        ("types matched", ", ".join(outcome.round.allowed_types)),
    ]
    if outcome.committed_before:  # Nothing was computed or sent by this join.
        rows.append(("items this member committed earlier", f"{outcome.submitted:,}"))
    else:
        sent = f"{outcome.delta_count:,}" + (" (whole set)" if outcome.replaced else " (changes only)")
        rows += [
            ("new tokens computed", f"{outcome.tokens_computed:,}"),
            ("items in the matched set", f"{outcome.submitted:,}"),
            ("sent this round", sent),
        ]
    if outcome.result is not None:
        holders = Counter(lead.holder_count for lead in outcome.leads)
        rows.append(("leads", f"{len(outcome.leads):,}"))
        rows += [
            (f"  held by {plural(n, 'member')}", f"{count:,}") for n, count in sorted(holders.items(), reverse=True)
        ]
        if refused := [r for r in outcome.refused if not r.stands]:
            rows.append(("REFUSED: labels do not back the count", f"{len(refused):,}"))
        if short := [r for r in outcome.refused if r.stands]:
            rows.append(("  of which labels back fewer holders", f"{len(short):,}"))
    if outcome.round.labels_at_match:
        rows.append(("labels sealed at match and sent", f"{outcome.labels_sent:,}"))
    rows += [(f"seconds: {stage}", f"{value:.2f}") for stage, value in outcome.seconds.items()]
    rows += [(f"custodian {name} EXCLUDED", reason) for name, reason in excluded.items()]
    Console().print(_summary(_join_title(outcome), rows))
    if outcome.committed_before:
        kept = "; its kept result was fetched again and is the same" if outcome.kept_before else ""
        click.echo(f"this member committed to round {round_id} before: nothing was sent now{kept}")
    if left_out := left_out_text(held, outcome.round.allowed_types):
        click.echo(left_out)
    for line in refusal_lines(round_id, outcome.refused, at_match=outcome.round.labels_at_match):
        click.echo(line, err=True)
    if outcome.labels_beyond_result:
        click.echo(beyond_result_line(round_id, outcome.labels_beyond_result), err=True)
    if outcome.result is None:
        click.echo(
            f"the result is not ready yet: round {round_id} is matched once it closes; fetch the result with "
            f"`{node_command_text('fetch', round_id, '--wait', 'SECONDS')}`"
        )
        if outcome.round.labels_at_match:
            click.echo(
                f"round {round_id} seals labels at match: once it closes, this node must answer for its matched "
                f"tokens within the round's window ({outcome.round.label_window_seconds} s): keep `node run` "
                f"running, or run `{node_command_text('fetch', round_id, '--wait', 'SECONDS')}` before it closes; "
                "a co-holder's lead may need this node's label",
                err=True,
            )
        return
    click.echo(f"{plural(len(outcome.leads), 'lead')}; write the investigator report with: {_report_hint(round_id)}")


def _join_title(outcome: JoinOutcome) -> str:
    """What ``node join`` did: joined now, or found the round committed (and its result kept) before."""
    if not outcome.committed_before:
        return "round joined; result verified" if outcome.result is not None else "round joined; items committed"
    if outcome.kept_before:
        return "already committed; result already kept"
    return "already committed; result verified" if outcome.result is not None else "already committed; no result yet"


@node_group.command("delta")
@click.argument("scope_id")
@database_option
@network_options
def delta(scope_id: str, database: str, **options: Any) -> None:
    """Send this node's changes to continuous scope SCOPE_ID now, as its next delta.

    What `node run` sends every --submit-every seconds: the identifiers imported, relabeled or
    withdrawn since this member's last commit to the scope (the whole set the first time). A
    delta stopped anywhere resumes where it stopped and commits once. Exit code 0 once committed,
    or when there was nothing to send.
    """
    from alliance_psi.services.member import MemberNode

    config = member_config(database, **options)
    with reported():
        with open_node_database(database):
            pass  # Refuses a missing database before anything is dialled.
        for warning in member_trust_warnings(config):
            click.echo(warning, err=True)
        with MemberNode.from_config(config, report=_custodian_event) as node:
            sent = node.role.submit_delta(scope_id)
    if not sent.sequence:
        click.echo(f"scope {scope_id}: nothing changed since this member's last delta; nothing sent")
        return
    what = "the whole set" if sent.replaced else "changes only"
    click.echo(
        f"scope {scope_id}: delta {sent.sequence} committed, {plural(sent.delta_count, 'change')} sent ({what}), "
        f"{sent.set_count:,} in the set"
    )


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
        with open_node_database(database):
            pass
        with MemberNode.from_config(member_config(database, **options)) as node:
            round_, _ = node.coordinator.get_round(round_id)
            header = node.role.fetch_and_keep(round_, wait=wait)
            refused = node.role.lead_checks(round_id).refused
            beyond = node.role.labels_beyond_result(round_id)
            sent = node.role.labels_sent(round_id)
    for line in refusal_lines(round_id, refused, at_match=round_.labels_at_match):
        click.echo(line, err=True)
    if round_.labels_at_match:
        click.echo(f"round {round_id} sealed labels at match: this node sent {plural(sent, 'label')}")
    if beyond:
        click.echo(beyond_result_line(round_id, beyond), err=True)
    click.echo(
        f"result for round {round_id} verified and kept: {plural(header.match_count, 'matched token')}; "
        f"write the investigator report with: {_report_hint(round_id)}"
    )


def beyond_result_line(round_id: str, count: int) -> str:
    """What ``join``, ``fetch`` and ``node run`` say when the coordinator asked this node, at match,
    for labels of tokens that its signed result does not hold."""
    return (
        f"WARNING: round {round_id}: the coordinator asked this node for the labels of "
        f"{plural(count, 'token')} that are not in its signed result (a round asks only for matched tokens): "
        "they were sent sealed; the tokens answered are kept in this node's database (member_label_answers) "
        "beside the signed result as evidence for the security officer"
    )


def _report_hint(round_id: str) -> str:
    return node_command_text("report", round_id, "--format", "html", "-o", "FILE")


def refusal_lines(round_id: str, findings: Sequence[RefusedLead], *, at_match: bool = False) -> list[str]:
    """What ``join`` and ``fetch`` say of the matches whose labels fall short of their signed holder
    count (``protocol.leads.check_labels``): each by its match token (never the identifier) with the
    reason, and where the evidence is. Refused leads first, then leads that stand with fewer holders.
    ``at_match``: the round sealed labels at match, where a co-holder that did not answer in time is
    the usual cause of a missing label."""
    refused = [finding for finding in findings if not finding.stands]
    short = [finding for finding in findings if finding.stands]
    evidence = (
        "The coordinator's signed result, these leaves included, is kept in this node's database as evidence "
        "for your security officer:"
    )
    cause = (
        "in this round labels were sealed at match, so most likely a co-holder did not answer within the round's "
        "window and its label is missing; else the coordinator lied, or a member holding the identifier replayed "
        "or spoiled a label"
        if at_match
        else "the coordinator lied, or a member holding the identifier replayed or spoiled a label"
    )
    lines = []
    if refused:
        lines.append(
            f"REFUSED {plural(len(refused), 'lead')} of round {round_id}: the coordinator signed a holder count "
            f"that the peers' sealed labels do not back up to the round's threshold ({cause}). They are not leads "
            "and are in no report. " + evidence
        )
        lines += [_finding_line(finding) for finding in refused]
    if short:
        lines.append(
            f"{plural(len(short), 'lead')} of round {round_id} "
            f"{'stands' if len(short) == 1 else 'stand'} with fewer holders than the coordinator signed: the labels "
            "that count reach the threshold, some others "
            + (
                "are missing (a co-holder that did not answer within the window of a round sealing labels at match) "
                "or do not count"
                if at_match
                else "do not count (replayed, repeated or unreadable: a co-holder or the coordinator spoiled them)"
            )
            + ". Reports show both counts. "
            + evidence
        )
        lines += [_finding_line(finding) for finding in short]
    return lines


def _finding_line(finding: RefusedLead) -> str:
    return (
        f"  token {finding.match_token.hex()} (held by {finding.holder_count}, says the coordinator): {finding.reason}"
    )
