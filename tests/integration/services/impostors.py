"""Servers that are not who a client expects, for the tests of what clients accept.

``impostor_server`` serves the real coordinator or custodian service over TLS with any certificate
and key, without ``run_server``'s own checks (an impostor does not run them), and counts the calls
that reach it. ``refusal`` has bank-a's client call one and returns why it refused.
``forge_certificate`` signs what an old, buggy or hostile issuer could sign.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from alliance_psi.config import TlsMaterial
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.errors import HandshakeFailed
from alliance_psi.identifiers import IdentifierType
from alliance_psi.protocol.coordinator import CoordinatorRole
from alliance_psi.protocol.custodian import CustodianRole
from alliance_psi.protocol.model import Role
from alliance_psi.services.clients import CoordinatorClient, CustodianClient, RetryPolicy
from alliance_psi.services.coordinator import coordinator_registration, sql_unit_of_work
from alliance_psi.services.custodian import SqlQuotaLedger, custodian_registration
from alliance_psi.services.pki import CertificateAuthority, IssuedCertificate
from alliance_psi.services.server import Registration
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import EPOCH, sqlite_engine

SERVER_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


@dataclass
class Impostor:
    address: str
    calls: int = 0


class _Counting(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, impostor: Impostor) -> None:
        self.impostor = impostor

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        self.impostor.calls += 1
        return continuation(details)


def custodian_service(tmp: Path, name: str = "custodian-1") -> Registration:
    """The real custodian service, as custodian ``name``, with a fresh key share and quota database."""
    ledger = SqlQuotaLedger(sqlite_engine(tmp / "impostor-quota.db"), name)
    role = CustodianRole(name, KeyShare.generate(EPOCH), quota_per_member=1000, ledger=ledger)
    return custodian_registration(role)


def coordinator_service(tmp: Path) -> Registration:
    """The real coordinator service over a fresh database."""
    engine = sqlite_engine(tmp / "impostor-coordinator.db")
    role = CoordinatorRole(
        sql_unit_of_work(engine), SigningKey.generate(), known_types=[t.value for t in IdentifierType]
    )
    return coordinator_registration(role)


def material(ca: CertificateAuthority, cert: IssuedCertificate, crl: bytes | None = None) -> TlsMaterial:
    """The TLS material of a holder of ``cert`` who trusts ``ca``."""
    return TlsMaterial(ca_cert=ca.cert_pem, cert=cert.cert_pem, key=cert.key_pem, crl=crl)


@contextlib.contextmanager
def impostor_server(service: Registration, cert: IssuedCertificate, ca_cert: bytes) -> Iterator[Impostor]:
    """Serve ``service`` on 127.0.0.1:0 with ``cert``, requiring client certificates of ``ca_cert``."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[_Counting(impostor := Impostor(""))])
    service.add(service.servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(cert.key_pem, cert.cert_pem)], root_certificates=ca_cert, require_client_auth=True
    )
    impostor.address = f"127.0.0.1:{server.add_secure_port('127.0.0.1:0', credentials)}"
    server.start()
    try:
        yield impostor
    finally:
        server.stop(0)


def refusal(tmp: Path, pki: AlliancePki, cert: IssuedCertificate, *, serving: Role) -> tuple[str, str]:
    """bank-a's client of custodian-1 (or of the coordinator) calls an impostor serving with ``cert``.

    Returns the impostor's address and the message of the ``HandshakeFailed`` the client raised;
    fails the test if the call got through or any call reached the impostor.
    """
    custodian = serving is Role.CUSTODIAN
    service = custodian_service(tmp) if custodian else coordinator_service(tmp)
    retry = RetryPolicy(attempts=1, timeout=10)
    with impostor_server(service, cert, pki.ca.cert_pem) as impostor:
        if custodian:
            with CustodianClient(impostor.address, pki.material("bank-a"), retry, name="custodian-1") as client:
                with pytest.raises(HandshakeFailed) as refused:
                    client.epoch()
        else:
            with CoordinatorClient(impostor.address, pki.material("bank-a"), retry) as coordinator:
                with pytest.raises(HandshakeFailed) as refused:
                    coordinator.get_round("r-1")
    assert impostor.calls == 0
    return impostor.address, str(refused.value)


def forge_certificate(
    ca: CertificateAuthority,
    *,
    uri: str,
    dns_names: Sequence[str] = (),
    usages: Sequence[x509.ObjectIdentifier] = SERVER_USAGES,
    ips: Sequence[str] = (),
) -> IssuedCertificate:
    """A certificate of ``ca`` with exactly these SANs and usages, as ``pki.issue`` would never make."""
    import ipaddress

    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    names += [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    serial = x509.random_serial_number()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return IssuedCertificate(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=key_pem, serial=serial)
