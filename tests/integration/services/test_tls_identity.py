"""Mutual TLS and the identity interceptor, on real gRPC servers over loopback, plus the PKI itself.

Each server is a generic raw-bytes service, so these tests do not depend on the project's protos.
Its handlers answer with ``identity_of(context)``, which shows that the identity the server sees
comes from the client's certificate, and count their calls, which shows that a refused call never
reached a handler.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
import queue
import stat
import subprocess
import sys
from collections.abc import Container, Iterator, Sequence
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from alliance_psi.config import TlsConfig, TlsMaterial
from alliance_psi.errors import ConfigurationError, NotAuthenticated, NotAuthorized
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.interceptors import IdentityInterceptor, Peer, PeerCheck, identity_of
from alliance_psi.services.tls import SERVER_OPTIONS, revoked_serials, secure_channel, server_credentials
from tests.integration.services.conftest import AlliancePki

pytestmark = pytest.mark.timeout(60)

SERVICE = "test.Echo"
KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
ALL_ROLES = frozenset(Role)


def admin_method(kind: str) -> str:
    """The admin-only method of a handler kind: ``unary_stream`` -> ``AdminUnaryStream``."""
    return "Admin" + kind.title().replace("_", "")


POLICY = {
    f"/{SERVICE}/Who": ALL_ROLES,
    **{f"/{SERVICE}/{admin_method(kind)}": frozenset({Role.ADMIN}) for kind in KINDS},
    # "/test.Echo/Unlisted" is served but deliberately absent from the policy.
}
COORDINATOR = Identity(name="coordinator", role=Role.COORDINATOR)
REFUSED_BEFORE_HANDLER = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED}


def _who(context: grpc.ServicerContext) -> bytes:
    identity = identity_of(context)
    return f"{identity.role.value}:{identity.name}".encode()


@contextlib.contextmanager
def run_echo_server(
    material: TlsMaterial,
    *,
    insecure: bool = False,
    revoked: Container[int] | None = None,
    checks: Sequence[PeerCheck] = (),
) -> Iterator[tuple[int, collections.Counter[str]]]:
    """Serve ``test.Echo`` behind the identity interceptor on 127.0.0.1:0; yield (port, calls).

    ``revoked`` (the CRL in ``material`` if None) and ``checks`` may change while it serves."""
    calls: collections.Counter[str] = collections.Counter()

    def counted(name: str, kind: str = "unary_unary") -> grpc.RpcMethodHandler:
        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            calls[name] += 1
            return _who(context)

        def streaming(request: object, context: grpc.ServicerContext) -> Iterator[bytes]:
            calls[name] += 1
            yield _who(context)

        def from_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
            calls[name] += 1
            return _who(context) + b"/" + str(sum(1 for _ in requests)).encode()

        def stream_to_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            calls[name] += 1
            for request in requests:
                yield _who(context) + b"/" + request

        makers = {
            "unary_unary": (grpc.unary_unary_rpc_method_handler, unary),
            "unary_stream": (grpc.unary_stream_rpc_method_handler, streaming),
            "stream_unary": (grpc.stream_unary_rpc_method_handler, from_stream),
            "stream_stream": (grpc.stream_stream_rpc_method_handler, stream_to_stream),
        }
        make, behavior = makers[kind]
        return make(behavior)

    handlers = {"Who": counted("Who"), "Unlisted": counted("Unlisted")}
    handlers.update({admin_method(kind): counted(admin_method(kind), kind) for kind in KINDS})
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        interceptors=[
            IdentityInterceptor(
                POLICY,
                revoked_serials=revoked_serials(material) if revoked is None else revoked,
                checks=checks,
            )
        ],
        options=SERVER_OPTIONS,
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(SERVICE, handlers),
            grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": counted("Check")}),
        ]
    )
    if insecure:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", server_credentials(material))
    server.start()
    try:
        yield port, calls
    finally:
        server.stop(0)


def call(channel: grpc.Channel, method: str, kind: str = "unary_unary") -> list[bytes]:
    """Call ``method`` of the given kind with two raw requests (one for unary); return the responses."""
    path = method if method.startswith("/") else f"/{SERVICE}/{method}"
    requests = iter([b"r1", b"r2"])
    stub = getattr(channel, kind)(path)
    result = stub(next(requests) if kind.startswith("unary") else requests, timeout=10)
    return list(result) if kind.endswith("stream") else [result]


def rpc_error(channel: grpc.Channel, method: str, kind: str = "unary_unary") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(channel, method, kind)
    return info.value


# Authentication and authorization over real mTLS ---------------------------------------------


def test_member_is_identified_from_its_certificate(pki: AlliancePki) -> None:
    with run_echo_server(pki.material("coordinator")) as (port, calls):
        with secure_channel(f"127.0.0.1:{port}", pki.material("bank-a"), server=COORDINATOR) as channel:
            assert call(channel, "Who") == [b"member:bank-a"]
        with secure_channel(f"localhost:{port}", pki.material("custodian-1"), server=COORDINATOR) as channel:
            assert call(channel, "Who") == [b"custodian:custodian-1"]
    assert calls["Who"] == 2


@pytest.mark.parametrize(
    ("kind", "admin_sees"),
    [
        ("unary_unary", [b"admin:admin"]),
        ("unary_stream", [b"admin:admin"]),
        ("stream_unary", [b"admin:admin/2"]),
        ("stream_stream", [b"admin:admin/r1", b"admin:admin/r2"]),
    ],
)
def test_every_handler_kind_is_guarded(pki: AlliancePki, kind: str, admin_sees: list[bytes]) -> None:
    with run_echo_server(pki.material("coordinator")) as (port, calls):
        with secure_channel(f"127.0.0.1:{port}", pki.material("bank-b"), server=COORDINATOR) as channel:
            error = rpc_error(channel, admin_method(kind), kind)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error.details() == f"role member may not call {admin_method(kind)}"
        assert calls[admin_method(kind)] == 0
        with secure_channel(f"127.0.0.1:{port}", pki.material("admin"), server=COORDINATOR) as channel:
            assert call(channel, admin_method(kind), kind) == admin_sees
        assert calls[admin_method(kind)] == 1


def test_method_missing_from_the_policy_is_refused(pki: AlliancePki) -> None:
    with run_echo_server(pki.material("coordinator")) as (port, calls):
        with secure_channel(f"127.0.0.1:{port}", pki.material("admin"), server=COORDINATOR) as channel:
            error = rpc_error(channel, "Unlisted")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "method Unlisted is not in the access policy"
    assert calls["Unlisted"] == 0


def test_health_service_is_open_to_a_role_the_server_serves(pki: AlliancePki) -> None:
    with run_echo_server(pki.material("coordinator")) as (port, calls):
        with secure_channel(f"127.0.0.1:{port}", pki.material("bank-c"), server=COORDINATOR) as channel:
            assert call(channel, "/grpc.health.v1.Health/Check") == [b"member:bank-c"]
    assert calls["Check"] == 1


def test_revoked_certificate_is_unauthenticated(pki: AlliancePki) -> None:
    pki.issue(Role.MEMBER, "bank-revoked")
    server = pki.material("coordinator", crl=pki.revoke("bank-revoked"))
    with run_echo_server(server) as (port, calls):
        with secure_channel(f"127.0.0.1:{port}", pki.material("bank-revoked"), server=COORDINATOR) as channel:
            error = rpc_error(channel, "Who")
        with secure_channel(f"127.0.0.1:{port}", pki.material("bank-a"), server=COORDINATOR) as channel:
            assert call(channel, "Who") == [b"member:bank-a"]
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "certificate revoked"
    assert calls["Who"] == 1


@pytest.mark.parametrize("change", ["revoked", "no longer passes the server's check"])
def test_every_message_of_an_open_stream_rechecks_its_peer(pki: AlliancePki, change: str) -> None:
    """A stream admitted before its peer was revoked (or fell out of the server's own check, such
    as its enrolment list) is refused at its next message: the server has no reaper here, so
    only the per-message check can refuse it."""
    revoked: set[int] = set()
    fallen: set[str] = set()

    def enrolled(peer: Peer, method: str) -> None:
        if peer.identity.name in fallen:
            raise NotAuthorized(f"{peer.identity.name} is not enrolled")

    requests: queue.Queue[bytes | None] = queue.Queue()
    with run_echo_server(pki.material("coordinator"), revoked=revoked, checks=[enrolled]) as (port, calls):
        with secure_channel(f"127.0.0.1:{port}", pki.material("admin"), server=COORDINATOR) as channel:
            stream = channel.stream_stream(f"/{SERVICE}/{admin_method('stream_stream')}")(
                iter(requests.get, None), timeout=30
            )
            requests.put(b"r1")
            assert next(stream) == b"admin:admin/r1"
            if change == "revoked":
                revoked.add(pki.issued["admin"].serial)
            else:
                fallen.add("admin")
            requests.put(b"r2")
            with pytest.raises(grpc.RpcError) as refused:
                next(stream)
            requests.put(None)
    expected = (
        (grpc.StatusCode.UNAUTHENTICATED, "certificate revoked")
        if change == "revoked"
        else (grpc.StatusCode.PERMISSION_DENIED, "admin is not enrolled")
    )
    assert (refused.value.code(), refused.value.details()) == expected
    assert calls[admin_method("stream_stream")] == 1


def _assert_refused_before_any_handler(server: TlsMaterial, credentials: grpc.ChannelCredentials) -> None:
    with run_echo_server(server) as (port, calls):
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            error = rpc_error(channel, "Who")
    assert error.code() in REFUSED_BEFORE_HANDLER, error
    assert sum(calls.values()) == 0


def _credentials(ca: bytes, cert: pki_module.IssuedCertificate | None = None) -> grpc.ChannelCredentials:
    if cert is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=cert.key_pem, certificate_chain=cert.cert_pem)


def test_client_without_certificate_is_refused(pki: AlliancePki) -> None:
    _assert_refused_before_any_handler(pki.material("coordinator"), _credentials(pki.ca.cert_pem))


def test_client_certificate_of_another_ca_is_refused(pki: AlliancePki) -> None:
    foreign = pki_module.issue(pki_module.init_ca("Other"), role=Role.MEMBER, name="bank-a")
    _assert_refused_before_any_handler(pki.material("coordinator"), _credentials(pki.ca.cert_pem, foreign))


def test_expired_client_certificate_is_refused(pki: AlliancePki) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = pki.issue(Role.MEMBER, "bank-expired", valid_days=1, not_before=long_ago)
    _assert_refused_before_any_handler(pki.material("coordinator"), _credentials(pki.ca.cert_pem, expired))


def test_server_certificate_of_another_ca_is_refused_by_the_client(pki: AlliancePki) -> None:
    other_ca = pki_module.init_ca("Other")
    impostor = pki_module.issue(other_ca, role=Role.COORDINATOR, name="coordinator")
    server = TlsMaterial(ca_cert=pki.ca.cert_pem, cert=impostor.cert_pem, key=impostor.key_pem)
    member = pki.issued["bank-a"]
    _assert_refused_before_any_handler(server, _credentials(pki.ca.cert_pem, member))


def test_server_without_tls_authenticates_nobody(pki: AlliancePki) -> None:
    with run_echo_server(pki.material("coordinator"), insecure=True) as (port, calls):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            error = rpc_error(channel, "Who")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "no client certificate"
    assert calls["Who"] == 0


@pytest.mark.parametrize("method", ["CreateRound", "alliance_psi.v1.Coordinator/CreateRound", "/a/b/c"])
def test_policy_keys_must_be_full_method_names(method: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a full method name"):
        IdentityInterceptor({method: frozenset({Role.ADMIN})})
    with pytest.raises(ConfigurationError, match="access policy for /a.B/C: 'auditor' is not a valid Role"):
        IdentityInterceptor({"/a.B/C": frozenset({"auditor"})})  # type: ignore[arg-type]


@pytest.mark.parametrize("module", ["alliance_psi.services.pki", "alliance_psi.config"])
def test_pki_and_config_import_no_grpc(module: str) -> None:
    code = f"import sys, {module}; print('grpc' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# The PKI itself ------------------------------------------------------------------------------


def _usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.mark.parametrize(("role", "name"), [(Role.MEMBER, "bank-a"), (Role.ADMIN, "admin")])
def test_member_and_admin_certificates_are_for_clients_only(pki: AlliancePki, role: Role, name: str) -> None:
    issued = pki.issued[name]
    assert pki_module.identity_from_pem(issued.cert_pem) == Identity(name=name, role=role)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(f"urn:alliance-psi:{role.value}:{name}")]
    assert _usages(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
    assert cert.serial_number == issued.serial
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(pki.ca.cert_pem))
    assert "key_pem" not in repr(issued) and "PRIVATE" not in repr(pki.ca)


@pytest.mark.parametrize(("role", "name"), [(Role.COORDINATOR, "coordinator"), (Role.CUSTODIAN, "custodian-1")])
def test_server_certificates_serve_as_their_identity_name(pki: AlliancePki, role: Role, name: str) -> None:
    cert = x509.load_pem_x509_certificate(pki.issued[name].cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [
        x509.UniformResourceIdentifier(f"urn:alliance-psi:{role.value}:{name}"),
        x509.DNSName(f"{name}.{role.value}.alliance-psi.internal"),
    ]
    assert pki_module.identity_dns_name(role, name) == f"{name}.{role.value}.alliance-psi.internal"
    assert _usages(cert) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_ca_certificate_is_a_leaf_only_ca() -> None:
    cert = x509.load_pem_x509_certificate(pki_module.init_ca("Rivers").cert_pem)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert cert.subject.rfc4514_string() == "CN=Rivers alliance CA"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"


def _cert_with_uris(ca: pki_module.CertificateAuthority, uris: list[str]) -> bytes:
    """A certificate of ``ca`` with arbitrary SAN URIs, as a buggy or malicious issuer might make."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if uris:
        names = [x509.UniformResourceIdentifier(uri) for uri in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "uris",
    [
        [],
        ["https://bank-a.example"],
        ["urn:alliance-psi:auditor:bank-a"],
        ["urn:alliance-psi:member:bank a"],
        ["urn:alliance-psi:member"],
        ["urn:alliance-psi:member:bank-a", "urn:alliance-psi:admin:bank-a"],
    ],
    ids=["no-san", "foreign-uri", "unknown-role", "bad-name", "no-name", "two-identities"],
)
def test_certificate_without_one_valid_identity_is_not_authenticated(pki: AlliancePki, uris: list[str]) -> None:
    with pytest.raises(NotAuthenticated):
        pki_module.identity_from_pem(_cert_with_uris(pki.ca, uris))


