"""``alliance-psi node report`` and ``node results``: a kept result, verified again, as leads.

Both verify the kept signed result with the coordinator key again before showing anything: the
node's database may have changed since the result was fetched, and a report must never show a
lead the coordinator did not sign for this member and round.

The JSON report is the evidence: the node signs all of it with its alliance certificate's key
(``--cert``/``--key``, the node's TLS files) for ``alliance-psi report verify``. HTML and CSV are
for reading; they are not signed and say that the JSON report is the evidence.

Security: reports hold raw identifiers. ``node report`` writes them only to a file its owner
alone can read (mode 0600), atomically, so a reader never sees half a report; ``node results``
prints values masked to their last four characters, since console output can end up in logs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from alliance_psi._files import read_secret, write_file_atomic
from alliance_psi._plural import plural
from alliance_psi.cli._options import reported
from alliance_psi.cli.node import F, _option, database_option, node_command_text, node_group, open_node_database
from alliance_psi.cli.reports import console_safe, holders_text, read_public_key
from alliance_psi.errors import ConfigurationError, InvalidSignature, NotFound, StorageError
from alliance_psi.identifiers.masking import mask

if TYPE_CHECKING:
    from rich.table import Table
    from sqlalchemy import Connection

    from alliance_psi.reports import LeadReport, ReportSigner
    from alliance_psi.reports.scope_state import ScopeState

# The protocol, crypto, report and rich modules are imported by the functions that use them, so
# that only the command that runs pays for them.

__all__ = ["load_report", "load_scope_state"]

_FORMATS = ("csv", "html", "json")
_FILE = click.Path(dir_okay=False, path_type=Path)


@contextlib.contextmanager
def _member_connection(database: str) -> Iterator[Connection]:
    # Read-only: SQLite need not take the write lock that other node commands take.
    from sqlalchemy.exc import DBAPIError

    with open_node_database(database, read_only=True) as engine:
        try:
            with engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            raise StorageError(f"cannot read the node database: {exc.orig}") from None


def load_report(database: str, round_id: str, *, member_id: str, public_key: bytes) -> tuple[LeadReport, int, int]:
    """The report for a kept result, verified again; also how many signed matches have no own
    identifier, and how many the node refused as leads when it fetched the result.

    The signed header and every kept leaf are checked again (the Merkle root over the leaves is
    recomputed), and each lead gets its leaf's inclusion proof. Matches whose peer labels did not
    back their holder count (``protocol.leads.refuse_leads``) are not leads and not in the report.

    Raises:
        NotFound: no result is kept for ``round_id``.
        InvalidSignature: the kept result does not verify (``ResultMismatch`` for its leaves), is
            for another member or round, or its stored key epoch differs from the signed one.
        StorageError: the database cannot be read.
    """
    from alliance_psi.crypto.signing import key_id
    from alliance_psi.protocol.leads import build_leads
    from alliance_psi.protocol.result_codec import lead_proofs, reopen_result
    from alliance_psi.reports import build_report
    from alliance_psi.storage import KeptResults, MemberRepository

    with _member_connection(database) as conn:
        kept = KeptResults(conn)
        try:
            key_epoch, round_name, header, signature, _ = kept.get_result(round_id)
        except NotFound:
            join = node_command_text("join", round_id)
            raise NotFound(f"no result kept for round {round_id}: run `{join}` first") from None
        leaves = list(kept.iter_leaves(round_id))
        result = reopen_result(public_key, header, signature, leaves, round_id=round_id, member_id=member_id)
        if result.key_epoch != key_epoch:
            raise InvalidSignature(
                f"kept result is filed under key epoch {key_epoch!r}, signed for {result.key_epoch!r}"
            )
        tokens = [match.match_token for match in result.matches]
        repo = MemberRepository(conn)
        own = repo.identifiers_for_tokens(result.key_epoch, tokens)
        label_keys = repo.label_keys_for_tokens(result.key_epoch, tokens)
        checks = kept.get_checks(round_id)
    refused = checks.refused_tokens()
    leads = build_leads(result, own, label_keys, scope=checks.scope, refused=refused, backed=checks.backed_counts())
    index_of = {match.match_token: i for i, match in enumerate(result.matches)}
    proofs = lead_proofs(leaves, (index_of[lead.match_token] for lead in leads))
    report = build_report(
        member_id=member_id,
        round_name=round_name,
        result=result,
        leads=leads,
        header=header,
        signature=signature,
        key_id=key_id(public_key),
        proofs={token: proofs[i] for token, i in index_of.items() if i in proofs},
    )
    return report, len(result.matches) - len(leads) - len(refused), len(refused)


def _identity_options(*, required: bool) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        function = _option(
            "--coordinator-key",
            type=_FILE,
            required=required,
            help="The coordinator's public signing key (signing.pub); results are verified again.",
        )(function)
        return _option("--member-id", required=required, help="This member's id (the name in its certificate).")(
            function
        )

    return decorate


def _signer(member_id: str, cert: Path | None, key: Path | None) -> ReportSigner:
    """The node's certificate and key for signing a JSON report; errors name the option and file."""
    from alliance_psi.reports import ReportSigner

    if cert is None or key is None:
        raise click.UsageError("a JSON report is signed by the node: give --cert and --key (the node's TLS files)")
    files = {}
    for option, path in (("--cert", cert), ("--key", key)):
        try:
            files[option] = read_secret(path, what=option) if option == "--key" else path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{option} {path}: {exc.strerror}") from None
    return ReportSigner.load(files["--cert"], files["--key"], member_id=member_id)


