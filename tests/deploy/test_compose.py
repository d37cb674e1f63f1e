"""docker-compose.yml: every server and member node serves its plain health port where its health
check and Prometheus look for it, the members run `node run` against a 2-of-3 threshold epoch,
nothing is published beyond this machine, and the networks keep each party to its part: a member
reaches the coordinator's and custodians' gRPC ports and nothing else (neither PostgreSQL nor any
party's metrics port, nor Prometheus). `make container-test` tries the same from inside the
containers."""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from tests.deploy.manifests import COMPOSE, ROOT, compose_file, compose_services

CUSTODIANS = ("custodian-1", "custodian-2", "custodian-3")
MEMBERS = ("bank-a", "bank-b", "bank-c")
SERVERS = ("coordinator", *CUSTODIANS, *MEMBERS)
GRPC = {"coordinator": 7100, "custodian-1": 7101, "custodian-2": 7102, "custodian-3": 7103}
EVERY_ADDRESS = ("0.0.0.0", "[::]", "::")
LISTEN_OPTIONS = ("--listen=", "--metrics-listen=", "--web.listen-address=")


def _metrics_listen(service: dict[str, Any]) -> tuple[str, int]:
    (listen,) = [str(word) for word in service["command"] if str(word).startswith("--metrics-listen=")]
    match = re.fullmatch(r"--metrics-listen=([a-z0-9-]+):(\d+)", listen)
    assert match, listen
    return match.group(1), int(match.group(2))


def _networks(service: dict[str, Any]) -> dict[str, list[str]]:
    """The service's networks, each with the aliases it has there."""
    networks = service.get("networks", {})
    if isinstance(networks, list):
        return {name: [] for name in networks}
    return {name: list((settings or {}).get("aliases", [])) for name, settings in networks.items()}


def _listeners(name: str, service: dict[str, Any]) -> set[tuple[str | None, int]]:
    """(network, port) of every port the service listens on; network None: on each of its networks.
    A host other than the unspecified address must be the service's alias on exactly one network."""
    if name == "postgres":
        return {(None, 5432)}
    found = set()
    for word in (str(w) for w in service.get("command", [])):
        if not word.startswith(LISTEN_OPTIONS):
            continue
        host, _, port = word.partition("=")[2].rpartition(":")
        if host in EVERY_ADDRESS:
            found.add((None, int(port)))
            continue
        (network,) = [net for net, aliases in _networks(service).items() if host in aliases]
        found.add((network, int(port)))
    return found


def _reachable(compose: dict[str, Any], source: str) -> set[tuple[str, int]]:
    """(service, port) that ``source``'s container can connect to: a port served on a network it
    shares (every network of a service listening on the unspecified address)."""
    services = compose["services"]
    own = set(_networks(services[source]))
    reached = set()
    for name, service in services.items():
        if name == source:
            continue
        theirs = set(_networks(service))
        for network, port in _listeners(name, service):
            if (network is None and own & theirs) or network in own:
                reached.add((name, port))
    return reached


def test_a_member_reaches_the_servers_grpc_ports_and_nothing_else() -> None:
    compose = compose_file()
    for member in MEMBERS:
        assert _reachable(compose, member) == set(GRPC.items()), member


def test_only_the_coordinator_and_init_reach_postgresql() -> None:
    compose = compose_file()
    reaching = {name for name in compose["services"] if ("postgres", 5432) in _reachable(compose, name)}
    assert reaching == {"coordinator", "init"}
    assert _networks(compose["services"]["postgres"]) == {"database": []}


def test_each_partys_metrics_port_is_reached_by_prometheus_alone_and_prometheus_by_nobody() -> None:
    compose = compose_file()
    for party in SERVERS:
        port = _metrics_listen(compose["services"][party])[1]
        reaching = {name for name in compose["services"] if (party, port) in _reachable(compose, name)}
        assert reaching == {"prometheus"}, party
    assert not any(("prometheus", 9090) in _reachable(compose, name) for name in compose["services"])
    assert set(_networks(compose["services"]["prometheus"])["prometheus"]) == {"prometheus-web"}


