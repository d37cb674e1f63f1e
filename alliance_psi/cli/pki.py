"""``alliance-psi pki``: run the alliance CA (create it, issue certificates, revoke them).

The CA directory holds ``ca.pem``, ``ca.key`` (mode 0600) and ``crl.pem``. Keep it offline:
whoever holds ``ca.key`` can mint any identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from alliance_psi._plural import plural
from alliance_psi.errors import ConfigurationError
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services import pki
from alliance_psi.services.anchors import fingerprint

__all__ = ["pki_group"]

_DIRECTORY = click.Path(file_okay=False, path_type=Path)
_DAYS = click.IntRange(min=1)


@contextmanager
def _reported() -> Iterator[None]:
    """Turn a ConfigurationError into a one-line CLI error (exit code 1) with its exact reason."""
    try:
        yield
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Prefix the file a ConfigurationError is about, so the message says which input is bad."""
    try:
        yield
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None


def _valid_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return pki.validate_name(value)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.group("pki")
def pki_group() -> None:
    """Run the alliance CA: create it, issue certificates, revoke them."""


@pki_group.command("init-ca")
@click.option("--out", "out", type=_DIRECTORY, required=True, help="Directory for ca.pem and ca.key.")
@click.option("--name", "name", required=True, help="Alliance name (the CA is 'NAME alliance CA').")
@click.option("--days", type=_DAYS, default=3650, show_default=True, help="Validity in days.")
@click.option("--force", is_flag=True, help="Overwrite an existing CA (every issued certificate becomes useless).")
def init_ca(out: Path, name: str, days: int, force: bool) -> None:
    """Create a new CA in OUT: the alliance's, or an independent custodian's own (members pin it for that custodian)."""
    with _reported():
        ca = pki.init_ca(name, valid_days=days)
        cert_path, key_path = pki.write_ca(ca, out, force=force)
        # An empty CRL from the start, so servers can always be given --crl.
        crl_path = pki.write_crl(pki.revoke(ca, []), out / pki.CRL_FILE)
    click.echo(f"wrote {cert_path}, {key_path} and {crl_path}")
    click.echo(
        f"SHA-256 fingerprint of {cert_path.name}: {fingerprint(ca.cert_pem)} (whoever is handed {cert_path.name} "
        "compares it with this, read out over another channel)"
    )


@pki_group.command("issue")
@click.option("--ca-dir", type=_DIRECTORY, required=True, help="Directory with ca.pem and ca.key.")
@click.option("--role", type=click.Choice([role.value for role in Role]), required=True, help="The holder's role.")
@click.option("--name", "name", required=True, callback=_valid_name, help="Member or party id (also the file name).")
@click.option(
    "--csr",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A request from `pki request`: certify its key (no key written), if it names exactly --role and --name.",
)
@click.option(
    "--allow-server",
    is_flag=True,
    help="With --csr: certify a coordinator or custodian request (a server certificate; only for that "
    "party's own request).",
)
@click.option("--out", "out", type=_DIRECTORY, required=True, help="Directory for NAME.pem (and NAME.key).")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Coordinator or custodian only: a DNS name or IP it serves at, for tools other than alliance-psi "
    "(repeatable). alliance-psi clients check the identity name instead, whatever address they dial.",
)
@click.option("--days", type=_DAYS, default=365, show_default=True, help="Validity in days.")
@click.option("--force", is_flag=True, help="Overwrite existing NAME.pem/NAME.key.")
def issue(
    ca_dir: Path,
    role: str,
    name: str,
    csr: Path | None,
    allow_server: bool,
    out: Path,
    hosts: tuple[str, ...],
    days: int,
    force: bool,
) -> None:
    """Issue a certificate for NAME with ROLE, signed by the CA in CA_DIR (for a request: --csr).

    Coordinator and custodian certificates serve (and are clients too); clients accept them only
    as the party they name, by the identity name NAME.ROLE.alliance-psi.internal. Member and admin
    certificates are for clients only. A server's NAME is one lowercase DNS label. Without --csr
    the key is made here, so the CA holder holds it too: members should send a request instead.

    The applicant writes its request, so the role and name are yours to give: a request naming
    another identity is refused, and so is a coordinator or custodian request without
    --allow-server (its holder could serve as that party to every member).
    """
    if allow_server and csr is None:
        raise click.UsageError("--allow-server is for --csr requests only")
    identity = Identity(name=name, role=Role(role))
    with _reported():
        ca = pki.load_ca(ca_dir)
        if csr is not None:
            _issue_for_request(ca, csr, identity, allow_server, out, hosts, days, force)
            return
        issued = pki.issue(ca, role=identity.role, name=name, hosts=hosts, valid_days=days)
        cert_path, key_path = pki.write_issued(issued, out, name, force=force)
    click.echo(f"issued {role} {name} (serial {issued.serial:#x}): {cert_path} and {key_path}")
    _say_usage(identity.role, name)
    if identity.role is Role.MEMBER:
        click.echo(
            f"warning: {name}'s private key was made here, so whoever holds this CA knows it too; fine for a "
            f"demo or a test, but a real member makes its own key (`alliance-psi pki request --role member --name "
            f"{name} --out DIR`) and sends its request, which you certify with --csr",
            err=True,
        )