@node_group.command("report")
@click.argument("round_id")
@click.option("--format", "output_format", type=click.Choice(_FORMATS), required=True, help="Report format.")
@click.option("-o", "--output", type=_FILE, required=True, help="File to write (mode 0600: it holds raw identifiers).")
@database_option
@_identity_options(required=True)
@_option("--cert", type=_FILE, default=None, help="This node's certificate: signs JSON reports.")
@_option("--key", type=_FILE, default=None, help="This node's private key: signs JSON reports.")
def report_command(
    round_id: str,
    output_format: str,
    output: Path,
    database: str,
    member_id: str,
    coordinator_key: Path,
    cert: Path | None,
    key: Path | None,
) -> None:
    """Write the investigators' report for a round, or a continuous scope's current state, to a private file.

    HTML for reading, CSV for Excel, JSON (signed by this node) for machines and as the evidence
    `alliance-psi report verify` checks.
    """
    with reported():
        signer = _signer(member_id, cert, key) if output_format == "json" else None
        public_key = read_public_key(coordinator_key)
        if not _kept(database, round_id) and _has_alerts(database, round_id):
            _write_scope_state(database, round_id, member_id, public_key, output_format, output, signer)
            return
        report, withdrawn, refused = load_report(database, round_id, member_id=member_id, public_key=public_key)
        write_file_atomic(output, _render(output_format, report, signer))
    holders = holders_text(report.by_holder_count())
    skipped = f", {plural(withdrawn, 'withdrawn identifier')} left out" if withdrawn else ""
    if refused:
        skipped += f", {plural(refused, 'refused lead')} left out (labels do not back the count; see `node fetch`)"
    evidence = (
        f"; signed by member {signer.member_id}'s node" if signer else "; not evidence: only a JSON report is signed"
    )
    click.echo(
        console_safe(
            f"wrote {output} ({output_format}, mode 0600): {plural(len(report.leads), 'lead')} in round {report.round_id} "
            f"({report.round_name}): {holders}{skipped}; verified with coordinator key {report.key_id}{evidence}"
        )
    )


def _kept(database: str, round_id: str) -> bool:
    from alliance_psi.storage import KeptResults

    with _member_connection(database) as conn:
        try:
            KeptResults(conn).get_result(round_id)
        except NotFound:
            return False
    return True


def _has_alerts(database: str, scope_id: str) -> bool:
    from alliance_psi.storage.node_alerts import NodeAlerts

    with _member_connection(database) as conn:
        return scope_id in NodeAlerts(conn).scopes()


def load_scope_state(database: str, scope_id: str, *, member_id: str, public_key: bytes) -> ScopeState:
    """The standing leads of continuous scope ``scope_id``, each alert verified again with the coordinator key.

    Raises:
        InvalidSignature: a kept alert does not verify (the node's database changed since it was applied).
    """
    from datetime import UTC, datetime

    from alliance_psi.crypto.signing import key_id
    from alliance_psi.protocol.alerts import SignedAlert, verify_alert
    from alliance_psi.protocol.leads import Lead, lead_sort_key
    from alliance_psi.protocol.node_alerts import kind_name
    from alliance_psi.reports.scope_state import ScopeState
    from alliance_psi.storage import MemberRepository
    from alliance_psi.storage.node_alerts import AlertFilter, NodeAlerts

    with _member_connection(database) as conn:
        alerts = NodeAlerts(conn)
        standing = alerts.find(AlertFilter(scope=scope_id, current=True))
        through = max((a.sequence for a in alerts.find(AlertFilter(limit=1))), default=0)
        repo = MemberRepository(conn)
        leads = []
        for alert in standing:
            signed = verify_alert(public_key, SignedAlert(alert.signed, alert.signature, ""), member_id=member_id)
            # Every kept field the state rests on, the kind above all (a retraction edited to a match
            # would put an identifier among the standing leads).
            if (
                signed.sequence,
                signed.scope_id,
                kind_name(signed.kind),
                signed.key_epoch,
                signed.match_token,
                signed.holder_count,
            ) != (alert.sequence, alert.scope, alert.kind, alert.key_epoch, alert.match_token, alert.holder_count):
                raise InvalidSignature(f"kept alert {alert.sequence} does not match the alert the coordinator signed")
            own = repo.identifiers_for_tokens(alert.key_epoch, [alert.match_token]).get(alert.match_token)
            if own is None:
                continue  # Withdrawn since: not a lead of this member any more.
            lead = Lead(
                own.type,
                own.canonical,
                own.category,
                own.severity,
                own.case_ref,
                own.first_seen,
                alert.holder_count,
                alert.match_token,
                alert.peer_labels,
                alert.unreadable_labels,
                own.spelling,
                alert.backed_count,
            )
            leads.append((lead, alert))
    leads.sort(key=lambda pair: lead_sort_key(pair[0]))
    return ScopeState(member_id, scope_id, through, datetime.now(UTC), key_id(public_key), tuple(leads))


