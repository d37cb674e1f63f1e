"""``alliance-psi pki``: run the alliance CA (create it, issue certificates, revoke them).

The CA directory holds ``ca.pem``, ``ca.key`` (mode 0600) and ``crl.pem``. Keep it offline:
whoever holds ``ca.key`` can mint any identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from alliance_psi.errors import ConfigurationError
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki

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


def _valid_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
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
    """Create a new alliance CA in OUT."""
    with _reported():
        ca = pki.init_ca(name, valid_days=days)
        cert_path, key_path = pki.write_ca(ca, out, force=force)
        # An empty CRL from the start, so servers can always be given --crl.
        crl_path = pki.write_crl(pki.revoke(ca, []), out / pki.CRL_FILE)
    click.echo(f"wrote {cert_path}, {key_path} and {crl_path}")


@pki_group.command("issue")
@click.option("--ca-dir", type=_DIRECTORY, required=True, help="Directory with ca.pem and ca.key.")
@click.option("--role", type=click.Choice([role.value for role in Role]), required=True, help="The holder's role.")
@click.option("--name", "name", required=True, callback=_valid_name, help="Member or party id (also the file name).")
@click.option("--out", "out", type=_DIRECTORY, required=True, help="Directory for NAME.pem and NAME.key.")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Coordinator or custodian only: a DNS name or IP it serves at, for tools other than alliance-psi "
    "(repeatable). alliance-psi clients check the identity name instead, whatever address they dial.",
)
@click.option("--days", type=_DAYS, default=365, show_default=True, help="Validity in days.")
@click.option("--force", is_flag=True, help="Overwrite existing NAME.pem/NAME.key.")
def issue(ca_dir: Path, role: str, name: str, out: Path, hosts: tuple[str, ...], days: int, force: bool) -> None:
    """Issue a certificate for NAME with ROLE, signed by the CA in CA_DIR.

    Coordinator and custodian certificates serve (and are clients too); clients accept them only
    as the party they name, by the identity name NAME.ROLE.alliance-psi.internal. Member and admin
    certificates are for clients only. A server's NAME is one lowercase DNS label.
    """
    with _reported():
        ca = pki.load_ca(ca_dir)
        issued = pki.issue(ca, role=Role(role), name=name, hosts=hosts, valid_days=days)
        cert_path, key_path = pki.write_issued(issued, out, name, force=force)
    click.echo(f"issued {role} {name} (serial {issued.serial:#x}): {cert_path} and {key_path}")
    if Role(role) in pki.SERVER_ROLES:
        click.echo(f"clients verify it as {pki.identity_dns_name(Role(role), name)}, whatever address they dial")
    else:
        click.echo("for clients only: it cannot serve")


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
    click.echo(f"revoked {len(serials)} certificate(s); {crl_path} lists {listed}")
