"""docker-compose.yml: every server serves its plain health port where its health check and
Prometheus look for it, and nothing is published beyond this machine."""

from __future__ import annotations

import re

import yaml

from tests.deploy.manifests import ROOT, compose_services

SERVERS = ("coordinator", "custodian-1", "custodian-2")


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
            assert "ca" not in volumes and "custodian-2-ca" not in volumes, name
