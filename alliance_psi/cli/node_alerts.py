"""``alliance-psi node alerts`` and ``node follow``: the alerts of continuous scopes on the member node.

``node follow`` runs the node's alert side until stopped (SIGTERM or Ctrl-C): it follows the
coordinator's alerts, applies each exactly once (``protocol.alert_follower``) and notifies
(``services.notifiers``: webhook, JSON Lines log, console). ``node run`` runs the same beside its
imports and submissions.

``node alerts`` lists the alerts the node applied (newest first, with filters), shows one
(``node alerts SEQUENCE``), acknowledges one for the investigators (``--ack``), lists the
notices that stayed undelivered past their retry budget (``--dead``) and sends one again
(``--redeliver``). Identifiers are masked to their last four characters, as console output may
end up in logs; ``--full`` shows one alert's whole value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from alliance_psi._plural import plural
from alliance_psi.cli._options import reported
from alliance_psi.cli.node import (
    database_option,
    member_config,
    network_options,
    node_command_text,
    node_group,
    notify_config,
    notify_options,
    open_node_database,
)
from alliance_psi.cli.reports import console_safe
from alliance_psi.errors import NotFound

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from alliance_psi.protocol.leads import OwnIdentifier
    from alliance_psi.protocol.node_alerts import AppliedAlert

__all__ = ["alerts_command", "follow_command"]


@contextlib.contextmanager
def _connection(database: str, *, write: bool = False) -> Iterator[Connection]:
    with open_node_database(database, read_only=not write) as engine, engine.begin() as conn:
        yield conn


def _owners(conn: Connection, alerts: list[AppliedAlert]) -> dict[tuple[str, bytes], OwnIdentifier]:
    """The member's identifier behind each alert's token, by (key epoch, token); withdrawn ones are absent."""
    from alliance_psi.storage import MemberRepository

    repo, found = MemberRepository(conn), {}
    for epoch in {alert.key_epoch for alert in alerts}:
        tokens = [alert.match_token for alert in alerts if alert.key_epoch == epoch]
        found.update({(epoch, token): own for token, own in repo.identifiers_for_tokens(epoch, tokens).items()})
    return found


def _shown(own: OwnIdentifier | None, *, full: bool = False) -> str:
    from alliance_psi.identifiers.masking import mask

    if own is None:
        return "-"
    return f"{own.type} {own.canonical if full else mask(own.canonical)}"


def _state(alert: AppliedAlert, current: set[int]) -> str:
    if alert.refused is not None:
        return "REFUSED"
    words = ["current" if alert.sequence in current else "past"]
    if alert.acked_at is not None:
        words.append("acked")
    return ",".join(words)


def _listing(conn: Connection, alerts: list[AppliedAlert]) -> str:
    from alliance_psi.cli._columns import columns
    from alliance_psi.storage.node_alerts import AlertFilter, NodeAlerts

    owners = _owners(conn, alerts)
    current = {alert.sequence for alert in NodeAlerts(conn).find(AlertFilter(current=True))}
    rows = [
        (
            str(alert.sequence),
            alert.alert_id[:12],
            alert.applied_at.strftime("%Y-%m-%d %H:%M:%S"),
            console_safe(alert.scope),
            alert.kind,
            _shown(owners.get((alert.key_epoch, alert.match_token))),
            str(alert.holder_count),
            console_safe(", ".join(alert.peer_categories)) or "-",
            _state(alert, current),
        )
        for alert in alerts
    ]
    header = ("seq", "id", "applied (UTC)", "scope", "kind", "identifier", "holders", "peers say", "state")
    return columns(header, rows)


def _details(conn: Connection, alert: AppliedAlert, *, full: bool) -> str:
    from alliance_psi.storage.node_alerts import NodeAlerts

    own = _owners(conn, [alert]).get((alert.key_epoch, alert.match_token))
    current = NodeAlerts(conn).is_current(alert.scope, alert.match_token)
    lines = [
        f"alert {alert.sequence} ({alert.alert_id})",
        f"  kind            {alert.kind}",
        f"  scope           {console_safe(alert.scope)} (key epoch {console_safe(alert.key_epoch)})",
        f"  released        {alert.created_at:%Y-%m-%d %H:%M:%S} UTC (coordinator)",
        f"  applied         {alert.applied_at:%Y-%m-%d %H:%M:%S} UTC (this node)",
        f"  identifier      {_shown(own, full=full) if own else 'not held by this node any more'}",
    ]
    if own is not None:
        lines.append(f"  own label       {own.category} {own.severity or '-'} {console_safe(own.case_ref) or '-'}")
    lines += [
        f"  holders         {alert.holder_count} (threshold {alert.threshold})",
        f"  standing        {'yes: a current lead' if current else 'no'}",
    ]
    if alert.backed_count is not None:
        lines.append(f"  labels back     {alert.backed_count} holders only (the coordinator says {alert.holder_count})")
    if alert.refused is not None:
        lines.append(f"  REFUSED         not a lead: {console_safe(alert.refused)}")
    for label in sorted(alert.peer_labels, key=lambda label: (label.member or "", label.category)):
        parts = [label.category, label.severity or "-", str(label.first_seen or "-"), label.case_ref or "-"]
        who = f"{label.member} (attested)" if label.member else "an unnamed holder"
        lines.append(f"  peer label      {console_safe(' '.join(parts))}, from {console_safe(who)}")
    if alert.unreadable_labels:
        lines.append(f"  peer labels     {alert.unreadable_labels} could not be opened")
    if alert.acked_at is not None:
        note = f": {console_safe(alert.ack_note)}" if alert.ack_note else ""
        lines.append(f"  acknowledged    {alert.acked_at:%Y-%m-%d %H:%M:%S} UTC{note}")
    for message in NodeAlerts(conn).messages(sequence=alert.sequence):
        error = f", last error: {console_safe(message.last_error)}" if message.last_error else ""
        lines.append(
            f"  {message.channel.value:<15} {message.state.value} after {plural(message.attempts, 'attempt')}{error}"
        )
    return "\n".join(lines)


def _dead_listing(conn: Connection) -> str:
    from alliance_psi.cli._columns import columns
    from alliance_psi.protocol.node_alerts import DeliveryState
    from alliance_psi.storage.node_alerts import NodeAlerts

    dead = NodeAlerts(conn).messages(state=DeliveryState.DEAD)
    if not dead:
        return "no dead letters: every notice was delivered or is still being tried"
    rows = [(str(m.sequence), m.channel.value, m.message_id, str(m.attempts), console_safe(m.last_error)) for m in dead]
    return columns(("seq", "channel", "message id", "attempts", "last error"), rows)


@node_group.command("alerts")
@click.argument("alert", required=False)
@database_option
@click.option("--scope", default=None, help="Only alerts of this continuous scope.")
@click.option(
    "--kind", default=None, help="Only alerts of this kind (match, joined, relabeled, withdrawn, retracted, ...)."
)
@click.option("--unacked", is_flag=True, help="Only alerts no investigator acknowledged.")
@click.option("--current", is_flag=True, help="Only the alerts that stand now: each token's latest, when it is a lead.")
@click.option("--since", type=click.DateTime(), default=None, help="Only alerts applied at or after this time (UTC).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many alerts.")
@click.option(
    "--full", is_flag=True, help="With ALERT: show the whole identifier (it ends up in your terminal's history)."
)
@click.option("--ack", is_flag=True, help="With ALERT: acknowledge it for the investigators.")
@click.option("--note", default="", help="With --ack: a note kept with the acknowledgement (a case number).")
@click.option("--dead", is_flag=True, help="List the notices left undelivered past their retry budget (dead letters).")
@click.option("--redeliver", is_flag=True, help="With ALERT: send its dead notices again (a fresh retry budget).")
def alerts_command(
    alert: str | None,
    database: str,
    scope: str | None,
    kind: str | None,
    unacked: bool,
    current: bool,
    since: datetime | None,
    limit: int | None,
    full: bool,
    ack: bool,
    note: str,
    dead: bool,
    redeliver: bool,
) -> None:
    """List the alerts of continuous scopes this node applied, or show, acknowledge or redeliver ALERT
    (its sequence number, or the start of its id)."""
    from alliance_psi.storage.node_alerts import AlertFilter, NodeAlerts

    if alert is None and (full or ack or redeliver):
        raise click.UsageError("--full, --ack and --redeliver need an ALERT (its sequence number or id)")
    if note and not ack:
        raise click.UsageError("--note goes with --ack")
    with reported(), _connection(database, write=ack or redeliver) as conn:
        alerts = NodeAlerts(conn)
        if dead:
            click.echo(_dead_listing(conn))
            return
        if alert is None:
            where = AlertFilter(
                scope=scope,
                kind=kind,
                unacked=unacked,
                current=current,
                since=since.replace(tzinfo=UTC) if since else None,
                limit=limit,
            )
            found = alerts.find(where)
            click.echo(
                _listing(conn, found) if found else "no alerts" + (" match these filters" if alerts.find() else " yet")
            )
            return
        try:
            chosen = alerts.get(alert)
        except NotFound as exc:
            raise NotFound(f"{exc}: `{node_command_text('alerts')}` lists them") from None
        now = datetime.now(UTC)
        if ack:
            done = alerts.ack(chosen.sequence, at=now, note=note)
            click.echo(
                f"alert {chosen.sequence} acknowledged" if done else f"alert {chosen.sequence} was already acknowledged"
            )
            return
        if redeliver:
            from alliance_psi.protocol.node_alerts import Channel

            again = [channel.value for channel in Channel if alerts.redeliver(chosen.sequence, channel, at=now)]
            if not again:
                raise NotFound(
                    f"alert {chosen.sequence} has no dead notice to send again "
                    f"(`{node_command_text('alerts', '--dead')}` lists them)"
                )
            click.echo(f"alert {chosen.sequence}: {', '.join(again)} notice sent again by the running node")
            return
        click.echo(_details(conn, chosen, full=full))


@node_group.command("follow")
@database_option
@network_options
@notify_options
def follow_command(database: str, **options: Any) -> None:
    """Follow this member's alerts until stopped (SIGTERM or Ctrl-C): verify and apply each once, and notify.

    Without a webhook or a log, alerts go to the console only. `node run` does this too.
    """
    import logging
    import signal
    import threading

    from alliance_psi.services.alert_node import AlertSide

    with reported(), open_node_database(database) as engine:
        config = member_config(database, **options)
        notify = notify_config(**options)
        # Console lines carry labels co-holders chose (categories): made safe for the terminal.
        side = AlertSide.from_config(
            config, notify, engine=engine, write=lambda line: click.echo(console_safe(line)), report=_warn
        )
        stop, failed = threading.Event(), threading.Event()

        def work() -> None:
            try:
                side.run(stop)
            except Exception:  # Logged as node run logs it, and the exit code says it: a supervisor restarts it.
                logging.getLogger("alliance_psi.node").exception("node follow: the alert side stopped")
                failed.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        click.echo(f"following alerts of {config.member_id} from {config.coordinator.address}; Ctrl-C stops")
        worker = threading.Thread(target=work, name="alerts", daemon=True)
        worker.start()
        while worker.is_alive() and not stop.wait(0.5):
            pass
        # Everything is in the node's database: a notice still in flight after this is abandoned,
        # not awaited (it is sent again, with the same webhook-id, at the next start).
        worker.join(timeout=5.0)
        side.close()
    if failed.is_set():
        raise SystemExit(1)
    click.echo("stopped")


def _warn(line: str) -> None:
    click.echo(console_safe(line), err=True)
