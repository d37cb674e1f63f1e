"""``alliance-psi report verify`` and ``alliance-psi coordinator report``.

``report verify`` lets anyone holding the alliance CA certificate and the coordinator's public key
check a JSON lead report: the member node's signature over every field and the coordinator's over
the result. It prints ``valid: …`` with what each signature covers and what they do not prove, or
exits 1 with the exact mismatch. ``--online`` also re-derives every lead's match token through the
custodians, with a member node's certificate (costing that member's quota). ``coordinator report`` is the alliance
operator's aggregate view of a round: participants, submission sizes and matches by holder
count, never a token, a label or an identifier. It attaches itself to ``coordinator_group``.

Console text that comes from a database or a file (round names, member ids) goes through
``console_safe`` first, so it cannot move the cursor, rewrite earlier lines or carry rich markup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from alliance_psi._plural import plural
from alliance_psi.cli._options import DATABASE_URL, reported
from alliance_psi.cli.coordinator import coordinator_group
from alliance_psi.errors import ConfigurationError

if TYPE_CHECKING:
    from alliance_psi.crypto.threshold_keys import PublicEpoch
    from alliance_psi.reports import VerifiedReport

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
    """Leads by holder count in one line: ``1 lead held by 4 members; 3 leads, each held by 2
    members`` (or ``no leads``)."""
    return (
        "; ".join(
            f"1 lead held by {plural(holders, 'member')}"
            if count == 1
            else f"{count:,} leads, each held by {holders} members"
            for holders, count in counts.items()
        )
        or "no leads"
    )


@click.group("report")
def report_group() -> None:
    """Check investigator reports against the coordinator's signature."""


