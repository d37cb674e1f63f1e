"""An independent custodian's own CA through the commands: ``custodian serve --own-ca`` and node.toml's
``ca`` for a custodian, with the warning for a node that pins none, and every bad input named.

Servers are real: ``custodian serve`` runs as its own process, rounds run against the loopback
alliance of ``tests.integration.services.harness`` over real mutual TLS.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from alliance_psi._files import write_file_atomic
from alliance_psi.cli._processes import ServerProcess
from alliance_psi.cli.custodian import SHARE_HOLDER_NOTE
from alliance_psi.cli.main import main
from alliance_psi.config import PeerEndpoint, TlsMaterial
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.oprf import blind
from alliance_psi.errors import HandshakeFailed
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.clients import CustodianClient, RetryPolicy, custodian_clients
from alliance_psi.services.enrolment import enrol
from alliance_psi.storage import create_schema, make_engine
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import running_alliance

pytestmark = pytest.mark.timeout(180)
ONE_TRY = RetryPolicy(attempts=1, timeout=10)
UNPINNED = "warning: no custodian is pinned to its own CA"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def custodian_2(tmp_path: Path) -> Path:
    """custodian-2's institution's folder: its own CA (c2-ca/), its certificate from it, a key share."""
    folder = tmp_path / "custodian-2"
    own = pki_module.init_ca("Custodian Two institution")
    pki_module.write_ca(own, folder / "c2-ca")
    pki_module.write_issued(pki_module.issue(own, role=Role.CUSTODIAN, name="custodian-2"), folder, "custodian-2")
    write_file_atomic(folder / "2026q4.share", KeyShare.generate("2026q4").to_bytes())
    return folder


def serve_args(pki: AlliancePki, folder: Path, *tls: str) -> list[str]:
    return [
        *("custodian", "serve", "--name", "custodian-2", "--listen", "127.0.0.1:0"),
        *("--ca", str(pki.directory / "ca.pem"), *tls),
        *("--key-share", str(folder / "2026q4.share"), "--database", f"sqlite:///{folder / 'quota.db'}"),
    ]


def test_custodian_serve_with_its_own_ca_serves_pinned_members_of_the_alliance_ca_only(
    pki: AlliancePki, custodian_2: Path
) -> None:
    engine = make_engine(f"sqlite:///{custodian_2 / 'quota.db'}")
    create_schema(engine)
    enrol(engine, pki.issued["bank-a"].cert_pem, role=Role.MEMBER)
    engine.dispose()
    anchor = custodian_2 / "c2-ca" / "ca.pem"
    own_tls = ("--own-ca", str(anchor), "--cert", str(custodian_2 / "custodian-2.pem"))
    with ServerProcess(serve_args(pki, custodian_2, *own_tls, "--key", str(custodian_2 / "custodian-2.key"))) as server:
        # The fingerprint it prints is the one openssl shows to the member comparing it out of band.
        shown = subprocess.run(
            ["openssl", "x509", "-in", str(anchor), "-noout", "-fingerprint", "-sha256"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        fingerprint = shown.partition("=")[2]
        assert (
            f"custodian custodian-2's certificate is from its own CA {anchor} (SHA-256 fingerprint {fingerprint}): "
            "members pin that file for custodian-2 (ca = ...), after comparing the fingerprint\n"
        ) in server.lines
        # Its operator hears what one share is worth at every start (issue 9 §7).
        assert SHARE_HOLDER_NOTE.format(name="custodian-2", epoch="2026q4") + "\n" in server.lines
        (pinned,) = custodian_clients([PeerEndpoint("custodian-2", server.address, ca=anchor)], pki.material("bank-a"))
        with pinned:
            assert pinned.epoch().key_epoch == "2026q4"
            assert len(pinned.evaluate("2026q4", [_element()])) == 1
        # Members still come from the alliance CA: one custodian-2's own CA issues is refused in the handshake.
        own = pki_module.load_ca(custodian_2 / "c2-ca")
        foreign_member = pki_module.issue(own, role=Role.MEMBER, name="bank-a")
        material = pki.material("bank-a")
        theirs = TlsMaterial(ca_cert=material.ca_cert, cert=foreign_member.cert_pem, key=foreign_member.key_pem)
        (outsider,) = custodian_clients([PeerEndpoint("custodian-2", server.address, ca=anchor)], theirs, ONE_TRY)
        with outsider, pytest.raises(Exception) as refused:
            outsider.epoch()
        assert "it may refuse ours (it must trust the alliance's ca.pem)" in str(refused.value)
        # An unpinned member refuses custodian-2: its certificate is not from the alliance CA.
        with CustodianClient(server.address, material, ONE_TRY, name="custodian-2") as unpinned:
            with pytest.raises(HandshakeFailed, match="pin that CA for it"):
                unpinned.epoch()


def _element() -> bytes:
    return blind(b"phone\x00+8613915274680").blinded_element


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (
            ("--own-ca", "{alliance}/ca.pem", "--cert", "{c2}/custodian-2.pem", "--key", "{c2}/custodian-2.key"),
            (
                "Error: TLS option 'own_ca': {alliance}/ca.pem is the alliance CA ({alliance}/ca.pem) itself: give this "
                "custodian's own CA (its `alliance-psi pki init-ca`), or leave own_ca out\n"
            ),
        ),
        (
            ("--cert", "{c2}/custodian-2.pem", "--key", "{c2}/custodian-2.key"),
            (
                "Error: TLS option 'cert': {c2}/custodian-2.pem was not issued by the CA in {alliance}/ca.pem (its issuer "
                "is 'CN=Custodian Two institution alliance CA'): give the alliance's ca.pem, or a certificate its operator "
                "issued (a custodian serving a certificate of its own CA names that CA with --own-ca)\n"
            ),
        ),
        (
            (
                "--own-ca",
                "{c2}/c2-ca/ca.pem",
                "--cert",
                "{alliance}/custodian-2.pem",
                "--key",
                "{alliance}/custodian-2.key",
            ),
            (
                "Error: TLS option 'cert': {alliance}/custodian-2.pem was not issued by the CA in {c2}/c2-ca/ca.pem (its "
                "issuer is 'CN=Test alliance CA'): give this custodian's own ca.pem, or a certificate that CA issued\n"
            ),
        ),
        (
            ("--own-ca", "{c2}/none.pem", "--cert", "{c2}/custodian-2.pem", "--key", "{c2}/custodian-2.key"),
            "Error: TLS option 'own_ca': file not found: {c2}/none.pem\n",
        ),
    ],
)
def test_custodian_serve_names_a_wrong_own_ca_before_it_starts(
    pki: AlliancePki, custodian_2: Path, tls: tuple[str, ...], message: str
) -> None:
    paths = {"alliance": str(pki.directory), "c2": str(custodian_2)}
    result = run(*serve_args(pki, custodian_2, *(arg.format(**paths) for arg in tls)))
    assert (result.exit_code, result.output) == (1, message.format(**paths))
    assert not (custodian_2 / "quota.db").exists()


def node_toml(folder: Path, pki: AlliancePki, alliance, member: str, custodians: str) -> Path:  # type: ignore[no-untyped-def]
    """``member``'s node.toml in ``folder``, its custodians given as TOML text (a key or tables, last)."""
    folder.mkdir(exist_ok=True)
    (folder / "signing.pub").write_text(alliance.signing_key.public_key.hex() + "\n")
    path = folder / "node.toml"
    path.write_text(
        f'[node]\ndatabase = "sqlite:///{alliance.tmp / f"{member}.db"}"\nmember-id = "{member}"\n'
        f'ca = "{pki.directory / "ca.pem"}"\ncert = "{pki.directory / f"{member}.pem"}"\n'
        f'key = "{pki.directory / f"{member}.key"}"\ncoordinator = "{alliance.coordinator_address}"\n'
        f'coordinator-key = "signing.pub"\ndata-dir = "secrets"\n{custodians}',
        encoding="utf-8",
    )
    return path


