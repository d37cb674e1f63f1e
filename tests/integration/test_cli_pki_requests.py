"""``pki request`` and ``pki issue --csr``: a member's key never passes through the CA holder.

Every server pins a member by its key (docs/design.md, Enrolment); a key the CA holder made and
kept would let it act as the member wherever the member is enrolled.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from alliance_psi.cli.main import main
from alliance_psi.config import TlsMaterial
from alliance_psi.crypto.oprf import blind
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.clients import CustodianClient
from alliance_psi.services.enrolment import enrol
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import ENROLMENT_REFRESH, EPOCH, custodian_name, running_alliance


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args))


def test_a_member_requests_and_the_ca_certifies_its_key_only(tmp_path: Path, pki: AlliancePki) -> None:
    node, issued = tmp_path / "node", tmp_path / "issued"
    requested = run("pki", "request", "--role", "member", "--name", "bank-q", "--out", str(node))
    assert requested.exit_code == 0, requested.output
    key_path, csr_path = node / "bank-q.key", node / "bank-q.csr"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert requested.output.startswith(f"wrote {key_path} (keep it here) and {csr_path} (send it to the alliance")
    pin = requested.output.splitlines()[-1].removeprefix("key pin (SHA-256 of your public key): ")

    certified = run(
        "pki", "issue", "--ca-dir", str(pki.directory), "--csr", str(csr_path),
        "--role", "member", "--name", "bank-q", "--out", str(issued),
    )  # fmt: skip
    assert certified.exit_code == 0, certified.output
    # What is about to be certified is said before it is.
    assert certified.output.startswith(f"certifying member bank-q for the key of {csr_path} (key pin {pin})\n")
    cert_pem = (issued / "bank-q.pem").read_bytes()
    assert list(issued.iterdir()) == [issued / "bank-q.pem"]  # No key at the CA.
    assert f"(key pin {pin})" in certified.output and "for clients only" in certified.output
    assert pki_module.identity_from_pem(cert_pem) == Identity(name="bank-q", role=Role.MEMBER)
    assert pki_module.spki_sha256(cert_pem).hex() == pin
    assert pki_module.serial_issued_by(cert_pem, pki.ca.cert_pem) > 0

    # The member, with its own key and the certificate, is served where it is enrolled.
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        enrol(alliance.custodian_engines[0], cert_pem, role=Role.MEMBER)
        time.sleep(ENROLMENT_REFRESH * 1.5)  # The server re-reads its list on the first call after this.
        tls = TlsMaterial(ca_cert=pki.ca.cert_pem, cert=cert_pem, key=key_path.read_bytes())
        with CustodianClient(alliance.custodian_addresses[0], tls, name=custodian_name(0)) as client:
            assert len(client.evaluate(EPOCH, [blind(b"x").blinded_element])) == 1


def test_bad_requests_and_usage_are_refused(tmp_path: Path, pki: AlliancePki) -> None:
    ca = ["pki", "issue", "--ca-dir", str(pki.directory), "--out", str(tmp_path / "out")]
    assert run("pki", "request", "--role", "member", "--name", "bank-r", "--out", str(tmp_path)).exit_code == 0
    csr = str(tmp_path / "bank-r.csr")
    # The role and name are the operator's to give, with a request as without one.
    for missing, given in (("--role", ("--name", "bank-r")), ("--name", ("--role", "member"))):
        result = run(*ca, "--csr", csr, *given)
        assert result.exit_code == 2 and f"Missing option '{missing}'" in result.output, result.output
    stray = run(*ca, "--role", "member", "--name", "bank-r", "--allow-server")
    assert stray.exit_code == 2 and "--allow-server is for --csr requests only" in stray.output
    again = run("pki", "request", "--role", "member", "--name", "bank-r", "--out", str(tmp_path))
    assert again.exit_code == 1 and "exists; pass --force" in again.output

    (tmp_path / "junk.csr").write_text("junk")
    key = ec.generate_private_key(ec.SECP256R1())
    no_identity = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bank-s")]))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "none.csr").write_bytes(no_identity.public_bytes(serialization.Encoding.PEM))
    # A request whose signature does not match its key: another key's signature over the same content.
    good = x509.load_pem_x509_csr((tmp_path / "bank-r.csr").read_bytes())
    tampered = bytearray(good.public_bytes(serialization.Encoding.DER))
    tampered[-5] ^= 0x01
    forged = x509.load_der_x509_csr(bytes(tampered)).public_bytes(serialization.Encoding.PEM)
    (tmp_path / "forged.csr").write_bytes(forged)
    for name, message in (
        ("junk.csr", "not a PEM certificate request"),
        ("none.csr", "the request must carry exactly one urn:alliance-psi: identity, found 0"),
        ("forged.csr", "the request's signature does not verify"),
        ("missing.csr", "No such file or directory"),
    ):
        result = run(*ca, "--csr", str(tmp_path / name), "--role", "member", "--name", "bank-s")
        assert result.exit_code == 1 and f"{tmp_path / name}: {message}" in result.output, result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_request_is_certified_only_as_the_identity_the_operator_names(tmp_path: Path, pki: AlliancePki) -> None:
    """An applicant's request names whom it likes; the CA issues only the role and name its operator gives.

    The attack (adversary b7): applicant bank-c makes a request for custodian:custodian-2, renames
    the files bank-c.*, and the operator certifies "bank-c's request". A custodian-2 server
    certificate for the applicant's key would let it serve as custodian-2 to every member.
    """
    applicant, issued = tmp_path / "bank-c", tmp_path / "issued"
    ca = ["pki", "issue", "--ca-dir", str(pki.directory), "--out", str(issued)]
    for role, name in (("custodian", "custodian-2"), ("member", "bank-a"), ("admin", "bank-c")):
        made = run("pki", "request", "--role", role, "--name", name, "--out", str(applicant), "--force")
        assert made.exit_code == 0, made.output
        (applicant / f"{name}.csr").replace(applicant / "bank-c.csr")
        refused = run(*ca, "--csr", str(applicant / "bank-c.csr"), "--role", "member", "--name", "bank-c")
        assert refused.exit_code == 1, refused.output
        assert (
            f"{applicant / 'bank-c.csr'}: the request names {role}:{name}, not member:bank-c: refused" in refused.output
        )
        assert not issued.exists() or not list(issued.iterdir())

    # A server's own request, named exactly: refused unless the operator says it is for a server.
    assert run("pki", "request", "--role", "custodian", "--name", "custodian-9", "--out", str(tmp_path)).exit_code == 0
    server = [*ca, "--csr", str(tmp_path / "custodian-9.csr"), "--role", "custodian", "--name", "custodian-9"]
    refused = run(*server)
    assert refused.exit_code == 1 and "the request is for a server, custodian:custodian-9" in refused.output
    assert "--allow-server" in refused.output and not issued.exists()
    allowed = run(*server, "--allow-server")
    assert allowed.exit_code == 0, allowed.output
    assert "clients verify it as custodian-9.custodian.alliance-psi.internal" in allowed.output
    cert_pem = (issued / "custodian-9.pem").read_bytes()
    assert pki_module.identity_from_pem(cert_pem) == Identity(name="custodian-9", role=Role.CUSTODIAN)
