"""``alliance-psi custodian``: hold one key share per epoch and evaluate members' blinded elements."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from alliance_psi._files import write_file_atomic
from alliance_psi.cli._enrolment import echo_enrolment, enrolment_group
from alliance_psi.cli._options import (
    DATABASE_URL,
    monitoring_config,
    monitoring_options,
    reported,
    server_limit_options,
    server_limits,
    tls_config,
    tls_options,
)
from alliance_psi.cli._outputs import check_outputs, out_options
from alliance_psi.cli.custodian_keygen import keygen, peer_group
from alliance_psi.config import CustodianConfig
from alliance_psi.defaults import QUOTA_PER_MEMBER
from alliance_psi.errors import ConfigurationError

if TYPE_CHECKING:
    from alliance_psi.cli._serving import Monitor
    from alliance_psi.crypto.key_shares import KeyShare
    from alliance_psi.crypto.threshold_keys import PublicEpoch, ThresholdShare

__all__ = ["custodian_group"]


@click.group("custodian")
def custodian_group() -> None:
    """Run a key custodian (holds one OPRF key share per epoch)."""


custodian_group.add_command(enrolment_group("member", server="custodian", role="member", with_quota=True))
custodian_group.add_command(peer_group)
custodian_group.add_command(keygen)


@custodian_group.command("init-share")
@click.option("--epoch", required=True, help="Key epoch name, e.g. 2026q4.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Key share file to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init_share(epoch: str, out: Path, force: bool) -> None:
    """Draw a fresh random key share for EPOCH and write it with mode 0600."""
    from alliance_psi.crypto.key_shares import KeyShare

    with reported():
        share = KeyShare.generate(epoch)
        if out.exists() and not force:
            raise ConfigurationError(f"{out} exists; pass --force to replace it (the old epoch's tokens die with it)")
        out.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(out, share.to_bytes())
    click.echo(f"wrote key share for epoch {epoch} to {out}")


# Printed by `custodian deal` before anything else, and by every custodian serving a dealt epoch.
DEALER_WARNING = (
    "DEALER MODE, for tests and demos only: this dealer drew epoch {epoch}'s whole key and could evaluate the "
    "PRF alone (test guesses of every identifier); an alliance generates its epochs with the custodians' "
    "distributed key generation"
)


def _server_name(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    from alliance_psi.protocol.model import Role
    from alliance_psi.services.pki import validate_server_name

    try:
        return tuple(validate_server_name(Role.CUSTODIAN, value) for value in values)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None


@custodian_group.command("deal")
@click.option("--epoch", required=True, help="Key epoch name, e.g. 2026q4.")
@click.option("--threshold", type=click.IntRange(min=1), required=True, help="Custodians needed to evaluate (τ).")
@click.option(
    "--custodian",
    "names",
    multiple=True,
    required=True,
    callback=_server_name,
    help="A custodian's certificate name; repeat in index order (the first is index 1).",
)
@out_options("NAME.share (one per custodian, 0600) and epoch.json (the public epoch file)")
def deal(epoch: str, threshold: int, names: tuple[str, ...], out: Path, force: bool) -> None:
    """DEALER MODE (tests and demos only): deal EPOCH's key as threshold shares, one per --custodian.

    Writes OUT/NAME.share for each custodian (its share k_i, mode 0600: hand each to its custodian
    only) and OUT/epoch.json, the public epoch file (K = k·G and each K_i = k_i·G) that every
    custodian serves with and every member loads. The dealer knew the whole key: an alliance
    generates its epochs with the distributed key generation instead.
    """
    from alliance_psi.crypto.threshold_keys import deal_epoch_for_testing

    click.echo(DEALER_WARNING.format(epoch=epoch), err=True)
    with reported():
        if len(set(names)) != len(names):
            raise ConfigurationError("each --custodian must be named once")
        if threshold > len(names):
            raise ConfigurationError(f"--threshold {threshold} is more than the {len(names)} custodians named")
        check_outputs(out, [out / f"{name}.share" for name in names] + [out / "epoch.json"], force=force)
        shares, public = deal_epoch_for_testing(epoch, names, threshold=threshold)
        out.mkdir(parents=True, exist_ok=True)
        for share, name in zip(shares, names, strict=True):
            write_file_atomic(out / f"{name}.share", share.to_bytes())
        write_file_atomic(out / "epoch.json", public.to_bytes(), private=False)
    click.echo(f"dealt epoch {epoch}: {threshold} of {len(names)} custodians")
    for share, name in zip(shares, names, strict=True):
        click.echo(f"  {name}: index {share.index}, share {out / f'{name}.share'}")
    click.echo(f"public epoch file {out / 'epoch.json'}, fingerprint {public.fingerprint()}")


@custodian_group.command("show-commitment")
@click.option("--key-share", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Key share file.")
@click.option(
    "--epoch-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The public epoch file: also check the share against it and print its fingerprint.",
)
@click.option("--name", default=None, help="This custodian's name, checked against the epoch file.")
def show_commitment(key_share: Path, epoch_file: Path | None, name: str | None) -> None:
    """Print a threshold share's public commitment K_i = k_i·G (never the share), to compare with the
    epoch file members load; with --epoch-file, check that they agree."""
    from alliance_psi.services.epoch_files import load_public_epoch, load_threshold_share

    with reported():
        share = load_threshold_share(key_share)
        click.echo(
            f"epoch {share.epoch} ({share.suite_id}), custodian index {share.index}, {share.threshold} of {share.n}"
        )
        click.echo(f"commitment K_{share.index} = {share.commitment().hex()}")
        if epoch_file is not None:
            public = load_public_epoch(epoch_file)
            holder = public.by_index(share.index).name
            public.check_share(share, name if name is not None else holder)
            click.echo(
                f"matches {epoch_file} (custodian {holder}; origin {public.origin}; fingerprint {public.fingerprint()})"
            )


def _load_share(config: CustodianConfig) -> tuple[KeyShare | ThresholdShare, PublicEpoch | None]:
    """The custodian's share and, for a threshold share, the public epoch file it was checked against.

    Raises:
        ConfigurationError: a file is unreadable or damaged; a threshold share without
            ``--epoch-file`` or one that is not this custodian's entry in it (``PublicEpoch.check_share``);
            a chain share with ``--epoch-file``.
    """
    from alliance_psi.crypto.key_shares import KeyShare
    from alliance_psi.services.epoch_files import load_key_share, load_public_epoch

    share = load_key_share(config.key_share)
    if isinstance(share, KeyShare):
        if config.epoch_file is not None:
            raise ConfigurationError(
                f"{config.key_share} is a chain key share (init-share); --epoch-file is for a threshold share"
            )
        return share, None
    if config.epoch_file is None:
        raise ConfigurationError(
            f"{config.key_share} is threshold share {share.index} of epoch {share.epoch!r}: give the public epoch "
            "file with --epoch-file, so that the share is checked against its commitment before serving"
        )
    public = load_public_epoch(config.epoch_file)
    try:
        public.check_share(share, config.name)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{config.key_share} against {config.epoch_file}: {exc}") from None
    return share, public


def _serve(config: CustodianConfig) -> None:
    from alliance_psi.cli._logging import configure_logging

    configure_logging(config.monitoring)  # First: before anything loads that may log.
    from alliance_psi.cli._serving import GRPC, monitored

    with monitored(config.monitoring, needs=("tls", "key share", "database", GRPC)) as monitor:
        _serve_monitored(config, monitor)


def _serve_monitored(config: CustodianConfig, monitor: Monitor) -> None:
    from alliance_psi.cli._logging import announce
    from alliance_psi.cli._serving import serve_until_stopped, server_tls
    from alliance_psi.crypto.selfcheck import run_selfcheck
    from alliance_psi.crypto.threshold_keys import ThresholdShare
    from alliance_psi.protocol.custodian import CustodianRole
    from alliance_psi.protocol.model import Role
    from alliance_psi.services.custodian import SqlQuotaLedger, custodian_registration
    from alliance_psi.services.enrolment import enrolment_gate
    from alliance_psi.services.state_metrics import CustodianStateCollector
    from alliance_psi.storage import create_schema, make_engine

    run_selfcheck()
    # TLS first: a wrong certificate is refused before any database is created.
    tls, revocations = server_tls(config.tls, role=Role.CUSTODIAN, name=config.name)
    monitor.tls_loaded(config.tls)
    share, public = _load_share(config)  # A threshold share is checked against its K_i first.
    monitor.readiness.met("key share")
    engine = make_engine(config.database)
    create_schema(engine)
    monitor.database_opened(engine)
    roster, check = enrolment_gate(
        engine, server="custodian", roles=frozenset({Role.MEMBER}), refresh=config.enrolment_refresh_seconds
    )
    monitor.metrics.add_collector(
        CustodianStateCollector(
            engine,
            key_epoch=share.epoch,
            members=lambda: roster.names(Role.MEMBER),
            quota_of=roster.quota_of,
            default_quota=config.quota_per_member,
        )
    )
    role = CustodianRole(
        config.name,
        share,
        quota_per_member=config.quota_per_member,
        ledger=SqlQuotaLedger(engine, config.name),
        quota_of=roster.quota_of,
        kept_answers_per_member=config.kept_answers_per_member,
        free_resent_per_member=config.free_resent_per_member,
    )

    def started(port: int) -> None:
        echo_enrolment(
            roster,
            "custodian",
            config.name,
            roles=("member",),
            needed="member",
            without="every call is refused",
            say=announce,
        )
        announce(_anchor_line(config, tls.own_ca))
        announce(f"custodian {config.name} serving key epoch {share.epoch} on port {port}")
        if public is None:
            announce(SHARE_HOLDER_NOTE.format(name=config.name, epoch=share.epoch))
            return
        announce(
            THRESHOLD_NOTE.format(
                name=config.name,
                epoch=public.epoch,
                index=share.index if isinstance(share, ThresholdShare) else 0,
                threshold=public.threshold,
                n=public.n,
                fingerprint=public.fingerprint(),
            )
        )
        announce(
            QUOTA_NOTE.format(
                quota=config.quota_per_member,
                threshold=public.threshold,
                n=public.n,
                bound=public.n * config.quota_per_member // public.threshold,
            )
        )
        if public.origin == "dealer":
            announce(DEALER_WARNING.format(epoch=public.epoch))

    serve_until_stopped(
        [custodian_registration(role)],
        listen=config.listen,
        tls=tls,
        revocations=revocations,
        checks=[check],
        limits=config.limits,
        engine=engine,
        started=started,
        monitor=monitor,
        name="custodian serve",
    )


# Said at every start: the custodian cannot count the alliance's custodians, but its operator must know
# what one share is worth (docs/design.md, "What each party learns", Collusion).
SHARE_HOLDER_NOTE = (
    "note: custodian {name} holds one key share of epoch {epoch}: this custodian and the coordinator together "
    "can test guesses of low-entropy identifiers unless the alliance runs at least one other custodian, run by "
    "another institution than the CA holder, whose share they do not hold (docs/design.md#what-each-party-learns)"
)


# Said at every start of a threshold custodian (docs/design.md, "Threshold custody").
THRESHOLD_NOTE = (
    "custodian {name} holds threshold share {index} of epoch {epoch} ({threshold} of {n}), checked against its "
    "commitment in the public epoch file (fingerprint {fingerprint}: members compare it with theirs); any "
    "{threshold} custodians together can test guesses, fewer cannot"
)

# What the quota bounds when each custodian keeps its own (docs/design.md, "Threshold custody").
QUOTA_NOTE = (
    "quota {quota:,} elements per member and epoch here; a member spreading its subsets over the {n} custodians "
    "of threshold {threshold} can have up to {bound:,} elements evaluated in all (n·quota/τ): set --quota to τ/n "
    "of the budget meant"
)


def _anchor_line(config: CustodianConfig, own_ca: bytes | None) -> str:
    """Which CA members must pin for this custodian, with its fingerprint to compare out of band."""
    from alliance_psi.services.anchors import fingerprint

    if own_ca is None:
        return (
            f"custodian {config.name}'s certificate is from the alliance CA: members cannot tell it from one the CA "
            "holder issues under the same name; a custodian run by another institution serves a certificate of its "
            "own CA (--own-ca), which members pin (docs/operations.md)"
        )
    return (
        f"custodian {config.name}'s certificate is from its own CA {config.tls.own_ca} (SHA-256 fingerprint "
        f"{fingerprint(own_ca)}): members pin that file for {config.name} (ca = ...), after comparing the fingerprint"
    )


@custodian_group.command("serve")
@click.option("--name", required=True, help="This custodian's name (as in its certificate).")
@click.option("--listen", default="127.0.0.1:7101", show_default=True, help="Address to listen on (port 0: any).")
@tls_options
@click.option(
    "--own-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The CA that issued --cert when it is this custodian's own (members pin it for this custodian; a "
    "custodian run by another institution than the operator has one). --ca still says which members' "
    "certificates it trusts. Default: --cert comes from the alliance CA.",
)
@click.option("--key-share", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Key share file.")
@click.option(
    "--epoch-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The public epoch file of a threshold share (custodian deal, or the key generation): the share is "
    "checked against this custodian's commitment in it before serving. Not for a chain share (init-share).",
)
@click.option("--database", type=DATABASE_URL, required=True, help="Quota database URL, e.g. sqlite:///custodian.db.")
@click.option(
    "--quota",
    type=click.IntRange(min=1),
    default=QUOTA_PER_MEMBER,
    show_default=True,
    help="Elements each member may have evaluated per key epoch (`member add --quota` overrides it per member).",
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
    own_ca: Path | None,
    key_share: Path,
    epoch_file: Path | None,
    database: str,
    quota: int,
    **options: Any,
) -> None:
    """Serve OPRF evaluations over mutual TLS until SIGTERM or Ctrl-C, to enrolled members only.

    Members' certificates are checked against --ca (the alliance CA) and the enrolment list; this
    custodian's own certificate comes from --own-ca if given (its institution's CA, which members
    pin so that the alliance CA holder cannot pose as this custodian), else from the alliance CA.
    SIGHUP reloads the CRL. Limits and their defaults: docs/operations.md, "Limits"; the metrics
    port and logging: docs/operations.md, "Monitor".
    """
    config = CustodianConfig(
        name=name,
        listen=listen,
        tls=tls_config(ca_cert, cert, key, crl, own_ca),
        key_share=key_share,
        epoch_file=epoch_file,
        database=database,
        quota_per_member=quota,
        limits=server_limits(**options),
        monitoring=monitoring_config(**options),
    )
    with reported():
        _serve(config)