def test_garbage_is_not_authenticated() -> None:
    with pytest.raises(NotAuthenticated, match="not a PEM X.509 certificate"):
        pki_module.identity_from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


@pytest.mark.parametrize("name", ["", "-bank", ".hidden", "bank a", "../ca", "bank/a", "a" * 64, "bank-a\n", "银行"])
def test_bad_names_are_refused_naming_the_rule(pki: AlliancePki, name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        pki_module.issue(pki.ca, role=Role.MEMBER, name=name)
    assert str(info.value).startswith(f"invalid name {name!r}: must match [A-Za-z0-9][A-Za-z0-9._-]{{0,62}}")


def test_unknown_role_is_refused(pki: AlliancePki) -> None:
    message = "^unknown role 'auditor': must be one of admin, coordinator, custodian, member$"
    with pytest.raises(ConfigurationError, match=message):
        pki_module.issue(pki.ca, role="auditor", name="x")  # type: ignore[arg-type]


def test_longest_name_and_custom_hosts_are_accepted(pki: AlliancePki) -> None:
    issued = pki_module.issue(
        pki.ca, role=Role.CUSTODIAN, name="c" * 63, hosts=["Custodian.Example", "10.0.0.7", "::1"]
    )
    assert pki_module.identity_from_pem(issued.cert_pem) == Identity(name="c" * 63, role=Role.CUSTODIAN)
    san = x509.load_pem_x509_certificate(issued.cert_pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == [
        f"{'c' * 63}.custodian.alliance-psi.internal",
        "custodian.example",
    ]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["10.0.0.7", "::1"]
    with pytest.raises(ConfigurationError, match="host 'bad host' is neither an IP address nor a DNS name"):
        pki_module.issue(pki.ca, role=Role.CUSTODIAN, name="c", hosts=["bad host"])


@pytest.mark.parametrize(
    "host", ["alliance-psi.internal", "bank-b.member.alliance-psi.internal", "X.Custodian.Alliance-PSI.Internal"]
)
def test_no_host_may_take_an_identity_name(pki: AlliancePki, host: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        pki_module.issue(pki.ca, role=Role.CUSTODIAN, name="custodian-9", hosts=[host])
    assert str(info.value) == f"host {host.lower()!r} is under alliance-psi.internal, which only identity names may use"


@pytest.mark.parametrize("name", ["Custodian-1", "custodian_1", "custodian.1", "c-"])
def test_a_server_name_must_be_one_lowercase_dns_label(pki: AlliancePki, name: str) -> None:
    # Names differing only in case, or with dots, would share or split one identity name.
    with pytest.raises(ConfigurationError) as info:
        pki_module.issue(pki.ca, role=Role.CUSTODIAN, name=name)
    assert str(info.value) == (
        f"invalid custodian name {name!r}: a server's name is also its TLS name, so it must match "
        "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])? (lowercase letters, digits and '-', not first or last, at most 63)"
    )
    # Client-only roles keep the wider rule: they have no identity name.
    assert pki_module.identity_from_pem(pki_module.issue(pki.ca, role=Role.MEMBER, name=name).cert_pem).name == name


def test_crl_lists_the_union_and_is_checked_against_the_ca(pki: AlliancePki) -> None:
    first = pki_module.revoke(pki.ca, [11, 12])
    both = pki_module.revoke(pki.ca, [12, 13], existing_crl_pem=first)
    assert pki_module.load_crl_serials(both, pki.ca.cert_pem) == frozenset({11, 12, 13})
    forged = pki_module.revoke(pki_module.init_ca("Test"), [99])  # Same CA name, different key.
    with pytest.raises(ConfigurationError, match="CRL is not signed by the alliance CA"):
        pki_module.load_crl_serials(forged, pki.ca.cert_pem)
    with pytest.raises(ConfigurationError, match="CRL is not signed by the alliance CA"):
        pki_module.revoke(pki.ca, [1], existing_crl_pem=forged)
    with pytest.raises(ConfigurationError, match="not a PEM certificate revocation list"):
        pki_module.load_crl_serials(b"nonsense", pki.ca.cert_pem)


def test_writing_refuses_overwrite_and_keeps_keys_private(tmp_path: Path) -> None:
    ca = pki_module.init_ca("Files")
    cert_path, key_path = pki_module.write_ca(ca, tmp_path / "ca")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    with pytest.raises(ConfigurationError, match=f"^{cert_path} already exists"):
        pki_module.write_ca(pki_module.init_ca("Files"), tmp_path / "ca")
    assert pki_module.load_ca(tmp_path / "ca") == ca
    replacement = pki_module.init_ca("Files")
    pki_module.write_ca(replacement, tmp_path / "ca", force=True)
    assert pki_module.load_ca(tmp_path / "ca") == replacement
    assert sorted(os.listdir(tmp_path / "ca")) == ["ca.key", "ca.pem"]  # No temporary file left.


def test_loading_a_ca_names_the_missing_file_and_checks_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"cannot read CA file {tmp_path / 'ca.pem'}: No such file"):
        pki_module.load_ca(tmp_path)
    pki_module.write_ca(pki_module.init_ca("A"), tmp_path)
    (tmp_path / "ca.key").write_bytes(pki_module.init_ca("B").key_pem)
    with pytest.raises(ConfigurationError, match="CA key does not match the CA certificate"):
        pki_module.load_ca(tmp_path)


def test_tls_config_loads_files_and_names_the_missing_one(pki: AlliancePki) -> None:
    config = pki.tls_config("bank-a")
    assert config.load() == pki.material("bank-a")
    assert "PRIVATE" not in repr(config.load())
    missing = TlsConfig(ca_cert=config.ca_cert, cert=config.cert, key=pki.directory / "nobody.key")
    with pytest.raises(ConfigurationError) as info:
        missing.load()
    assert str(info.value) == f"TLS option 'key': file not found: {pki.directory / 'nobody.key'}"
    not_pem = TlsConfig(ca_cert=config.ca_cert, cert=config.cert, key=config.key, crl=pki.directory)
    with pytest.raises(ConfigurationError, match=f"^TLS option 'crl': cannot read {pki.directory}: Is a directory$"):
        not_pem.load()
