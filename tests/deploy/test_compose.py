"""docker-compose.yml: every server and member node serves its plain health port where its health
check and Prometheus look for it, the members run `node run` against a 2-of-3 threshold epoch, and
nothing is published beyond this machine."""

from __future__ import annotations

import re

import yaml

from tests.deploy.manifests import ROOT, compose_services

CUSTODIANS = ("custodian-1", "custodian-2", "custodian-3")
MEMBERS = ("bank-a", "bank-b", "bank-c")
SERVERS = ("coordinator", *CUSTODIANS, *MEMBERS)


def _metrics_port(service: dict[str, object]) -> int:
    (listen,) = [word for word in service["command"] if str(word).startswith("--metrics-listen=")]  # type: ignore[attr-defined]
    match = re.fullmatch(r"--metrics-listen=\$\{ALLIANCE_PSI_BIND:-0\.0\.0\.0\}:(\d+)", listen)
    assert match, listen
    return int(match.group(1))


def test_health_checks_and_prometheus_read_each_servers_metrics_port() -> None:
    services = compose_services()
    ports = {name: _metrics_port(services[name]) for name in SERVERS}
    assert len(set(ports.values())) == len(SERVERS)  # Distinct: the test runs them on one host network.
    for name, port in ports.items():
        assert services[name]["environment"]["ALLIANCE_PSI_HEALTH_URL"] == f"http://127.0.0.1:{port}/readyz"
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:{port}" for name, port in ports.items()}
    assert services["prometheus"]["profiles"] == ["metrics"]


def test_only_prometheus_is_published_and_only_on_loopback() -> None:
    published = {name: service["ports"] for name, service in compose_services().items() if "ports" in service}
    assert published == {"prometheus": ["127.0.0.1:9090:9090"]}


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
    init = (ROOT / "deploy" / "compose" / "init-alliance.sh").read_text(encoding="utf-8")
    assert 'custodian deal --epoch "$EPOCH" --threshold 2' in init
    assert "init-share" not in init
    for custodian in CUSTODIANS:
        assert f'"{custodian}@{custodian}:' in init, custodian  # Every member's node.toml lists it.
    assert 'epoch-file = "$EPOCH.json"' in init
