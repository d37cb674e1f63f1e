"""``alliance-psi coordinator``: the alliance operator's coordinator and its admin commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from alliance_psi._files import read_secret, write_file_atomic
from alliance_psi._plural import plural
from alliance_psi.cli._enrolment import echo_enrolment, enrolment_group
from alliance_psi.cli._lazy import LazyGroup
from alliance_psi.cli._options import (
    DATABASE_URL,
    PeerAddress,
    monitoring_config,
    monitoring_options,
    reported,
    server_limit_options,
    server_limits,
    tls_config,
    tls_options,
)
from alliance_psi.config import CoordinatorConfig, PeerEndpoint
from alliance_psi.defaults import (
    COORDINATOR_NAME,
    MAX_ALERT_BACKLOG,
    MAX_REFUSED_CHUNKS,
    MAX_ROUND_ITEMS,
    MAX_SET_ITEMS,
    TICK_SECONDS,
)
from alliance_psi.errors import ConfigurationError

if TYPE_CHECKING:
    from alliance_psi.cli._serving import Monitor
    from alliance_psi.protocol.coordinator import RoundSpec
    from alliance_psi.protocol.model import Round
    from alliance_psi.services.clients import CoordinatorClient

__all__ = ["coordinator_group"]


# `coordinator report` lives with `report verify` and attaches itself to this group when imported.
@click.group("coordinator", cls=LazyGroup, lazy_commands={"report": "alliance_psi.cli.reports:coordinator_report"})
def coordinator_group() -> None:
    """Run the coordinator, and administer rounds as the alliance operator."""


coordinator_group.add_command(enrolment_group("member", server="coordinator", role="member", with_display_name=True))
coordinator_group.add_command(enrolment_group("admin", server="coordinator", role="admin"))


@coordinator_group.command("keygen")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for signing.key (0600) and signing.pub (ships with the alliance configuration).",
)
@click.option("--force", is_flag=True, help="Overwrite existing keys.")
def keygen(out: Path, force: bool) -> None:
    """Create the coordinator's Ed25519 result-signing key."""
    from alliance_psi.crypto.signing import SigningKey

    with reported():
        key_path, pub_path = out / "signing.key", out / "signing.pub"
        if (key_path.exists() or pub_path.exists()) and not force:
            raise ConfigurationError(
                f"{key_path} exists; pass --force to replace it (old results stay verifiable only with the old key)"
            )
        out.mkdir(parents=True, exist_ok=True)
        key = SigningKey.generate()
        write_file_atomic(key_path, key.to_pem())
        write_file_atomic(pub_path, (key.public_key.hex() + "\n").encode(), private=False)
    click.echo(f"wrote {key_path} and {pub_path} (key id {key.key_id})")