def test_the_reachability_model_sees_a_member_put_on_the_database_network() -> None:
    # The checks above can fail: a member given the database network reaches PostgreSQL, and a
    # custodian serving its metrics on every address is reached by every member.
    compose = copy.deepcopy(compose_file())
    compose["services"]["bank-b"]["networks"]["database"] = {}
    compose["services"]["custodian-1"]["command"] = [
        "--metrics-listen=0.0.0.0:9465" if str(word).startswith("--metrics-listen=") else word
        for word in compose["services"]["custodian-1"]["command"]
    ]
    assert _reachable(compose, "bank-b") == {*GRPC.items(), ("postgres", 5432), ("custodian-1", 9465)}
    assert ("custodian-1", 9465) in _reachable(compose, "bank-a")


def test_the_networks_that_keep_parties_apart_are_internal_and_the_others_isolated() -> None:
    # podman (netavark before 2.0) routes between its bridges unless a network is internal, or
    # both are `isolate`d; Docker keeps bridges apart itself.
    networks = compose_file()["networks"]
    internal = {name for name, settings in networks.items() if (settings or {}).get("internal")}
    assert internal == {"database", *(f"metrics-{party}" for party in SERVERS)}
    for name in set(networks) - internal:
        assert networks[name]["driver_opts"] == {"isolate": "true"}, name


def test_health_checks_and_prometheus_read_each_servers_metrics_port() -> None:
    services = compose_services()
    for name in SERVERS:
        host, port = _metrics_listen(services[name])
        assert host == f"{name}-metrics" and _networks(services[name])[f"metrics-{name}"] == [host], name
        # The image's HEALTHCHECK runs inside the container: its own address on that network.
        assert services[name]["environment"]["ALLIANCE_PSI_HEALTH_URL"] == f"http://{host}:{port}/readyz"
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    assert targets == {"{}:{}".format(*_metrics_listen(services[name])) for name in SERVERS}
    assert services["prometheus"]["profiles"] == ["metrics"]


def test_only_prometheus_is_published_and_only_on_loopback() -> None:
    published = {name: service["ports"] for name, service in compose_services().items() if "ports" in service}
    assert published == {"prometheus": ["127.0.0.1:9090:9090"]}


def test_the_database_password_must_be_set_and_stays_out_of_git() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    uses = re.findall(r"\$\{POSTGRES_PASSWORD[^}]*\}", text)
    assert len(uses) == 3 and set(uses) == {
        "${POSTGRES_PASSWORD:?put a random one in .env beside docker-compose.yml (README.md, Run with containers)}"
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Run with containers") :]
    assert section.index("> .env") < section.index("docker compose up")
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_only_init_mounts_the_certificate_authorities() -> None:
    for name, service in compose_services().items():
        volumes = [str(v).split(":")[0] for v in service.get("volumes", [])]
        if name != "init":
            assert not {"ca", "custodian-2-ca", "custodian-3-ca"} & set(volumes), name


def test_members_run_the_node_and_custodians_serve_the_threshold_epoch() -> None:
    services = compose_services()
    for member in MEMBERS:
        command = services[member]["command"]
        assert command[:2] == ["node", "run"] and "--config=node.toml" in command, member
        assert "entrypoint" not in services[member], member
        assert set(services[member]["depends_on"]) == {"init", "coordinator", *CUSTODIANS}, member
    for custodian in CUSTODIANS:
        command = services[custodian]["command"]
        assert "--epoch-file=${ALLIANCE_PSI_EPOCH:-local-epoch}.json" in command, custodian
        assert f"--listen=0.0.0.0:{GRPC[custodian]}" in command, custodian
    init = (ROOT / "deploy" / "compose" / "init-alliance.sh").read_text(encoding="utf-8")
    assert 'custodian deal --epoch "$EPOCH" --threshold 2' in init
    assert "init-share" not in init
    for custodian in CUSTODIANS:
        assert f'"{custodian}@{custodian}:{GRPC[custodian]}' in init, custodian  # Every member's node.toml.
    assert 'epoch-file = "$EPOCH.json"' in init
