"""``alliance-psi pki``: exit codes and exact messages, for good and bad input."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from alliance_psi.cli.pki import pki_group
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services import pki
from alliance_psi.services.anchors import fingerprint


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(pki_group, [str(arg) for arg in args])


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    result = run("init-ca", "--out", directory, "--name", "Rivers")
    assert result.exit_code == 0, result.output
    ca = pki.load_ca(directory)
    assert result.output == (
        f"wrote {directory / 'ca.pem'}, {directory / 'ca.key'} and {directory / 'crl.pem'}\n"
        f"SHA-256 fingerprint of ca.pem: {fingerprint(ca.cert_pem)} (whoever is handed ca.pem compares it with this, "
        "read out over another channel)\n"
    )
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fingerprint(ca.cert_pem))
    # An empty CRL signed by the CA exists from the start, so servers can always take --crl.
    assert pki.load_crl_serials((directory / "crl.pem").read_bytes(), ca.cert_pem) == frozenset()
    return directory


def _default_crl_serials(ca_dir: Path) -> frozenset[int]:
    return pki.load_crl_serials((ca_dir / "crl.pem").read_bytes(), pki.load_ca(ca_dir).cert_pem)


def issue(ca_dir: Path, out: Path, name: str, *extra: str) -> Result:
    return run("issue", "--ca-dir", ca_dir, "--role", "member", "--name", name, "--out", out, *extra)


def test_init_ca_writes_a_ca_and_refuses_to_overwrite_it(ca_dir: Path) -> None:
    ca = pki.load_ca(ca_dir)
    assert b"BEGIN CERTIFICATE" in ca.cert_pem
    result = run("init-ca", "--out", ca_dir, "--name", "Rivers")
    assert result.exit_code == 1
    assert result.output == f"Error: {ca_dir / 'ca.pem'} already exists (use --force to replace it)\n"
    assert pki.load_ca(ca_dir) == ca
    assert run("init-ca", "--out", ca_dir, "--name", "Rivers", "--force").exit_code == 0
    assert pki.load_ca(ca_dir) != ca


def test_issue_writes_a_certificate_with_the_identity_and_hosts(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bank-a"
    result = run(
        "issue",
        "--ca-dir",
        ca_dir,
        "--role",
        "custodian",
        "--name",
        "cust-1",
        "--out",
        out,
        "--host",
        "custodian.example",
        "--host",
        "10.1.2.3",
        "--days",
        "30",
    )
    assert result.exit_code == 0, result.output
    cert_pem = (out / "cust-1.pem").read_bytes()
    serial = pki.serial_of(cert_pem)
    assert (
        result.output
        == f"issued custodian cust-1 (serial {serial:#x}): {out / 'cust-1.pem'} and {out / 'cust-1.key'}\n"
        "clients verify it as cust-1.custodian.alliance-psi.internal, whatever address they dial\n"
    )
    assert pki.identity_from_pem(cert_pem) == Identity(name="cust-1", role=Role.CUSTODIAN)
    san = x509.load_pem_x509_certificate(cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == [
        "cust-1.custodian.alliance-psi.internal",
        "custodian.example",
    ]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]


def test_issue_refuses_to_overwrite_without_force(ca_dir: Path, tmp_path: Path) -> None:
    assert issue(ca_dir, tmp_path, "bank-a").exit_code == 0
    first = (tmp_path / "bank-a.pem").read_bytes()
    result = issue(ca_dir, tmp_path, "bank-a")
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'bank-a.pem'} already exists (use --force to replace it)\n"
    assert (tmp_path / "bank-a.pem").read_bytes() == first
    assert issue(ca_dir, tmp_path, "bank-a", "--force").exit_code == 0
    assert (tmp_path / "bank-a.pem").read_bytes() != first


def test_issue_rejects_an_unknown_role(ca_dir: Path, tmp_path: Path) -> None:
    result = run("issue", "--ca-dir", ca_dir, "--role", "auditor", "--name", "x", "--out", tmp_path)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for '--role': 'auditor' is not one of 'member', 'custodian', 'coordinator', 'admin'."
    )


@pytest.mark.parametrize("name", ["bank a", "../escape", "-x"])
def test_issue_rejects_a_bad_name(ca_dir: Path, tmp_path: Path, name: str) -> None:
    result = issue(ca_dir, tmp_path, name)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: Invalid value for '--name': invalid name {name!r}: must match [A-Za-z0-9][A-Za-z0-9._-]{{0,62}} "
        "(a letter or digit, then up to 62 letters, digits, '.', '_' or '-')"
    )
    assert list(tmp_path.iterdir()) == [ca_dir]


def test_issue_writes_a_client_only_member_certificate(ca_dir: Path, tmp_path: Path) -> None:
    result = issue(ca_dir, tmp_path, "bank-a")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "for clients only: it cannot serve"
    # The CA made the member's key: it says so, and what a real member does instead.
    assert result.stderr == (
        "warning: bank-a's private key was made here, so whoever holds this CA knows it too; fine for a demo or a "
        "test, but a real member makes its own key (`alliance-psi pki request --role member --name bank-a --out "
        "DIR`) and sends its request, which you certify with --csr\n"
    )
    admin = run("issue", "--ca-dir", ca_dir, "--role", "admin", "--name", "operator", "--out", tmp_path)
    assert admin.exit_code == 0 and admin.stderr == "", admin.output


@pytest.mark.parametrize(
    ("role", "name", "host", "message"),
    [
        ("custodian", "cust-1", "not a host", "host 'not a host' is neither an IP address nor a DNS name"),
        (
            "coordinator",
            "coordinator",
            "custodian-1.custodian.alliance-psi.internal",
            (
                "host 'custodian-1.custodian.alliance-psi.internal' is under alliance-psi.internal, "
                "which only identity names may use"
            ),
        ),
        (
            "member",
            "bank-a",
            "bank.example",
            "member certificates are for clients only: they serve no host, so give no hosts",
        ),
        (
            "admin",
            "operator",
            "127.0.0.1",
            "admin certificates are for clients only: they serve no host, so give no hosts",
        ),
        (
            "custodian",
            "Custodian_1",
            "10.0.0.1",
            (
                "invalid custodian name 'Custodian_1': a server's name is also its TLS name, so it must match "
                "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])? (lowercase letters, digits and '-', not first or last, at most 63)"
            ),
        ),
    ],
    ids=["not-a-host", "identity-suffix", "member", "admin", "server-name"],
)
def test_issue_rejects_a_bad_host_or_server_name(
    ca_dir: Path, tmp_path: Path, role: str, name: str, host: str, message: str
) -> None:
    result = run("issue", "--ca-dir", ca_dir, "--role", role, "--name", name, "--out", tmp_path / "out", "--host", host)
    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_issue_names_the_missing_ca_file(tmp_path: Path) -> None:
    result = issue(tmp_path / "no-such-dir", tmp_path / "out", "bank-a")
    assert result.exit_code == 1
    assert (
        result.output
        == f"Error: cannot read CA file {tmp_path / 'no-such-dir' / 'ca.pem'}: No such file or directory\n"
    )


def test_issue_rejects_zero_days(ca_dir: Path, tmp_path: Path) -> None:
    result = issue(ca_dir, tmp_path, "bank-a", "--days", "0")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: Invalid value for '--days': 0 is not in the range x>=1."


def test_revoke_writes_and_then_extends_the_crl(ca_dir: Path, tmp_path: Path) -> None:
    for name in ("bank-a", "bank-b", "bank-c"):
        assert issue(ca_dir, tmp_path, name).exit_code == 0
    result = run("revoke", "--ca-dir", ca_dir, tmp_path / "bank-a.pem", tmp_path / "bank-b.pem")
    assert result.exit_code == 0, result.output
    assert result.output == f"revoked 2 certificates; {ca_dir / 'crl.pem'} lists 2\n"
    result = run("revoke", "--ca-dir", ca_dir, tmp_path / "bank-c.pem")
    assert result.output == f"revoked 1 certificate; {ca_dir / 'crl.pem'} lists 3\n"
    ca = pki.load_ca(ca_dir)
    expected = {pki.serial_of((tmp_path / f"{name}.pem").read_bytes()) for name in ("bank-a", "bank-b", "bank-c")}
    assert pki.load_crl_serials((ca_dir / "crl.pem").read_bytes(), ca.cert_pem) == expected
    # Numbered, one above the last, and naming the CA's key (RFC 5280 5.2.1, 5.2.3): what openssl expects.
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert pki.crl_number(crl) == 3  # pki init wrote the empty CRL number 1; each revoke adds one.
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    authority = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    subject_key = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert authority.key_identifier == subject_key.digest
    openssl = shutil.which("openssl")
    if openssl:  # The CRL as another tool reads it.
        text = subprocess.run(
            [openssl, "crl", "-noout", "-text", "-in", str(ca_dir / "crl.pem")],
            check=False,
            capture_output=True,
            text=True,
        )
        assert text.returncode == 0 and re.search(r"CRL Number: *\n *3\n", text.stdout), text.stdout


def test_revoke_to_another_crl_file(ca_dir: Path, tmp_path: Path) -> None:
    assert issue(ca_dir, tmp_path, "bank-a").exit_code == 0
    result = run("revoke", "--ca-dir", ca_dir, "--crl", tmp_path / "elsewhere.pem", tmp_path / "bank-a.pem")
    assert result.exit_code == 0, result.output
    assert result.output == f"revoked 1 certificate; {tmp_path / 'elsewhere.pem'} lists 1\n"
    assert _default_crl_serials(ca_dir) == frozenset()  # The CA's own CRL is untouched.


def test_revoke_refuses_a_certificate_of_another_ca(ca_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert run("init-ca", "--out", other, "--name", "Other").exit_code == 0
    assert issue(other, tmp_path, "bank-x").exit_code == 0
    serial = pki.serial_of((tmp_path / "bank-x.pem").read_bytes())
    result = run("revoke", "--ca-dir", ca_dir, tmp_path / "bank-x.pem")
    assert result.exit_code == 1
    assert (
        result.output == f"Error: {tmp_path / 'bank-x.pem'}: certificate serial {serial:#x} was not issued by this CA\n"
    )
    assert _default_crl_serials(ca_dir) == frozenset()  # The CA's own CRL is untouched.


def test_revoke_refuses_a_crl_of_another_ca(ca_dir: Path, tmp_path: Path) -> None:
    assert issue(ca_dir, tmp_path, "bank-a").exit_code == 0
    forged = tmp_path / "forged.pem"
    forged.write_bytes(pki.revoke(pki.init_ca("Rivers"), [1]))
    result = run("revoke", "--ca-dir", ca_dir, "--crl", forged, tmp_path / "bank-a.pem")
    assert result.exit_code == 1
    assert result.output == f"Error: {forged}: CRL is not signed by the alliance CA\n"


def test_revoke_needs_a_certificate(ca_dir: Path) -> None:
    result = run("revoke", "--ca-dir", ca_dir)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: Missing argument 'CERT_PEM...'."