@coordinator_group.command("serve")
@click.option(
    "--name", default=COORDINATOR_NAME, show_default=True, help="This coordinator's name (in its certificate)."
)
@click.option("--listen", default="127.0.0.1:7100", show_default=True, help="Address to listen on (port 0: any).")
@tls_options
@click.option(
    "--signing-key", type=click.Path(dir_okay=False, path_type=Path), required=True, help="signing.key from keygen."
)
@click.option(
    "--database",
    type=DATABASE_URL,
    required=True,
    help="sqlite:///coordinator.db or postgresql+psycopg://user@host/db.",
)
@click.option(
    "--tick",
    type=click.FloatRange(min=0.05),
    default=TICK_SECONDS,
    show_default=True,
    help="Seconds between deadline and pending-match checks.",
)
@click.option(
    "--max-set-items",
    type=click.IntRange(min=1),
    default=MAX_SET_ITEMS,
    show_default=True,
    help="Tokens a member's standing set may hold per scope.",
)
@click.option(
    "--max-round-items",
    type=click.IntRange(min=1),
    default=MAX_ROUND_ITEMS,
    show_default=True,
    help="Items and removals a member's delta may hold per round.",
)
@click.option(
    "--max-refused-chunks",
    type=click.IntRange(min=1),
    default=MAX_REFUSED_CHUNKS,
    show_default=True,
    help="Chunks of a member refused for their content per round before all its further chunks to it are.",
)
@click.option(
    "--max-alert-backlog",
    type=click.IntRange(min=1),
    default=MAX_ALERT_BACKLOG,
    show_default=True,
    help="Alerts of continuous scopes a member may leave unacknowledged (then OVERFLOW, and a RESYNC once it acks).",
)
@server_limit_options
@monitoring_options
def serve(
    name: str,
    listen: str,
    ca_cert: Path,
    cert: Path,
    key: Path,
    crl: Path | None,
    signing_key: Path,
    database: str,
    tick: float,
    max_set_items: int,
    max_round_items: int,
    max_refused_chunks: int,
    max_alert_backlog: int,
    **options: Any,
) -> None:
    """Serve rounds, submissions and signed results over mutual TLS until SIGTERM or Ctrl-C.

    Only members and admins enrolled by `coordinator member add` / `admin add` are served. SIGHUP
    reloads the CRL. Limits and their defaults: docs/operations.md, "Limits"; the metrics port
    and logging: docs/operations.md, "Monitor".
    """
    config = CoordinatorConfig(
        name=name,
        listen=listen,
        tls=tls_config(ca_cert, cert, key, crl),
        signing_key=signing_key,
        database=database,
        tick_seconds=tick,
        max_set_items=max_set_items,
        max_round_items=max_round_items,
        max_refused_chunks=max_refused_chunks,
        max_alert_backlog=max_alert_backlog,
        limits=server_limits(**options),
        monitoring=monitoring_config(**options),
    )
    with reported():
        _serve(config)


def _serve(config: CoordinatorConfig) -> None:
    from alliance_psi.cli._logging import configure_logging

    configure_logging(config.monitoring)  # First: before anything loads that may log.
    from alliance_psi.cli._serving import GRPC, monitored

    with monitored(config.monitoring, needs=("tls", "signing key", "database", GRPC)) as monitor:
        _serve_monitored(config, monitor)


def _serve_monitored(config: CoordinatorConfig, monitor: Monitor) -> None:
    from alliance_psi.cli._logging import announce
    from alliance_psi.cli._serving import serve_until_stopped, server_tls
    from alliance_psi.crypto.signing import SigningKey
    from alliance_psi.identifiers import IdentifierType
    from alliance_psi.protocol.coordinator import CoordinatorRole
    from alliance_psi.protocol.model import Role
    from alliance_psi.services.coordinator import Ticker, coordinator_registration, sql_unit_of_work
    from alliance_psi.services.enrolment import enrolment_gate
    from alliance_psi.services.state_metrics import CoordinatorStateCollector
    from alliance_psi.storage import create_schema, make_engine

    # TLS first: a wrong certificate or CRL is refused before any database is created.
    tls, revocations = server_tls(config.tls, role=Role.COORDINATOR, name=config.name)
    monitor.tls_loaded(config.tls)
    try:
        key = SigningKey.from_pem(read_secret(config.signing_key, what="signing key"))
    except OSError as exc:
        raise ConfigurationError(f"signing key {config.signing_key}: {exc.strerror}") from None
    monitor.readiness.met("signing key")
    engine = make_engine(config.database)
    create_schema(engine)
    monitor.database_opened(engine)
    monitor.metrics.add_collector(CoordinatorStateCollector(engine))
    roster, check = enrolment_gate(
        engine,
        server="coordinator",
        roles=frozenset({Role.MEMBER, Role.ADMIN}),
        refresh=config.enrolment_refresh_seconds,
    )
    role = CoordinatorRole(
        sql_unit_of_work(engine),
        key,
        known_types=[t.value for t in IdentifierType],
        name=config.name,
        max_set_items=config.max_set_items,
        max_round_items=config.max_round_items,
        max_refused_chunks=config.max_refused_chunks,
        key_pins=roster.key_pin_of,  # Each result and alert names the member's enrolled key (reports check it).
        max_alert_backlog=config.max_alert_backlog,
        reader=sql_unit_of_work(engine, reading=True),  # Alert watches read without the write lock.
    )

    def started(port: int) -> None:
        echo_enrolment(
            roster,
            "coordinator",
            config.name,
            roles=("member", "admin"),
            needed="admin",
            without="no round can be created",
            say=announce,
        )
        announce(f"coordinator {config.name} (signing key {key.key_id}) serving on port {port}")

    serve_until_stopped(
        [coordinator_registration(role, monitor.metrics)],
        listen=config.listen,
        tls=tls,
        revocations=revocations,
        checks=[check],
        limits=config.limits,
        engine=engine,
        started=started,
        monitor=monitor,
        name="coordinator serve",
        companions=[Ticker(role, config.tick_seconds)],
    )