def _issue_for_request(
    ca: pki.CertificateAuthority,
    csr: Path,
    identity: Identity,
    allow_server: bool,
    out: Path,
    hosts: tuple[str, ...],
    days: int,
    force: bool,
) -> None:
    from alliance_psi._files import write_file_atomic
    from alliance_psi.services.pki_requests import check_request, key_pin

    with _naming(csr):
        try:
            request = csr.read_bytes()
        except OSError as exc:
            raise ConfigurationError(exc.strerror or "cannot read") from None
        # What is about to be certified, before it is: the operator sees the key it vouches for.
        public_key = check_request(request, identity, allow_server=allow_server)
        click.echo(
            f"certifying {identity.role.value} {identity.name} for the key of {csr} (key pin {key_pin(public_key).hex()})"
        )
        cert_pem, serial = pki.issue_for_key(
            ca, public_key, role=identity.role, name=identity.name, hosts=hosts, valid_days=days
        )
    out.mkdir(parents=True, exist_ok=True)
    cert_path = write_file_atomic(out / f"{identity.name}.pem", cert_pem, private=False, replace=force)
    click.echo(
        f"issued {identity.role.value} {identity.name} (serial {serial:#x}) for its own key: {cert_path} "
        f"(key pin {pki.spki_sha256(cert_pem).hex()})"
    )
    _say_usage(identity.role, identity.name)


def _say_usage(role: Role, name: str) -> None:
    if role in pki.SERVER_ROLES:
        click.echo(f"clients verify it as {pki.identity_dns_name(role, name)}, whatever address they dial")
    else:
        click.echo("for clients only: it cannot serve")


@pki_group.command("request")
@click.option("--role", type=click.Choice([role.value for role in Role]), required=True, help="Your role.")
@click.option("--name", "name", required=True, callback=_valid_name, help="Your member or party id.")
@click.option("--out", "out", type=_DIRECTORY, required=True, help="Directory for NAME.key (0600) and NAME.csr.")
@click.option("--force", is_flag=True, help="Overwrite existing NAME.key/NAME.csr.")
def request(role: str, name: str, out: Path, force: bool) -> None:
    """Make your own key and a certificate request for the CA: the key never leaves this machine.

    Send NAME.csr to the alliance operator (`pki issue --csr NAME.csr --role ROLE --name NAME`),
    and the printed key pin to each server's operator, who enrols you by it.
    """
    from alliance_psi._files import write_file_atomic
    from alliance_psi.services.pki_requests import make_request

    with _reported():
        made = make_request(Role(role), name)
        out.mkdir(parents=True, exist_ok=True)
        csr_path = out / f"{name}.csr"
        if csr_path.exists() and not force:
            raise ConfigurationError(f"{csr_path} exists; pass --force to replace it")
        key_path = write_file_atomic(out / f"{name}.key", made.key_pem, private=True, replace=force)
        write_file_atomic(csr_path, made.csr_pem, private=False, replace=True)
    click.echo(f"wrote {key_path} (keep it here) and {csr_path} (send it to the alliance operator)")
    click.echo(f"key pin (SHA-256 of your public key): {made.key_pin.hex()}")


@pki_group.command("revoke")
@click.option("--ca-dir", type=_DIRECTORY, required=True, help="Directory with ca.pem and ca.key.")
@click.option(
    "--crl",
    "crl_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CRL to update and write. [default: CA_DIR/crl.pem]",
)
@click.argument(
    "cert_pems",
    metavar="CERT_PEM...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
def revoke(ca_dir: Path, crl_path: Path | None, cert_pems: tuple[Path, ...]) -> None:
    """Revoke the certificates in CERT_PEM files; servers refuse them once they load the new CRL."""
    crl_path = crl_path if crl_path is not None else ca_dir / pki.CRL_FILE
    with _reported():
        ca = pki.load_ca(ca_dir)
        serials = []
        for cert_path in cert_pems:
            with _naming(cert_path):
                serials.append(pki.serial_issued_by(cert_path.read_bytes(), ca.cert_pem))
        with _naming(crl_path):
            existing = crl_path.read_bytes() if crl_path.exists() else None
            crl_pem = pki.revoke(ca, serials, existing_crl_pem=existing)
        pki.write_crl(crl_pem, crl_path)
        listed = len(pki.load_crl_serials(crl_pem, ca.cert_pem))
    click.echo(f"revoked {plural(len(serials), 'certificate')}; {crl_path} lists {listed}")
