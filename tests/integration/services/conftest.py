"""A throwaway alliance PKI for service tests: one CA and certificates for the usual parties.

Use the session-scoped ``pki`` fixture::

    def test_something(pki):
        server = pki.material("coordinator")           # TlsMaterial for a gRPC server or channel
        client = pki.material("bank-a")
        expired = pki.issue(Role.MEMBER, "bank-old", valid_days=1, not_before=long_ago)
        crl = pki.revoke("bank-old")                    # a CRL; nobody else's material changes
        config = pki.tls_config("bank-b")               # TlsConfig with paths on disk

Names issued by tests must be unique within the session (files are never overwritten).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from alliance_psi.config import TlsConfig, TlsMaterial
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.pki import CertificateAuthority, IssuedCertificate

STANDARD_PARTIES: tuple[tuple[Role, str], ...] = (
    (Role.COORDINATOR, "coordinator"),
    (Role.CUSTODIAN, "custodian-1"),
    (Role.CUSTODIAN, "custodian-2"),
    (Role.CUSTODIAN, "custodian-3"),
    (Role.MEMBER, "bank-a"),
    (Role.MEMBER, "bank-b"),
    (Role.MEMBER, "bank-c"),
    (Role.ADMIN, "admin"),
)


@dataclass
class AlliancePki:
    """A CA in ``directory`` plus the certificates issued so far, by name."""

    directory: Path
    ca: CertificateAuthority
    issued: dict[str, IssuedCertificate] = field(default_factory=dict)

    def issue(self, role: Role, name: str, **kwargs: Any) -> IssuedCertificate:
        """Issue a certificate (``pki.issue`` keywords pass through) and write NAME.pem/NAME.key."""
        if name in self.issued:
            raise ValueError(f"{name!r} was already issued in this test session; pick another name")
        cert = pki_module.issue(self.ca, role=role, name=name, **kwargs)
        pki_module.write_issued(cert, self.directory, name)
        self.issued[name] = cert
        return cert

    def material(self, name: str, *, crl: bytes | None = None) -> TlsMaterial:
        """The TLS material of party ``name`` (optionally with a CRL, for servers)."""
        cert = self.issued[name]
        return TlsMaterial(ca_cert=self.ca.cert_pem, cert=cert.cert_pem, key=cert.key_pem, crl=crl)

    def tls_config(self, name: str, *, crl: Path | None = None) -> TlsConfig:
        """A ``TlsConfig`` pointing at party ``name``'s files on disk."""
        return TlsConfig(
            ca_cert=self.directory / pki_module.CA_CERT_FILE,
            cert=self.directory / f"{name}.pem",
            key=self.directory / f"{name}.key",
            crl=crl,
        )

    def revoke(self, *names: str) -> bytes:
        """A CRL of this CA revoking the named parties' certificates."""
        return pki_module.revoke(self.ca, [self.issued[name].serial for name in names])


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> AlliancePki:
    """A CA with certificates for coordinator, custodian-1 to -3, bank-a/b/c (members) and admin."""
    directory = tmp_path_factory.mktemp("alliance-pki")
    ca = pki_module.init_ca("Test")
    pki_module.write_ca(ca, directory)
    alliance = AlliancePki(directory=directory, ca=ca)
    for role, name in STANDARD_PARTIES:
        alliance.issue(role, name)
    return alliance