@coordinator_group.command("audit-verify")
@click.option("--database", type=DATABASE_URL, default=None, help="The coordinator's (or a custodian's) database URL.")
@click.option(
    "--checkpoints",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoints a member exported (node checkpoints-export): the log must still make each one.",
)
@click.option(
    "--coordinator-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The coordinator's public signing key (signing.pub), to check --checkpoints.",
)
def audit_verify(database: str | None, checkpoints: Path | None, coordinator_key: Path | None) -> None:
    """Check the audit log's Merkle tree, and its consistency with checkpoints members kept.

    With --database: every entry against its leaf hash and every stored node against the tree.
    With --checkpoints (and --coordinator-key): every checkpoint's signature, every piece of
    evidence in the file, and, with --database too, that the log still makes each checkpoint's
    root (an operator who rewrote the log and recomputed every hash fails only this check).
    """
    from alliance_psi.storage import AuditLog, make_engine

    if database is None and checkpoints is None:
        raise click.UsageError("give --database, --checkpoints, or both")
    if checkpoints is not None and coordinator_key is None:
        raise click.UsageError("--checkpoints needs --coordinator-key")
    with reported():
        heads = _checked_checkpoints(checkpoints, coordinator_key) if checkpoints and coordinator_key else []
        if database is not None:
            engine = make_engine(database).execution_options(sqlite_begin="DEFERRED")
            try:
                with engine.connect() as conn:
                    count = AuditLog(conn).verify(heads)
            finally:
                engine.dispose()
            against = f", consistent with {plural(len(heads), 'checkpoint')} from {checkpoints}" if checkpoints else ""
            click.echo(f"audit log intact: {plural(count, 'entry', 'entries')} verified{against}")


def _checked_checkpoints(path: Path, key_path: Path) -> list[tuple[int, bytes]]:
    """(size, root) of each checkpoint in an export file, all signatures checked; evidence checked too.

    Raises ``LogInconsistent`` if the file holds evidence that proves the log inconsistent.
    """
    from alliance_psi.cli.reports import read_public_key
    from alliance_psi.errors import LogInconsistent
    from alliance_psi.protocol.checkpoints import check_evidence, open_checkpoint
    from alliance_psi.protocol.log_evidence import read_document

    key = read_public_key(key_path)
    try:
        signed, evidence = read_document(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"{path}: {exc.strerror}") from None
    heads = [open_checkpoint(key, checkpoint) for checkpoint in signed]
    click.echo(
        f"{path}: {plural(len(heads), 'checkpoint')} signed by coordinator key {heads[0].key_id if heads else '-'}"
    )
    proven = [f"evidence {i} ({found.kind}): {check_evidence(key, found)}" for i, found in enumerate(evidence, 1)]
    if proven:
        raise LogInconsistent("; ".join(proven))
    return [(head.tree_size, head.root) for head in heads]


# Rounds (admin client) -------------------------------------------------------------------------