def test_nodes_pinning_custodian_2_join_without_the_warning_and_unpinned_ones_are_warned(
    tmp_path: Path, pki: AlliancePki
) -> None:
    own = pki_module.init_ca("Custodian Two institution")
    for folder in ("pinned", "unpinned"):
        (tmp_path / folder).mkdir()
    with running_alliance(tmp_path / "pinned", pki, own_cas={"custodian-2": own}) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
        first, second = alliance.custodian_addresses
        # bank-a: tables, the CA file next to node.toml; bank-b: the compact form, from another folder.
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "custodian-2-ca.pem").write_bytes(own.cert_pem)
        tables = (
            f'\n[[node.custodian]]\nname = "custodian-1"\naddress = "{first}"\n\n'
            f'[[node.custodian]]\nname = "custodian-2"\naddress = "{second}"\nca = "custodian-2-ca.pem"\n'
        )
        config_a = node_toml(tmp_path / "a", pki, alliance, "bank-a", tables)
        compact = f'custodian = ["custodian-1@{first}", "custodian-2@{second},ca=../a/custodian-2-ca.pem"]\n'
        config_b = node_toml(tmp_path / "b", pki, alliance, "bank-b", compact)
        joined_a = run("node", "join", round_id, "--config", str(config_a), "--wait", "0")
        assert joined_a.exit_code == 0, joined_a.output
        joined_b = run("node", "join", round_id, "--config", str(config_b), "--wait", "60")
        assert joined_b.exit_code == 0, joined_b.output
        assert "round joined; result verified" in joined_b.output
        assert UNPINNED not in joined_a.output + joined_b.output
    with running_alliance(tmp_path / "unpinned", pki) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
        first, second = alliance.custodian_addresses
        plain = f'custodian = ["custodian-1@{first}", "custodian-2@{second}"]\n'
        config = node_toml(tmp_path / "c", pki, alliance, "bank-a", plain)
        joined = run("node", "join", round_id, "--config", str(config), "--wait", "0")
        assert joined.exit_code == 0, joined.output
        assert joined.output.startswith(
            f"{UNPINNED} (custodian-1, custodian-2: trusted on the alliance CA's word): whoever holds the alliance CA "
            "could issue certificates under their names, run them all itself and, holding every key share, test "
            "guesses of low-entropy identifiers; pin a custodian run by another institution to that institution's CA "
            '(ca = "FILE" in its custodian entry; docs/operations.md)\n'
        )