def _write_scope_state(
    database: str,
    scope_id: str,
    member_id: str,
    public_key: bytes,
    output_format: str,
    output: Path,
    signer: ReportSigner | None,
) -> None:
    """``node report`` for a continuous scope: its current state (``reports.scope_state``), not a round's result."""
    from alliance_psi.reports.scope_state import render_scope_state_csv, render_signed_scope_state

    if output_format == "html":
        raise click.UsageError(
            f"{scope_id} is a continuous scope: its current state is written as json (signed) or csv; "
            "html is for a round's result"
        )
    state = load_scope_state(database, scope_id, member_id=member_id, public_key=public_key)
    data = render_signed_scope_state(state, signer) if signer is not None else render_scope_state_csv(state)
    write_file_atomic(output, data)
    evidence = f"; signed by member {signer.member_id}'s node" if signer else "; not evidence: only JSON is signed"
    click.echo(
        console_safe(
            f"wrote {output} ({output_format}, mode 0600): the current state of continuous scope {scope_id}, "
            f"{plural(len(state.leads), 'standing lead')} as of alert {state.through_sequence} (not a round's result); "
            f"each lead's alert verified with coordinator key {state.key_id}{evidence}"
        )
    )
    if signer is None:  # The JSON document carries the statement; a CSV file cannot.
        click.echo(console_safe(state.statement))


def _render(output_format: str, report: LeadReport, signer: ReportSigner | None) -> bytes:
    """``report`` as a file in ``output_format`` (one of ``_FORMATS``); JSON is signed by ``signer``."""
    from alliance_psi.reports import render_csv, render_html, render_signed_json

    if output_format == "json" and signer is not None:
        return render_signed_json(report, signer)
    renderers: dict[str, Callable[[LeadReport], bytes]] = {"html": render_html, "csv": render_csv}
    return renderers[output_format](report)


def _leads_table(report: LeadReport) -> Table:
    from rich.table import Table
    from rich.text import Text

    title = (
        f"round {report.round_id} ({report.round_name}): {plural(len(report.leads), 'lead')}, "
        f"threshold {report.threshold}"
    )
    table = Table(title=Text(console_safe(title)))
    for column in ("type", "value", "holders", "category", "peer categories"):
        table.add_column(column, justify="right" if column == "holders" else "left", no_wrap=column == "value")
    for lead in report.leads:
        peers = ", ".join(sorted({label.category for label in lead.peer_labels}))
        if lead.unreadable_labels:
            peers += f"{', ' if peers else ''}{lead.unreadable_labels} unreadable"
        holders = str(lead.holder_count) + ("" if lead.backed_count is None else f" (labels back {lead.backed_count})")
        cells = (lead.type, mask(lead.canonical), holders, lead.category, peers or "-")
        table.add_row(*(Text(console_safe(cell)) for cell in cells))
    return table


def _results_listing(rows: list[tuple[str, str, datetime]]) -> str:
    """Kept results one a line, in columns that never cut a round id (``cli._columns``)."""
    from alliance_psi.cli._columns import columns

    cells = [
        (console_safe(round_id), fetched_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip(), console_safe(name))
        for round_id, name, fetched_at in rows
    ]
    return columns(("round", "fetched", "name"), cells)


@node_group.command("results")
@click.argument("round_id", required=False)
@database_option
@_identity_options(required=False)
def results_command(round_id: str | None, database: str, member_id: str | None, coordinator_key: Path | None) -> None:
    """List kept results, or show a round's leads with values masked (open the report for full values)."""
    from rich.console import Console

    console = Console()
    with reported():
        if round_id is None:
            from alliance_psi.storage import KeptResults

            with _member_connection(database) as conn:
                rows = KeptResults(conn).list_results()
            click.echo(_results_listing(rows) if rows else "no results kept yet")
            return
        if member_id is None or coordinator_key is None:
            raise click.UsageError("--member-id and --coordinator-key are needed to show a round's leads")
        public_key = read_public_key(coordinator_key)
        report, _, _ = load_report(database, round_id, member_id=member_id, public_key=public_key)
    console.print(_leads_table(report))