def _admin_client(coordinator: PeerEndpoint, ca_cert: Path, cert: Path, key: Path, crl: Path | None):  # type: ignore[no-untyped-def]
    from alliance_psi.protocol.model import Role
    from alliance_psi.services.cert_checks import load_tls
    from alliance_psi.services.clients import CoordinatorClient

    tls = load_tls(tls_config(ca_cert, cert, key, crl), role=Role.ADMIN)
    return CoordinatorClient(coordinator.address, tls, name=coordinator.name)


@coordinator_group.group("round")
def round_group() -> None:
    """Create, list, show and close rounds (needs an admin certificate)."""


_address = click.option(
    "--coordinator",
    "address",
    type=PeerAddress("coordinator", default_name=COORDINATOR_NAME),
    default="127.0.0.1:7100",
    show_default=True,
    help="The coordinator, [NAME@]HOST:PORT; NAME (default: coordinator) is the name in its certificate.",
)

# Options a round and a continuous scope are created with alike (``RoundSpec``).
_threshold = click.option(
    "--threshold", type=click.IntRange(min=2), default=2, show_default=True, help="Members that must hold a token."
)
_share_labels = click.option(
    "--share-labels/--no-share-labels",
    default=True,
    show_default=True,
    help="Pass members' sealed labels to co-holders.",
)
_label_cap = click.option(
    "--label-cap",
    type=click.IntRange(min=1, max=800),
    default=None,
    help="Co-holders' labels each lead carries at most, from threshold − 1 to 800 (default: 8, or "
    "2 × (threshold − 1) if more); the holder count is given whatever the cap. Bounds what holders of "
    "the same tokens make the coordinator store (docs/design.md, Limits).",
)


def _members(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...] | None:
    """``--invite``: the member ids it names, or None (every member) when it names none."""
    return tuple(m.strip() for m in value.split(",") if m.strip()) or None


_invite = click.option(
    "--invite", "invited", default="", callback=_members, help="Comma-separated member ids (default: every member)."
)


