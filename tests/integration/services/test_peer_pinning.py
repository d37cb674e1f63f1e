"""Clients accept a server only as the party they were configured for (issue 9, section 6).

Each impostor serves the real coordinator or custodian service with a certificate of the alliance
CA, over real mutual TLS on loopback. Before clients pinned the server's role and name, a member's
client evaluated its elements at a custodian served with another member's certificate; now the
handshake refuses every impostor and no call reaches it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from alliance_psi.errors import ConfigurationError, HandshakeFailed
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.clients import CoordinatorClient, CustodianClient, RetryPolicy
from alliance_psi.services.server import run_server
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import running_alliance
from tests.integration.services.impostors import (
    coordinator_service,
    custodian_service,
    forge_certificate,
    material,
    refusal,
)

pytestmark = pytest.mark.timeout(120)
ONE_TRY = RetryPolicy(attempts=1, timeout=10)
CUSTODIAN_1_NAME = "custodian-1.custodian.alliance-psi.internal"


def test_a_custodian_serving_another_members_certificate_is_refused(tmp_path: Path, pki: AlliancePki) -> None:
    address, message = refusal(tmp_path, pki, pki.issued["bank-b"], serving=Role.CUSTODIAN)
    assert message == (
        f"cannot trust custodian custodian-1 at {address}: it is member bank-b, not custodian "
        "custodian-1: check the address configured for custodian custodian-1 (NAME@HOST:PORT)"
    )


def test_a_coordinator_serving_a_custodians_certificate_is_refused(tmp_path: Path, pki: AlliancePki) -> None:
    address, message = refusal(tmp_path, pki, pki.issued["custodian-1"], serving=Role.COORDINATOR)
    assert message == (
        f"cannot trust the coordinator at {address}: it is custodian custodian-1, not the coordinator: "
        "check the address configured for the coordinator (NAME@HOST:PORT)"
    )


def test_custodian_2_is_refused_where_custodian_1_was_configured(tmp_path: Path, pki: AlliancePki) -> None:
    with running_alliance(tmp_path, pki, custodians=2) as alliance:
        first, second = alliance.custodian_addresses
        with CustodianClient(first, pki.material("bank-a"), ONE_TRY, name="custodian-1") as right:
            assert right.epoch().custodian == "custodian-1"
        with CustodianClient(second, pki.material("bank-a"), ONE_TRY, name="custodian-1") as swapped:
            with pytest.raises(HandshakeFailed) as refused:
                swapped.epoch()
    assert str(refused.value) == (
        f"cannot trust custodian custodian-1 at {second}: it is custodian custodian-2, not custodian custodian-1: "
        "check the address configured for custodian custodian-1 (NAME@HOST:PORT)"
    )


def test_a_client_only_certificate_with_the_right_name_is_refused(tmp_path: Path, pki: AlliancePki) -> None:
    # What a CA that ignored usages could sign: custodian-1's identity and name, for clients only.
    client_only = forge_certificate(
        pki.ca,
        uri="urn:alliance-psi:custodian:custodian-1",
        dns_names=[CUSTODIAN_1_NAME],
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    address, message = refusal(tmp_path, pki, client_only, serving=Role.CUSTODIAN)
    assert message == (
        f"cannot trust custodian custodian-1 at {address}: its certificate is for clients only (no "
        "serverAuth usage): its operator must reissue it with alliance-psi pki issue --role custodian "
        "--name custodian-1 --force"
    )


def test_a_server_certificate_issued_before_identity_names_is_refused(tmp_path: Path, pki: AlliancePki) -> None:
    # As pki.issue made them before: both usages, localhost and 127.0.0.1, no identity name.
    old = forge_certificate(
        pki.ca, uri="urn:alliance-psi:custodian:custodian-1", dns_names=["localhost"], ips=["127.0.0.1"]
    )
    address, message = refusal(tmp_path, pki, old, serving=Role.CUSTODIAN)
    assert message == (
        f"cannot trust custodian custodian-1 at {address}: its certificate lacks the identity name "
        f"{CUSTODIAN_1_NAME}, which clients verify (it was issued by an older alliance-psi): its operator must "
        "reissue it with alliance-psi pki issue --role custodian --name custodian-1 --force"
    )


@pytest.mark.parametrize(
    ("holder", "message"),
    [
        (
            "bank-a",
            (
                "this server's certificate is of member bank-a, which is for clients only: serve with a coordinator or "
                "custodian certificate"
            ),
        ),
        (
            "client-only",
            (
                "this server's certificate (custodian custodian-1) lacks the serverAuth usage, so every client would "
                "refuse it: reissue it with alliance-psi pki issue --role custodian --name custodian-1 --force"
            ),
        ),
        (
            "old",
            (
                f"this server's certificate (custodian custodian-1) lacks its identity name {CUSTODIAN_1_NAME}, which "
                "clients verify (it was issued by an older alliance-psi): reissue it with alliance-psi pki issue "
                "--role custodian --name custodian-1 --force"
            ),
        ),
    ],
)
def test_a_server_refuses_to_start_with_a_certificate_clients_refuse(
    tmp_path: Path, pki: AlliancePki, holder: str, message: str
) -> None:
    uri = "urn:alliance-psi:custodian:custodian-1"
    certificates = {
        "bank-a": pki.issued["bank-a"],
        "client-only": forge_certificate(
            pki.ca, uri=uri, dns_names=[CUSTODIAN_1_NAME], usages=[ExtendedKeyUsageOID.CLIENT_AUTH]
        ),
        "old": forge_certificate(pki.ca, uri=uri, dns_names=["localhost"]),
    }
    with pytest.raises(ConfigurationError) as refused:
        with run_server(
            [custodian_service(tmp_path)], address="127.0.0.1:0", tls=material(pki.ca, certificates[holder])
        ):
            pytest.fail("the server started")
    assert str(refused.value) == message


def test_the_dialed_host_name_no_longer_matters(tmp_path: Path, pki: AlliancePki) -> None:
    # The README's coordinator certificate names coord.example; clients dial 127.0.0.1 and get through.
    coordinator = pki_module.issue(pki.ca, role=Role.COORDINATOR, name="coordinator", hosts=["coord.example"])
    with run_server([coordinator_service(tmp_path)], address="127.0.0.1:0", tls=material(pki.ca, coordinator)) as port:
        with CoordinatorClient(f"127.0.0.1:{port}", pki.material("admin"), ONE_TRY) as admin:
            assert admin.list_rounds() == []


def test_every_coordinator_call_names_a_custodian_at_its_address(tmp_path: Path, pki: AlliancePki) -> None:
    # The node's first call of a join is the audit log's checkpoint; the result is a stream. Each
    # says which party answers at the address, not gRPC's "Hostname Verification Check failed".
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        (address,) = alliance.custodian_addresses
        with CoordinatorClient(address, pki.material("bank-a"), ONE_TRY) as client:
            calls = {
                "checkpoint": client.checkpoint,
                "consistency": lambda: client.consistency(1, 2),
                "inclusion": lambda: client.inclusion(0, 1),
                "get_result": lambda: next(client.get_result("r-1")),
                "upload_chunks": lambda: client.upload_chunks(iter(())),
            }
            messages = {}
            for name, call in calls.items():
                with pytest.raises(HandshakeFailed) as refused:
                    call()
                messages[name] = str(refused.value)
    expected = (
        f"cannot trust the coordinator at {address}: it is custodian custodian-1, not the coordinator: "
        "check the address configured for the coordinator (NAME@HOST:PORT)"
    )
    assert messages == dict.fromkeys(calls, expected)
