"""TLS failures name their cause and the fix (issue 10), instead of "unreachable after 4 attempts".

A party's own mistakes (a key that is not its certificate's, a certificate of another CA, expired
or not yet valid, another party's) are caught when it loads its files. What the server presents,
or says, is reported by the client over real mutual TLS on loopback: a certificate of another CA,
an expired one, our certificate revoked, nothing listening, nothing answering.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from alliance_psi.cli.main import main
from alliance_psi.config import TlsConfig
from alliance_psi.errors import CertificateRevoked, ConfigurationError, PeerUnavailable
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.cert_checks import load_tls
from alliance_psi.services.clients import CoordinatorClient, CustodianClient, RetryPolicy
from alliance_psi.services.server import run_server
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.impostors import (
    coordinator_service,
    custodian_service,
    impostor_server,
    material,
    refusal,
)

pytestmark = pytest.mark.timeout(120)
ONE_TRY = RetryPolicy(attempts=1, timeout=10)
LONG_AGO = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)


def shown(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def write(directory: Path, name: str, issued: pki_module.IssuedCertificate) -> TlsConfig:
    """Write ``issued`` as NAME.pem/NAME.key beside the alliance ca.pem; the TlsConfig of those files."""
    pki_module.write_issued(issued, directory, name)
    return TlsConfig(ca_cert=directory / "ca.pem", cert=directory / f"{name}.pem", key=directory / f"{name}.key")


def load_error(config: TlsConfig, *, role: Role | None = None, name: str | None = None) -> str:
    """The message of the ConfigurationError that loading ``config`` raises."""
    with pytest.raises(ConfigurationError) as refused:
        load_tls(config, role=role, name=name)
    return str(refused.value)


@pytest.fixture
def files(tmp_path: Path, pki: AlliancePki) -> Path:
    """A directory with the alliance's ca.pem, for a party's TLS files."""
    (tmp_path / "ca.pem").write_bytes(pki.ca.cert_pem)
    return tmp_path


# A party's own files, checked when loaded --------------------------------------------------------


def test_a_key_that_is_not_the_certificates_is_refused_at_load(files: Path, pki: AlliancePki) -> None:
    config = write(files, "bank-a", pki.issued["bank-a"])
    (files / "bank-a.key").write_bytes(pki.issued["bank-b"].key_pem)
    assert load_error(config) == (
        f"TLS option 'key': {files / 'bank-a.key'} is not the private key of {files / 'bank-a.pem'} (their "
        "public keys differ): give the .key file that alliance-psi pki issue wrote with that certificate"
    )


@pytest.mark.parametrize(
    ("spoiled", "message"),
    [
        ("ca.pem", "TLS option 'ca_cert': {path} is not a PEM X.509 certificate"),
        ("bank-a.pem", "TLS option 'cert': {path} is not a PEM X.509 certificate"),
        ("bank-a.key", "TLS option 'key': {path} is not an unencrypted PEM private key"),
    ],
)
def test_a_file_that_is_not_what_its_option_needs_is_named(
    files: Path, pki: AlliancePki, spoiled: str, message: str
) -> None:
    config = write(files, "bank-a", pki.issued["bank-a"])
    (files / spoiled).write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert load_error(config) == message.format(path=files / spoiled)


def test_a_certificate_of_another_ca_is_refused_at_load(files: Path) -> None:
    foreign = pki_module.issue(pki_module.init_ca("Other"), role=Role.MEMBER, name="bank-a")
    assert load_error(write(files, "bank-a", foreign)) == (
        f"TLS option 'cert': {files / 'bank-a.pem'} was not issued by the CA in {files / 'ca.pem'} (its issuer is "
        "'CN=Other alliance CA'): give the alliance's ca.pem, or a certificate its operator issued"
    )


def test_an_expired_certificate_is_refused_at_load(files: Path, pki: AlliancePki) -> None:
    expired = pki_module.issue(pki.ca, role=Role.MEMBER, name="bank-a", valid_days=1, not_before=LONG_AGO)
    assert load_error(write(files, "bank-a", expired)) == (
        f"TLS option 'cert': {files / 'bank-a.pem'} expired on {shown(LONG_AGO + dt.timedelta(days=1))}: "
        "ask the alliance operator for a new one (alliance-psi pki issue)"
    )


def test_a_certificate_not_yet_valid_is_refused_at_load(files: Path, pki: AlliancePki) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    early = pki_module.issue(pki.ca, role=Role.MEMBER, name="bank-a", not_before=later)
    assert load_error(write(files, "bank-a", early)) == (
        f"TLS option 'cert': {files / 'bank-a.pem'} is not valid before {shown(later)}: check this machine's clock"
    )


@pytest.mark.parametrize(
    ("holder", "role", "name", "needed"),
    [
        ("bank-a", Role.CUSTODIAN, "custodian-1", "the certificate of custodian custodian-1"),
        ("custodian-1", Role.CUSTODIAN, "custodian-2", "the certificate of custodian custodian-2"),
        ("custodian-1", Role.COORDINATOR, "coordinator", "the certificate of the coordinator"),
        ("bank-a", Role.ADMIN, None, "an admin certificate"),
    ],
)
def test_another_partys_certificate_is_refused_at_load(
    pki: AlliancePki, holder: str, role: Role, name: str | None, needed: str
) -> None:
    config = pki.tls_config(holder)
    holder_is = "member bank-a" if holder == "bank-a" else "custodian custodian-1"
    assert load_error(config, role=role, name=name) == (
        f"TLS option 'cert': {config.cert} is the certificate of {holder_is}; this command needs {needed}"
    )


def test_a_server_command_names_the_wrong_certificate_before_it_starts(tmp_path: Path, pki: AlliancePki) -> None:
    result = CliRunner().invoke(
        main,
        [
            "custodian",
            "serve",
            "--name",
            "custodian-1",
            *("--ca", str(pki.directory / "ca.pem")),
            *("--cert", str(pki.directory / "bank-a.pem"), "--key", str(pki.directory / "bank-a.key")),
            *("--key-share", str(tmp_path / "none.share"), "--database", f"sqlite:///{tmp_path / 'quota.db'}"),
        ],
    )
    assert result.exit_code == 1
    assert result.output == (
        f"Error: TLS option 'cert': {pki.directory / 'bank-a.pem'} is the certificate of member bank-a; "
        "this command needs the certificate of custodian custodian-1\n"
    )
    assert not (tmp_path / "quota.db").exists()


# What the server presents or says, reported by the client -------------------------------------------


def test_a_server_certificate_of_another_ca_is_named(tmp_path: Path, pki: AlliancePki) -> None:
    foreign = pki_module.issue(pki_module.init_ca("Other"), role=Role.CUSTODIAN, name="custodian-1")
    address, message = refusal(tmp_path, pki, foreign, serving=Role.CUSTODIAN)
    assert message == (
        f"cannot trust custodian custodian-1 at {address}: its certificate is not from the alliance CA in "
        "our ca.pem (its issuer is 'CN=Other alliance CA'): check the address, and that both sides use the "
        "alliance's ca.pem; if custodian custodian-1 serves a certificate of its own CA, pin that CA for it (ca=FILE)"
    )


def test_an_expired_server_certificate_is_named(tmp_path: Path, pki: AlliancePki) -> None:
    expired = pki_module.issue(pki.ca, role=Role.COORDINATOR, name="coordinator", valid_days=1, not_before=LONG_AGO)
    address, message = refusal(tmp_path, pki, expired, serving=Role.COORDINATOR)
    assert message == (
        f"cannot trust the coordinator at {address}: its certificate expired on "
        f"{shown(LONG_AGO + dt.timedelta(days=1))}: its operator must have it reissued"
    )


def test_a_server_that_refuses_our_certificate_is_told_from_a_bad_one(tmp_path: Path, pki: AlliancePki) -> None:
    # custodian-1's own certificate, but it trusts another CA, so it refuses every member of ours.
    other_ca = pki_module.init_ca("Other").cert_pem
    with impostor_server(custodian_service(tmp_path), pki.issued["custodian-1"], other_ca) as server:
        with CustodianClient(server.address, pki.material("bank-a"), ONE_TRY, name="custodian-1") as client:
            with pytest.raises(PeerUnavailable) as refused:
                client.epoch()
    assert type(refused.value) is PeerUnavailable
    said, _, grpc_said = str(refused.value).partition("; gRPC said: ")
    assert said == (
        f"custodian custodian-1 at {server.address} is unreachable after 1 attempt: its certificate checks out, "
        "yet the connection failed: it may refuse ours (it must trust the alliance's ca.pem) or be restarting"
    )
    assert grpc_said  # gRPC's own words follow, whatever this version of gRPC says.


def test_our_revoked_certificate_is_named_with_the_fix(tmp_path: Path, pki: AlliancePki) -> None:
    revoked = pki.issue(Role.MEMBER, "bank-revoked-client")
    crl = pki_module.revoke(pki.ca, [revoked.serial])
    server = material(pki.ca, pki.issued["coordinator"], crl=crl)
    with run_server([coordinator_service(tmp_path)], address="127.0.0.1:0", tls=server) as port:
        with CoordinatorClient(f"127.0.0.1:{port}", material(pki.ca, revoked), ONE_TRY) as client:
            with pytest.raises(CertificateRevoked) as refused:
                client.get_round("r-1")
    assert str(refused.value) == (
        f"the coordinator at 127.0.0.1:{port} refused our certificate: the alliance CA revoked it; "
        "ask the alliance operator for a new certificate (alliance-psi pki issue)"
    )


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_nothing_listening_is_named(pki: AlliancePki, free_port: int) -> None:
    retry = RetryPolicy(attempts=2, base=0.05, timeout=5)
    with CoordinatorClient(f"127.0.0.1:{free_port}", pki.material("bank-a"), retry) as client:
        with pytest.raises(PeerUnavailable) as refused:
            client.get_round("r-1")
    assert type(refused.value) is PeerUnavailable
    assert str(refused.value) == (
        f"the coordinator at 127.0.0.1:{free_port} is unreachable after 2 attempts: nothing accepts connections "
        "there (connection refused): check the address and that the coordinator is running"
    )


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """An address that accepts TCP connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_nothing_answering_is_named(pki: AlliancePki, silent_listener: str) -> None:
    retry = RetryPolicy(attempts=1, timeout=1)
    with CustodianClient(silent_listener, pki.material("bank-a"), retry, name="custodian-1") as client:
        with pytest.raises(PeerUnavailable) as refused:
            client.epoch()
    assert str(refused.value) == (
        f"custodian custodian-1 at {silent_listener} is unreachable after 1 attempt: no TLS answer within 1 s "
        "(timeout): check that the address is the custodian's port, and whether that server is overloaded"
    )