def _epoch(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from alliance_psi.protocol.coordinator import ID_PATTERN

    if not ID_PATTERN.match(value):
        raise click.BadParameter(
            f"{value!r}: a key epoch is 1-64 letters, digits, '.', '_' or '-' (as the custodians name it)"
        )
    return value


def _types(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from alliance_psi.identifiers import IdentifierType

    types = tuple(t.strip() for t in value.split(",") if t.strip())
    known = [t.value for t in IdentifierType]
    unknown = [t for t in types if t not in known]
    if unknown or not types:
        raise click.BadParameter(f"unknown types {unknown or '(none given)'}; known: {', '.join(known)}")
    return types


# The option that sets each field of ``RoundSpec``: the coordinator names a field it refuses
# (``invited: not enrolled at this coordinator: …``), which the command line calls by its option.
_SPEC_OPTIONS = {
    "name": "--name",
    "threshold": "--threshold",
    "key_epoch": "--epoch",
    "deadline": "--deadline-minutes",
    "allowed_types": "--types",
    "invited": "--invite",
    "min_interval_seconds": "--min-interval",
    "label_cap": "--label-cap",
    "labels_at_match": "--labels-at-match",
    "label_window_seconds": "--label-window",
    "round_id": "--id",
}


def _created(client: CoordinatorClient, spec: RoundSpec) -> Round:
    """``client.create_round(spec)``; a spec the coordinator refuses is named by its options.

    The invitees and the label cap are checked against the threshold first, here: a round that
    invites fewer members than its threshold, or carries fewer labels than a lead needs, could
    never find (or back) a lead.

    Raises:
        click.UsageError: ``--invite`` names fewer distinct members than ``--threshold``, or
            ``--label-cap`` is below ``--threshold`` − 1.
        InvalidRequest: the coordinator refused the spec; the message names the option.
    """
    import re

    from alliance_psi.errors import InvalidRequest

    if spec.invited is not None and len(set(spec.invited)) < spec.threshold:
        raise click.UsageError(
            f"--invite names {plural(len(set(spec.invited)), 'member')}, fewer than --threshold {spec.threshold}: "
            "a lead needs that many holders, so invite at least as many members or lower --threshold"
        )
    if spec.label_cap and not spec.share_labels:
        raise click.UsageError("--label-cap caps the labels co-holders share: with --no-share-labels there are none")
    if spec.labels_at_match and not spec.share_labels:
        raise click.UsageError(
            "--labels-at-match asks the holders of matched tokens for their labels: with --no-share-labels "
            "there are none to ask for"
        )
    if spec.label_window_seconds and not spec.labels_at_match:
        raise click.UsageError(
            "--label-window is how long a round with --labels-at-match waits for labels: add --labels-at-match "
            "(with shared labels), or leave --label-window out"
        )
    if spec.label_cap and spec.label_cap < spec.threshold - 1:
        raise click.UsageError(
            f"--label-cap {spec.label_cap} is below --threshold {spec.threshold} − 1: a lead needs "
            f"{spec.threshold - 1} co-holders' labels to be backed, so raise --label-cap or lower --threshold"
        )
    try:
        return client.create_round(spec)
    except InvalidRequest as exc:
        # ``the coordinator at HOST:PORT: invited: …``: the field after the peer, or first.
        fields = "|".join(_SPEC_OPTIONS)
        named = re.sub(rf"(^|: )({fields}): ", lambda m: f"{m[1]}{_SPEC_OPTIONS[m[2]]}: ", str(exc), count=1)
        raise InvalidRequest(named) from None


# Durations on the command line (seconds, or 15m, 1h, 1d).
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: str) -> int:
    """Seconds (``90``) or a number with s, m, h or d (``15m``); ``BadParameter`` names the value."""
    text = value.strip().lower()
    unit = _DURATION.get(text[-1:], 0) if text else 0
    number = text[:-1] if unit else text
    if not number.isdigit() or not number.isascii():
        raise click.BadParameter(f"{value!r} is not a duration: give seconds (90) or a number with s, m, h or d (15m)")
    return int(number) * (unit or 1)


def _interval(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """``--min-interval``: seconds (``90``) or a number with s, m, h or d (``15m``), up to 7 days."""
    from alliance_psi.protocol.coordinator import MAX_INTERVAL_SECONDS

    seconds = _seconds(value)
    if seconds > MAX_INTERVAL_SECONDS:
        raise click.BadParameter(f"{value} is longer than 7 days, the longest interval")
    return seconds


def _window(ctx: click.Context, param: click.Parameter, value: str | None) -> int:
    """``--label-window``: a duration as ``--min-interval``'s, 10 s to 7 days; 0 when not given."""
    from alliance_psi.protocol.coordinator import MAX_LABEL_WINDOW_SECONDS, MIN_LABEL_WINDOW_SECONDS

    if value is None:
        return 0
    seconds = _seconds(value)
    if not MIN_LABEL_WINDOW_SECONDS <= seconds <= MAX_LABEL_WINDOW_SECONDS:
        raise click.BadParameter(f"{value} is not from 10 seconds to 7 days")
    return seconds


@round_group.command("create")
@_address
@tls_options
@click.option("--name", required=True, help="What the round is for.")
@_threshold
@click.option("--epoch", required=True, callback=_epoch, help="Key epoch the custodians serve.")
@click.option(
    "--types",
    default="phone,id_card,bank_card,uscc",
    show_default=True,
    callback=_types,
    help="Comma-separated identifier types.",
)
@_invite
@click.option(
    "--deadline-minutes", type=click.IntRange(min=1), default=60, show_default=True, help="Closes after this long."
)
@_share_labels
@_label_cap
@click.option(
    "--labels-at-match",
    is_flag=True,
    help="Members send tokens only; once the round closes, the holders of each matched token are asked "
    "for its label (their nodes must be running or waiting for the result). A coordinator that follows "
    "the protocol then keeps no label of an identifier nobody else holds (docs/design.md, Labels sealed "
    "at match).",
)
@click.option(
    "--label-window",
    default=None,
    callback=_window,
    help="With --labels-at-match: how long the holders have to answer after the round closes (600, 10m, 1h; "
    "10 s to 7 days; default 5 min). A holder that has not answered by then is carried without its label.",
)
@click.option("--id", "round_id", default="", help="Round id (generated when empty).")
def round_create(
    address: PeerEndpoint,
    ca_cert: Path,
    cert: Path,
    key: Path,
    crl: Path | None,
    name: str,
    threshold: int,
    epoch: str,
    types: tuple[str, ...],
    invited: tuple[str, ...] | None,
    deadline_minutes: int,
    share_labels: bool,
    label_cap: int | None,
    labels_at_match: bool,
    label_window: int,
    round_id: str,
) -> None:
    """Open a round."""
    from alliance_psi.protocol.coordinator import RoundSpec

    spec = RoundSpec(
        name=name,
        threshold=threshold,
        key_epoch=epoch,
        deadline=datetime.now(UTC) + timedelta(minutes=deadline_minutes),
        allowed_types=types,
        invited=invited,
        share_labels=share_labels,
        round_id=round_id,
        label_cap=label_cap or 0,
        labels_at_match=labels_at_match,
        label_window_seconds=label_window,
    )
    with reported(), _admin_client(address, ca_cert, cert, key, crl) as client:
        created = _created(client, spec)
    click.echo(created.round_id)


def _committed(round_: Round, committed: int) -> str:
    """``2 of 3 invited`` or, for a round open to every member, ``2``."""
    return f"{committed} of {len(round_.invited)} invited" if round_.invited is not None else str(committed)


def _round_listing(rounds: list[tuple[Round, int]], *, scopes: bool = False) -> str:
    """Rounds (or continuous ``scopes``, with their alert interval and no deadline) one a line, in
    columns that never cut a round id (``cli._columns``)."""
    from alliance_psi.cli._columns import columns
    from alliance_psi.cli.reports import console_safe

    kind = ("scope", "alerts") if scopes else ("round", "deadline (UTC)")
    header = (kind[0], "state", "t", "epoch", "types", "labels", "committed", kind[1], "name")
    rows = [
        tuple(
            console_safe(cell)
            for cell in (
                r.round_id,
                r.state.value,
                str(r.threshold),
                r.key_epoch,
                ",".join(r.allowed_types),
                ("at match" if r.labels_at_match else "shared") if r.share_labels else "not shared",
                _committed(r, committed),
                _every(r.min_interval_seconds) if scopes else f"{r.deadline:%Y-%m-%d %H:%M}",
                r.name,
            )
        )
        for r, committed in rounds
    ]
    return columns(header, rows)


def _round_lines(round_: Round, committed: int) -> list[tuple[str, str]]:
    """Everything about one round, one fact a line: the types it matches, who is invited, label sharing."""
    at = "%Y-%m-%d %H:%M:%S UTC"
    lines = [
        ("round", round_.round_id),
        ("name", round_.name),
        (
            "state",
            round_.state.value
            + (f" ({round_.close_reason})" if round_.close_reason else "")
            + (", waiting for the matched tokens' labels" if round_.labelling else ""),
        ),
        ("threshold", plural(round_.threshold, "member")),
        ("key epoch", round_.key_epoch),
        ("types", ", ".join(round_.allowed_types)),
        ("invited", ", ".join(round_.invited) if round_.invited is not None else "every member"),
        ("labels", _labels_fact(round_)),
        *(
            [("labels awaited", ", ".join(f"{m} ({plural(n, 'label')})" for m, n in round_.labels_awaited))]
            if round_.labels_awaited
            else []
        ),
        ("committed", plural(committed, "member")),
        ("deadline", f"{round_.deadline:{at}}"),
    ]
    if round_.created_at is not None:
        lines.append(
            ("created", f"{round_.created_at:{at}}" + (f" by {round_.created_by}" if round_.created_by else ""))
        )
    lines += [
        (name, f"{when:{at}}") for name, when in (("closed", round_.closed_at), ("matched", round_.matched_at)) if when
    ]
    return lines


def _labels_fact(round_: Round) -> str:
    """``labels``: whether co-holders see each other's labels, and how many at most."""
    if not round_.share_labels:
        return "not shared (tokens only)"
    if not round_.label_cap:
        fact = "shared with co-holders (every co-holder's: no cap)"
    else:
        fact = f"shared with co-holders, at most {plural(round_.label_cap, 'label')} per lead"
    if round_.labels_at_match:
        fact += f", sealed at match, {round_.label_window_seconds} s to answer"
        if round_.labels_due is not None:
            fact += f" (due {round_.labels_due:%Y-%m-%d %H:%M:%S} UTC)"
    return fact


def _echo_facts(lines: list[tuple[str, str]]) -> None:
    """One fact a line, the names in a column."""
    from alliance_psi.cli.reports import console_safe

    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        click.echo(f"{name:<{width}}  {console_safe(value)}")


@round_group.command("list")
@_address
@tls_options
def round_list(address: PeerEndpoint, ca_cert: Path, cert: Path, key: Path, crl: Path | None) -> None:
    """List rounds: state, threshold, epoch, types, label sharing, commitments, deadline, name.

    Continuous scopes are listed by `coordinator scope list`."""
    from alliance_psi.protocol.model import RoundKind

    with reported(), _admin_client(address, ca_cert, cert, key, crl) as client:
        rounds = client.list_rounds(kind=RoundKind.BATCH)
    click.echo(_round_listing(rounds) if rounds else "no rounds yet")


@round_group.command("show")
@_address
@tls_options
@click.argument("round_id")
def round_show(address: PeerEndpoint, ca_cert: Path, cert: Path, key: Path, crl: Path | None, round_id: str) -> None:
    """Show one round: its types, invitees, label sharing, state and commitments."""

    with reported(), _admin_client(address, ca_cert, cert, key, crl) as client:
        found, committed = client.get_round(round_id)
    _echo_facts(_round_lines(found, committed))


@round_group.command("close")
@_address
@tls_options
@click.argument("round_id")
@click.option("--reason", default="", help="Recorded in the audit log.")
def round_close(
    address: PeerEndpoint, ca_cert: Path, cert: Path, key: Path, crl: Path | None, round_id: str, reason: str
) -> None:
    """Close an open round now; matching follows."""
    with reported(), _admin_client(address, ca_cert, cert, key, crl) as client:
        closed = client.close_round(round_id, reason)
    waiting = (
        f", waiting for the matched tokens' labels until {closed.labels_due:%Y-%m-%d %H:%M:%S} UTC"
        if closed.labelling and closed.labels_due is not None
        else ""
    )
    click.echo(f"round {closed.round_id} is {closed.state.value}{waiting}")


# Continuous scopes (admin client) ------------------------------------------------------------------


def _every(seconds: int) -> str:
    """``at once``, or ``every 15 min`` (the largest unit that divides the interval)."""
    if not seconds:
        return "at once"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"every {seconds // size} {unit}"
    return f"every {seconds} s"


@coordinator_group.group("scope")
def scope_group() -> None:
    """Create, list, show and close continuous scopes (needs an admin certificate).

    A continuous scope matches each member's delta as it commits and alerts the holders of the
    tokens it changed (docs/operations.md, "Continuous scopes").
    """


@scope_group.command("create")
@_address
@tls_options
@click.option("--name", required=True, help="What the scope watches for.")
@_threshold
@click.option("--epoch", required=True, callback=_epoch, help="Key epoch the custodians serve.")
@click.option(
    "--types",
    default="phone,id_card,bank_card,uscc",
    show_default=True,
    callback=_types,
    help="Comma-separated identifier types.",
)
@_invite
@_share_labels
@_label_cap
@click.option(
    "--min-interval",
    default="0",
    show_default=True,
    callback=_interval,
    help="Release alerts only at multiples of this after creation (90, 15m, 1h): blurs when a change happened.",
)
@click.option("--id", "scope_id", default="", help="Scope id (generated when empty).")
def scope_create(
    address: PeerEndpoint,
    ca_cert: Path,
    cert: Path,
    key: Path,
    crl: Path | None,
    name: str,
    threshold: int,
    epoch: str,
    types: tuple[str, ...],
    invited: tuple[str, ...] | None,
    share_labels: bool,
    label_cap: int | None,
    min_interval: int,
    scope_id: str,
) -> None:
    """Open a standing continuous scope; it runs until `scope close`."""
    from alliance_psi.protocol.coordinator import RoundSpec
    from alliance_psi.protocol.model import NO_DEADLINE, RoundKind

    spec = RoundSpec(
        name=name,
        threshold=threshold,
        key_epoch=epoch,
        deadline=NO_DEADLINE,
        allowed_types=types,
        invited=invited,
        share_labels=share_labels,
        round_id=scope_id,
        kind=RoundKind.CONTINUOUS,
        min_interval_seconds=min_interval,
        label_cap=label_cap or 0,
    )
    with reported(), _admin_client(address, ca_cert, cert, key, crl) as client:
        created = _created(client, spec)
    click.echo(created.round_id)


@scope_group.command("list")
@_address
@tls_options
def scope_list(address: PeerEndpoint, ca_cert: Path, cert: Path, key: Path, crl: Path | None) -> None:
    """List continuous scopes: state, threshold, epoch, types, labels, members, alert interval, name."""
    from alliance_psi.protocol.model import RoundKind

    with reported(), _admin_client(address, ca_cert, cert, key, crl) as client:
        scopes = client.list_rounds(kind=RoundKind.CONTINUOUS)
    click.echo(_round_listing(scopes, scopes=True) if scopes else "no continuous scopes yet")


@scope_group.command("show")
@_address
@tls_options
@click.argument("scope_id")
def scope_show(address: PeerEndpoint, ca_cert: Path, cert: Path, key: Path, crl: Path | None, scope_id: str) -> None:
    """Show one continuous scope: types, invitees, label sharing, alert interval, state, members."""

    with reported(), _admin_client(address, ca_cert, cert, key, crl) as client:
        found, committed = client.get_round(scope_id)
    if not found.continuous:
        raise click.ClickException(f"{scope_id} is a batch round, not a continuous scope: see `coordinator round show`")
    lines = [(("scope" if n == "round" else n), v) for n, v in _round_lines(found, committed) if n != "deadline"]
    lines.insert(
        8, ("alerts", _every(found.min_interval_seconds) + " (after creation)" * bool(found.min_interval_seconds))
    )
    _echo_facts(lines)


@scope_group.command("close")
@_address
@tls_options
@click.argument("scope_id")
@click.option("--reason", default="", help="Recorded in the audit log.")
def scope_close(
    address: PeerEndpoint, ca_cert: Path, cert: Path, key: Path, crl: Path | None, scope_id: str, reason: str
) -> None:
    """Close a continuous scope: no more deltas; each member's final result is issued over its set."""
    with reported(), _admin_client(address, ca_cert, cert, key, crl) as client:
        found, _ = client.get_round(scope_id)
        if not found.continuous:
            raise click.ClickException(
                f"{scope_id} is a batch round, not a continuous scope: see `coordinator round close`"
            )
        closed = client.close_round(scope_id, reason)
    click.echo(f"scope {closed.round_id} is closed; final results issued ({closed.state.value})")