def _read(option: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{option} {path}: {exc.strerror}") from None


@report_group.command("verify")
@click.argument("report_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--ca",
    "ca_cert",
    type=_FILE,
    required=True,
    envvar="ALLIANCE_PSI_REPORT_CA",
    show_envvar=True,
    help="The alliance CA certificate (ca.pem): the member's signing certificate must chain to it.",
)
@click.option(
    "--coordinator-key",
    type=_FILE,
    required=True,
    envvar="ALLIANCE_PSI_REPORT_COORDINATOR_KEY",
    show_envvar=True,
    help="The coordinator's public signing key (signing.pub).",
)
@click.option(
    "--crl",
    type=_FILE,
    default=None,
    envvar="ALLIANCE_PSI_REPORT_CRL",
    show_envvar=True,
    help="The alliance CRL: a report signed with a revoked certificate fails.",
)
@click.option(
    "--online",
    is_flag=True,
    help="Also re-derive every lead's match token through the custodians (needs --config; costs quota).",
)
@click.option(
    "--config",
    "node_config",
    type=_FILE,
    default=None,
    help="With --online: a member node's node.toml (its cert, key and custodians are used).",
)
def verify_command(
    report_file: Path, ca_cert: Path, coordinator_key: Path, crl: Path | None, online: bool, node_config: Path | None
) -> None:
    """Check a JSON lead report: the member node's and the coordinator's signatures, and every lead."""
    from alliance_psi.reports import verify_report_json

    if node_config is not None and not online:
        raise click.UsageError("--config is only used with --online")
    if online and node_config is None:
        raise click.UsageError("--online needs --config: a member node's node.toml (certificate, key, custodians)")
    with reported():
        public_key = read_public_key(coordinator_key)
        ca_pem = _read("--ca", ca_cert)
        crl_pem = _read("--crl", crl) if crl is not None else None
        checked = verify_report_json(_read("report", report_file), public_key, ca_cert_pem=ca_pem, crl_pem=crl_pem)
        rederived = _rederive(checked, node_config, ca_cert) if node_config is not None else None
    omitted = f" ({checked.omitted} not listed)" if checked.omitted else ""
    valid = (
        f"valid: {plural(checked.leads, 'lead')} of {plural(checked.signed_matches, 'signed match', 'signed matches')}"
        f"{omitted} in round {checked.round_id} "
        f"({checked.round_name}) for member {checked.member_id}; {holders_text(checked.by_holder_count)}; "
        f"threshold {checked.threshold}, key epoch {checked.key_epoch}"
    )
    lines = [valid, *checked.coverage(rederived=rederived is not None)]
    if rederived is not None:
        lines.append(rederived)
    for line in lines:
        click.echo(console_safe(line))


def _rederive(checked: VerifiedReport, node_config: Path, ca_cert: Path) -> str:
    """Re-derive the report's tokens with the node of ``node_config``; the line saying so, and what it cost."""
    from alliance_psi.cli._options import PeerAddress, custodian_trust_warnings
    from alliance_psi.config import TlsConfig, read_node_file
    from alliance_psi.protocol.model import Role
    from alliance_psi.reports import ReportMismatch, check_rederived
    from alliance_psi.services.epoch_files import load_public_epoch
    from alliance_psi.services.pki import identity_from_pem
    from alliance_psi.services.rederive import rederive_tokens

    values = read_node_file(node_config)  # Relative paths in it are relative to its folder.
    listed = values.get("custodian")
    if not isinstance(listed, list) or not listed:
        raise ConfigurationError(
            f"{node_config}: 'custodian' must be a list of custodians, NAME@HOST:PORT[,ca=FILE] or tables"
        )
    try:
        custodians = [PeerAddress("custodian").convert(value, None, None) for value in listed]
    except click.BadParameter as exc:
        raise ConfigurationError(f"{node_config}: {exc.message}") from None
    for name in ("cert", "key"):
        if not isinstance(values.get(name), str):
            raise ConfigurationError(f"{node_config}: {name!r} must be the path of the node's TLS {name}")
    tls = TlsConfig(ca_cert=ca_cert, cert=Path(values["cert"]), key=Path(values["key"])).load()
    identity = identity_from_pem(tls.cert)
    if identity.role is not Role.MEMBER:
        raise ConfigurationError(
            f"--online needs a member certificate; {values['cert']} names {identity.role} {identity.name}"
        )
    unknown = [token.where for token in checked.tokens if token.type not in _types()]
    if unknown:
        raise ReportMismatch(f"{'; '.join(unknown)}: not an identifier type, so its token cannot be re-derived")
    identifiers = {(token.type, token.value) for token in checked.tokens}
    epoch_file, verify = values.get("epoch-file"), values.get("verify", "sample")
    if epoch_file is not None and not isinstance(epoch_file, str):
        raise ConfigurationError(f"{node_config}: 'epoch-file' must be the path of the public epoch file")
    public = load_public_epoch(Path(epoch_file)) if epoch_file is not None else None
    for warning in custodian_trust_warnings(custodians, public=public):
        click.echo(warning, err=True)
    derived = rederive_tokens(tls, custodians, checked.key_epoch, identifiers, public=public, verify=str(verify))
    check_rederived(checked, derived)
    return (
        f"online: every lead's identifier derives its match token in the signed result (re-derived through "
        f"{_through(len(custodians), public)} as member {identity.name}, using "
        f"{plural(len(identifiers), 'evaluation')} of its "
        "quota at each)"
    )


def _through(count: int, public: PublicEpoch | None) -> str:
    """The custodians a re-derivation went through: the chain, or a threshold of them."""
    if public is None:
        return plural(count, "custodian")
    return f"{public.threshold} at a time of {plural(count, 'custodian')}"


def _types() -> frozenset[str]:
    from alliance_psi.identifiers.types import IdentifierType

    return frozenset(kind.value for kind in IdentifierType)


def _aggregate(database: str, round_id: str) -> dict[str, Any]:
    from alliance_psi.storage import CoordinatorRepositories, make_engine

    engine = make_engine(database).execution_options(sqlite_begin="DEFERRED")
    try:
        with engine.connect() as conn:
            tx = CoordinatorRepositories(conn)
            round = tx.rounds.get_round(round_id)
            aggregate = tx.matching.aggregate(round_id)
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
                f"key epoch {view['key_epoch']}; {plural(view['committed_members'], 'member')} committed, "
                f"{plural(view['matches_at_threshold'], 'token')} held by at least {plural(view['threshold'], 'member')}"
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
@click.option("--database", type=DATABASE_URL, required=True, help="The coordinator's database URL.")
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
