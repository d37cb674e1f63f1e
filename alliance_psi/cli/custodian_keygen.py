"""``alliance-psi custodian keygen`` and ``custodian peer``: the custodians' key ceremony.

Each custodian's operator enrols the other custodians' certificates (``peer add``, pinned by
key, as members are) and runs ``keygen`` at about the same time as the others; together they
generate a threshold key that nobody ever holds (docs/design.md, "Key generation"). Each writes
its own share (0600) and the public epoch file, identical at every custodian, in the formats of
``crypto.threshold_keys``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from alliance_psi import defaults
from alliance_psi.cli._enrolment import enrolment_group
from alliance_psi.cli._options import DATABASE_URL, PeerAddress, reported, tls_config, tls_options
from alliance_psi.cli._outputs import check_outputs, out_options
from alliance_psi.config import KeyCeremonyConfig, PeerEndpoint
from alliance_psi.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from alliance_psi.crypto.threshold_keys import PublicEpoch
    from alliance_psi.protocol.ceremony import CeremonyResult

__all__ = ["keygen", "peer_group"]

peer_group = enrolment_group("peer", server="custodian", role="custodian")


@click.command("keygen")
@click.option("--name", required=True, help="This custodian's name (as in its certificate).")
@click.option("--epoch", required=True, help="The key epoch to generate, e.g. 2027q1 (the same at every custodian).")
@click.option(
    "--attempt",
    type=click.IntRange(min=1, max=defaults.CEREMONY_MAX_ATTEMPT),
    default=1,
    show_default=True,
    help="Which run of this ceremony, the same at every custodian: after a run that failed, run every "
    "custodian again with the next number (a custodian never deals twice in one attempt).",
)
@click.option(
    "--threshold",
    type=click.IntRange(min=1),
    required=True,
    help="τ: how many custodians must take part in each evaluation (the same at every custodian).",
)
@click.option(
    "--peer",
    "peers",
    type=PeerAddress("custodian"),
    multiple=True,
    required=True,
    help="Every other custodian's ceremony address, NAME@HOST:PORT[,ca=FILE] (its own CA, if it has one); repeat.",
)
@click.option("--listen", required=True, help="Address this custodian's ceremony server listens on, HOST:PORT.")
@tls_options
@click.option(
    "--own-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The CA that issued --cert, when it is this custodian's own (as for serve).",
)
@click.option(
    "--database",
    type=DATABASE_URL,
    required=True,
    help="This custodian's database (as for serve), where `custodian peer add` enrolled the other custodians.",
)
@out_options("NAME.share (this custodian's share, 0600) and epoch.json (the public epoch file)")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=defaults.CEREMONY_SECONDS,
    show_default=True,
    help="Seconds the whole ceremony may take (every custodian must start within it).",
)
@click.option(
    "--round-timeout",
    type=click.FloatRange(min=1),
    default=defaults.CEREMONY_ROUND_SECONDS,
    show_default=True,
    help="Seconds each round after the first may take.",
)
def keygen(
    name: str,
    epoch: str,
    attempt: int,
    threshold: int,
    peers: tuple[PeerEndpoint, ...],
    listen: str,
    ca_cert: Path,
    cert: Path,
    key: Path,
    crl: Path | None,
    own_ca: Path | None,
    database: str,
    out: Path,
    timeout: float,
    round_timeout: float,
    force: bool,
) -> None:
    """Generate key epoch EPOCH with the other custodians, without a dealer (Pedersen VSS, GJKR DKG).

    Every custodian's operator runs this command, with the same --epoch, --threshold and set of
    custodians, within --timeout of each other. A custodian whose shares fail its commitments, or
    that sends different commitments to different custodians, is named and excluded as a dealer;
    a custodian missing, or custodians that saw different messages, stop the ceremony and a
    custodian that fails writes no share (one that finished may have: compare the epoch file
    fingerprints with every custodian, and run the ceremony again unless all finished). On success this writes OUT/NAME.share (0600: hand it to no one) and OUT/epoch.json,
    the public epoch file members load; compare its fingerprint with the other custodians'.
    """
    config = KeyCeremonyConfig(
        name=name,
        epoch=epoch,
        attempt=attempt,
        threshold=threshold,
        listen=listen,
        tls=tls_config(ca_cert, cert, key, crl, own_ca),
        peers=peers,
        database=database,
        out=out,
        total_seconds=timeout,
        round_seconds=round_timeout,
        force=force,
    )
    with reported():
        result, public = _run(config)
    _report(config, result, public)


def _targets(config: KeyCeremonyConfig) -> tuple[Path, Path]:
    return config.out / f"{config.name}.share", config.out / "epoch.json"


def _run(config: KeyCeremonyConfig) -> tuple[CeremonyResult, PublicEpoch]:
    from alliance_psi.cli._serving import server_tls
    from alliance_psi.crypto.selfcheck import run_selfcheck
    from alliance_psi.protocol.ceremony import CeremonyPlan, KeyCeremony
    from alliance_psi.protocol.messages import CeremonyCodec
    from alliance_psi.protocol.model import Role
    from alliance_psi.services.enrolment import enrolment_gate
    from alliance_psi.services.key_ceremony import CeremonyTimes, CertificateCredentials, claim_run, run_ceremony
    from alliance_psi.services.refusals import sql_audit_writer
    from alliance_psi.storage import create_schema, make_engine

    run_selfcheck()
    names = [p.name for p in config.peers]
    if config.name in names or len(set(names)) != len(names):
        raise ConfigurationError("each --peer must name another custodian, once (not this custodian)")
    try:
        plan = CeremonyPlan.create(config.epoch, config.threshold, [config.name, *names], attempt=config.attempt)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    check_outputs(config.out, _targets(config), force=config.force)
    tls, _ = server_tls(config.tls, role=Role.CUSTODIAN, name=config.name)
    engine = make_engine(config.database)
    create_schema(engine)
    roster, check = enrolment_gate(engine, server="custodian", roles=frozenset({Role.CUSTODIAN}))
    enrolled = {p: roster.find(Role.CUSTODIAN, p) for p in names}
    missing = [p for p, entry in enrolled.items() if entry is None]
    if missing:
        raise ConfigurationError(
            f"{', '.join(missing)} not enrolled here: enrol each with `alliance-psi custodian peer add --cert "
            f"CUSTODIAN.pem --database {config.database}` (its certificate, from its operator) first"
        )
    # Shares are sealed to the enrolled public key, which enrolments before it was kept lack.
    pinned_only = [p for p, entry in enrolled.items() if entry is not None and entry.public_key is None]
    if pinned_only:
        raise ConfigurationError(
            f"{', '.join(pinned_only)} enrolled here by key pin only (before shares were sealed to the enrolled "
            f"key): enrol the same certificate again with `alliance-psi custodian peer add --cert CUSTODIAN.pem "
            f"--database {config.database}`"
        )
    ceremony = KeyCeremony(plan, config.name, CertificateCredentials(tls, roster), CeremonyCodec())
    claim_run(engine, plan, config.name)  # Before it deals: never twice in one attempt.
    click.echo(f"key ceremony: {plan.describe()}; this custodian is index {ceremony.index}", err=True)
    result = run_ceremony(
        ceremony,
        listen=config.listen,
        tls=tls,
        peers=config.peers,
        checks=[check],
        times=CeremonyTimes(total_seconds=config.total_seconds, round_seconds=config.round_seconds),
        started=lambda port: click.echo(f"ceremony server of {config.name} listening on port {port}", err=True),
        progress=lambda text: click.echo(text, err=True),
        audit=sql_audit_writer(engine),
    )
    public = _write(config, result)
    _audit(engine, result, public)
    return result, public


def _audit(engine: Engine, result: CeremonyResult, public: PublicEpoch) -> None:
    """The ceremony's outcome in this custodian's audit log: public values and names only."""
    from datetime import UTC, datetime

    from alliance_psi.storage import AuditLog

    with engine.begin() as conn:
        AuditLog(conn).append(
            actor="operator",
            action="key-ceremony.completed",
            at=datetime.now(UTC),
            detail={
                "key_epoch": public.epoch,
                "threshold": public.threshold,
                "custodians": list(result.plan.custodians),
                "index": result.index,
                "public_key": public.key.hex(),
                "epoch_file_fingerprint": public.fingerprint(),
                "disqualified": result.disqualified(),
            },
        )


def _write(config: KeyCeremonyConfig, result: CeremonyResult) -> PublicEpoch:
    """The share (0600) and the public epoch file, in ``crypto.threshold_keys``' formats."""
    from alliance_psi._files import write_file_atomic
    from alliance_psi.crypto.threshold_keys import CustodianCommitment, PublicEpoch, ThresholdShare

    plan = result.plan
    share = ThresholdShare(plan.epoch, plan.suite_id, result.index, plan.threshold, len(plan.custodians), result.share)
    public = PublicEpoch.create(
        epoch=plan.epoch,
        threshold=plan.threshold,
        origin="dkg",
        key=result.public_key,
        custodians=[
            CustodianCommitment(i, plan.name_of(i), result.outcome.verification_keys[i])
            for i in range(1, len(plan.custodians) + 1)
        ],
    )
    share_path, epoch_path = _targets(config)
    try:
        config.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"--out {config.out}: {exc.strerror}") from None
    # Without --force nothing is replaced, not even a file that appeared during the ceremony.
    write_file_atomic(epoch_path, public.to_bytes(), private=False, replace=config.force)
    try:
        write_file_atomic(share_path, share.to_bytes(), replace=config.force)
    except ConfigurationError:
        epoch_path.unlink(missing_ok=True)  # No public file without its share beside it.
        raise
    return public


def _report(config: KeyCeremonyConfig, result: CeremonyResult, public: PublicEpoch) -> None:
    share_path, epoch_path = _targets(config)
    for name, why in result.disqualified().items():
        click.echo(f"disqualified {name}: {why}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    plan = result.plan
    click.echo(f"generated key epoch {plan.epoch}: {plan.threshold} of {len(plan.custodians)} custodians")
    click.echo(f"  this custodian: {config.name}, index {result.index}, share {share_path} (0600; hand it to no one)")
    click.echo(f"  commitment K_{result.index} = {public.by_index(result.index).commitment.hex()}")
    click.echo(f"  public key K = {public.key.hex()}")
    click.echo(f"public epoch file {epoch_path}, fingerprint {public.fingerprint()}")
    click.echo("compare the fingerprint with every other custodian's operator before members load the file")
