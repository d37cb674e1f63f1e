"""An independent custodian pinned to its own CA: the alliance CA holder cannot pose as it.

The attack (issue 9, sections 1 and 6): the alliance operator holds the CA and runs the
coordinator (and perhaps custodian-1). It mints a second ``custodian-2`` certificate with its CA,
runs its own "custodian-2" with a key share of its own, and hands members that address. A client
that pins only the name accepts it, and the operator then holds every key share. A member that
pins custodian-2's own CA refuses it in the handshake, and no call reaches it. Everything runs
over real mutual TLS on loopback, with the real custodian service behind the operator's server.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from alliance_psi.config import MemberConfig, PeerEndpoint
from alliance_psi.errors import HandshakeFailed
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.clients import CustodianClient, RetryPolicy, custodian_clients
from alliance_psi.services.member import MemberNode
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import Alliance, Planted, running_alliance
from tests.integration.services.impostors import custodian_service, impostor_server

pytestmark = pytest.mark.timeout(180)
ONE_TRY = RetryPolicy(attempts=1, timeout=10)


@pytest.fixture(scope="module")
def custodian_2_ca() -> pki_module.CertificateAuthority:
    """The CA of custodian-2's institution (another than the alliance operator)."""
    return pki_module.init_ca("Custodian Two institution")


def member_config(alliance: Alliance, pki: AlliancePki, member: str, custodians: list[PeerEndpoint]) -> MemberConfig:
    """``member``'s node configuration against the harness's alliance, with ``custodians`` as given."""
    key_file = alliance.tmp / "signing.pub"
    key_file.write_text(alliance.signing_key.public_key.hex() + "\n")
    return MemberConfig(
        member_id=member,
        database=f"sqlite:///{alliance.tmp / f'{member}.db'}",
        tls=pki.tls_config(member),
        coordinator=PeerEndpoint("coordinator", alliance.coordinator_address),
        custodians=tuple(custodians),
        coordinator_public_key=key_file,
        data_dir=alliance.tmp / f"{member}-secrets",
        workers=1,
        batch_size=64,
        chunk_size=25,
    )


def test_the_operators_custodian_2_is_refused_by_a_node_that_pins_custodian_2s_own_ca(
    tmp_path: Path, pki: AlliancePki, custodian_2_ca: pki_module.CertificateAuthority
) -> None:
    with running_alliance(tmp_path, pki, own_cas={"custodian-2": custodian_2_ca}) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        # The operator mints custodian-2 with the alliance CA and serves the real custodian service with it.
        minted = pki_module.issue(pki.ca, role=Role.CUSTODIAN, name="custodian-2")
        with impostor_server(custodian_service(tmp_path, "custodian-2"), minted, pki.ca.cert_pem) as operators:
            # Control: a node that pins only the name reaches the operator's custodian-2.
            with CustodianClient(operators.address, pki.material("bank-a"), ONE_TRY, name="custodian-2") as unpinned:
                assert unpinned.epoch().custodian == "custodian-2"
            assert operators.calls == 1
            # bank-a pins custodian-2's own CA and is handed the operator's address for custodian-2.
            custodian_1, _ = alliance.custodians()
            handed = PeerEndpoint("custodian-2", operators.address, ca=alliance.custodian_cas["custodian-2"])
            node = MemberNode.from_config(member_config(alliance, pki, "bank-a", [custodian_1, handed]))
            try:
                with pytest.raises(HandshakeFailed) as refused:
                    node.role.join(round_id, wait=0)
            finally:
                node.close()
            assert operators.calls == 1  # Not one call of bank-a's reached it.
    assert str(refused.value) == (
        f"cannot trust custodian custodian-2 at {operators.address}: its certificate is from the alliance CA, not "
        f"from the CA we pin for custodian custodian-2 ({alliance.custodian_cas['custodian-2']}): whoever holds the "
        "alliance CA can issue one under any name, so this may be an impostor run by the CA holder; do not use this "
        "address, and check it with custodian custodian-2's operator out of band"
    )


def test_the_real_custodian_2_serves_nodes_that_pin_its_own_ca(
    tmp_path: Path, pki: AlliancePki, custodian_2_ca: pki_module.CertificateAuthority
) -> None:
    planted = Planted.make()
    with running_alliance(tmp_path, pki, planted=planted, own_cas={"custodian-2": custodian_2_ca}) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
        custodians = alliance.custodians()
        assert [c.ca for c in custodians] == [None, alliance.custodian_cas["custodian-2"]]
        nodes = {m: MemberNode.from_config(member_config(alliance, pki, m, custodians)) for m in ("bank-a", "bank-b")}
        try:
            with ThreadPoolExecutor(2) as pool:
                joined = {m: pool.submit(node.role.join, round_id, wait=60) for m, node in nodes.items()}
                outcomes = {m: future.result() for m, future in joined.items()}
        finally:
            for node in nodes.values():
                node.close()
    shared = planted.holdings["bank-a"] & planted.holdings["bank-b"]
    assert shared
    for outcome in outcomes.values():
        assert {lead.canonical: lead.holder_count for lead in outcome.leads} == dict.fromkeys(shared, 2)


def test_an_unpinned_node_refuses_custodian_2_served_by_its_own_ca_and_says_to_pin_it(
    tmp_path: Path, pki: AlliancePki, custodian_2_ca: pki_module.CertificateAuthority
) -> None:
    with running_alliance(tmp_path, pki, custodians=2, own_cas={"custodian-2": custodian_2_ca}) as alliance:
        address = alliance.custodian_addresses[1]
        with CustodianClient(address, pki.material("bank-a"), ONE_TRY, name="custodian-2") as unpinned:
            with pytest.raises(HandshakeFailed) as refused:
                unpinned.epoch()
        (pinned,) = custodian_clients(alliance.custodians()[1:], pki.material("bank-a"), ONE_TRY)
        with pinned:
            assert pinned.epoch().custodian == "custodian-2"
    assert str(refused.value) == (
        f"cannot trust custodian custodian-2 at {address}: its certificate is not from the alliance CA in our ca.pem "
        "(its issuer is 'CN=Custodian Two institution alliance CA'): check the address, and that both sides use the "
        "alliance's ca.pem; if custodian custodian-2 serves a certificate of its own CA, pin that CA for it (ca=FILE)"
    )


def test_a_certificate_of_a_third_ca_is_refused_where_custodian_2s_ca_is_pinned(
    tmp_path: Path, pki: AlliancePki, custodian_2_ca: pki_module.CertificateAuthority
) -> None:
    stranger = pki_module.issue(pki_module.init_ca("Stranger"), role=Role.CUSTODIAN, name="custodian-2")
    anchor_file = tmp_path / "custodian-2-ca.pem"
    anchor_file.write_bytes(custodian_2_ca.cert_pem)
    with impostor_server(custodian_service(tmp_path, "custodian-2"), stranger, pki.ca.cert_pem) as impostor:
        endpoint = PeerEndpoint("custodian-2", impostor.address, ca=anchor_file)
        (client,) = custodian_clients([endpoint], pki.material("bank-a"), ONE_TRY)
        with client, pytest.raises(HandshakeFailed) as refused:
            client.epoch()
        assert impostor.calls == 0
    assert str(refused.value) == (
        f"cannot trust custodian custodian-2 at {impostor.address}: its certificate is not from the CA we pin for "
        f"custodian custodian-2 ({anchor_file}) (its issuer is 'CN=Stranger alliance CA'): check the address, and the "
        "pinned file with custodian custodian-2's operator out of band"
    )