def bad_anchor_files(folder: Path, pki: AlliancePki) -> dict[str, Path]:
    """CA files a member could be handed by mistake, or by someone hoping it pins nothing."""
    folder.mkdir()
    files = {
        "leaf": pki.issued["custodian-2"].cert_pem,
        "alliance": pki.ca.cert_pem,
        "alliance-resigned": _resigned(pki.ca.cert_pem, pki.ca.key_pem),
        "expired": _expired_ca(dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
        "text": b"not a certificate\n",
    }
    for name, data in files.items():
        (folder / f"{name}.pem").write_bytes(data)
    return {name: folder / f"{name}.pem" for name in (*files, "missing")}


def _resigned(cert_pem: bytes, key_pem: bytes) -> bytes:
    """The alliance CA's own key and subject, self-signed again under a new serial (adversary a1c)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    again = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.subject)
        .public_key(cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return again.public_bytes(serialization.Encoding.PEM)


def _expired_ca(start: dt.datetime) -> bytes:
    """A self-signed CA certificate valid for 30 days from ``start``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old custodian CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_node_join_names_a_bad_custodian_entry_before_dialling_anything(tmp_path: Path, pki: AlliancePki) -> None:
    files = bad_anchor_files(tmp_path / "files", pki)
    database = tmp_path / "bank-a.db"
    create_schema(engine := make_engine(f"sqlite:///{database}"))
    engine.dispose()
    own_ca = "pin the ca.pem of custodian-2's own CA (its `alliance-psi pki init-ca`), from its operator"
    loaded = {
        "leaf": f"not a self-signed CA certificate: {own_ca}",
        "alliance": (
            "this is the alliance CA, which can issue a certificate under any name, so it pins nothing: "
            f"{own_ca}, or leave ca out if custodian-2 is the alliance operator's"
        ),
        "alliance-resigned": (
            "this is the alliance CA, which can issue a certificate under any name, so it pins nothing: "
            f"{own_ca}, or leave ca out if custodian-2 is the alliance operator's"
        ),
        "expired": (
            "valid only from 2020-01-01 to 2020-01-31: check this machine's clock, or ask custodian-2's operator for "
            "its current CA certificate"
        ),
        "text": "not a PEM certificate",
        "missing": "file not found",
    }
    common = [
        *("--database", f"sqlite:///{database}", "--member-id", "bank-a", "--ca", str(pki.directory / "ca.pem")),
        *("--cert", str(pki.directory / "bank-a.pem"), "--key", str(pki.directory / "bank-a.key")),
        *("--coordinator", "127.0.0.1:9", "--coordinator-key", str(files["text"])),
        *("--data-dir", str(tmp_path / "secrets")),
    ]
    first = ("--custodian", "custodian-1@127.0.0.1:9")
    for name, reason in loaded.items():
        result = run("node", "join", "r-1", *common, *first, "--custodian", f"custodian-2@127.0.0.1:9,ca={files[name]}")
        assert (result.exit_code, result.output.splitlines()[-1]) == (
            1,
            f"Error: custodian custodian-2's ca {files[name]}: {reason}",
        ), result.output
    parsed = {
        ("--custodian", "custodian-2@127.0.0.1:9,pin=x"): (
            "custodian 'custodian-2@127.0.0.1:9,pin=x': after the address a custodian takes only ca=FILE (its own CA)"
        ),
        ("--custodian", "custodian-2@127.0.0.1:9,ca="): (
            "custodian 'custodian-2@127.0.0.1:9,ca=': after the address a custodian takes only ca=FILE (its own CA)"
        ),
        ("--coordinator", f"127.0.0.1:9,ca={files['leaf']}"): (
            f"coordinator '127.0.0.1:9,ca={files['leaf']}': after the address a coordinator takes nothing (it is "
            "anchored in the alliance CA)"
        ),
    }
    for (option, value), reason in parsed.items():
        result = run("node", "join", "r-1", *common, *first, option, value)
        assert result.exit_code == 2 and reason in " ".join(result.output.split()), result.output
    # A table in node.toml takes name, address and ca, nothing else.
    settings = tmp_path / "node.toml"
    settings.write_text(
        '[node]\n[[node.custodian]]\nname = "custodian-2"\naddress = "127.0.0.1:9"\nca = "c2.pem"\nkey-pin = "ab"\n',
        encoding="utf-8",
    )
    result = run("node", "--config", str(settings), "join", "r-1", *common)
    assert result.exit_code == 2, result.output
    assert "a table needs exactly the text keys name, address and optionally ca" in " ".join(result.output.split())
    assert not (tmp_path / "secrets").exists()
