"""deploy/kubernetes: every overlay renders and validates offline against the Kubernetes schemas,
and keeps the promises deploy/README.md makes (restricted pods, limits, probes, network policies;
in production each party renders its own part and nothing of another's)."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.manifests import KUSTOMIZE, OVERLAYS, PRODUCTION_PARTS, pod_specs, render

KUBERNETES_VERSION = "1.33"  # The oldest release still supported upstream when this was written.
# The workloads each overlay renders: dev all of them, each production part its own only.
WORKLOADS = {
    "dev": {
        "Deployment/coordinator",
        "Deployment/custodian-1",
        "Deployment/custodian-2",
        "Deployment/custodian-3",
        "StatefulSet/member-node",
        "StatefulSet/postgres",
    },
    "production/operator": {"Deployment/coordinator"},
    "production/custodian": {"Deployment/custodian-1"},
    "production/member": {"StatefulSet/member-node"},
}
IMAGES = {"dev": "localhost/alliance-psi:latest"} | dict.fromkeys(
    PRODUCTION_PARTS, "registry.example/alliance-psi:0.1.0"
)
SERVERS = ("coordinator", "custodian-1", "custodian-2", "custodian-3")


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(KUSTOMIZE / "overlays" / request.param)


def _validate(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    return problems


def _policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc["spec"] for doc in docs if doc["kind"] == "NetworkPolicy"}


def _servers(docs: list[dict[str, Any]]) -> list[str]:
    return [name for name in SERVERS if f"Deployment/{name}" in dict(pod_specs(docs))]


def test_every_manifest_validates_against_the_schemas(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    kinds = {doc["kind"] for doc in docs}
    assert {"Namespace", "NetworkPolicy"} <= kinds, kinds
    assert _validate(docs) == [], name


def test_each_party_renders_its_own_part_and_nothing_of_anothers(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = overlay
    assert set(dict(pod_specs(docs))) == WORKLOADS[name]
    # No object of another part either: a Service, policy or config only of workloads rendered here.
    services = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "Service"}
    assert services == {workload.split("/")[1] for workload in WORKLOADS[name]} - {"member-node"}
    configs = {doc["metadata"]["name"].rsplit("-", 1)[0] for doc in docs if doc["kind"] == "ConfigMap"}
    assert ("member-node-config" in configs) is ("StatefulSet/member-node" in WORKLOADS[name])
    policies = _policies(docs)
    assert ("member-egress" in policies) is ("StatefulSet/member-node" in WORKLOADS[name])
    assert ("servers-ingress" in policies) is bool(_servers(docs))
    assert {p for p in policies if p.endswith("-egress") and p != "member-egress"} == {
        f"{server}-egress" for server in _servers(docs)
    }


def test_two_parts_applied_to_one_namespace_agree() -> None:
    # The operator that runs custodian-1 applies production/operator and production/custodian to
    # one namespace: what both render (the namespace, the shared policies) must be the same.
    seen: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    shared = 0
    for part in PRODUCTION_PARTS:
        for doc in render(KUSTOMIZE / "overlays" / part):
            key = (doc["kind"], doc["metadata"]["name"])
            if key in seen:
                shared += 1
                assert doc == seen[key][1], f"{key} differs between {seen[key][0]} and {part}"
            seen[key] = (part, doc)
    assert shared >= 5


def test_every_alliance_psi_container_runs_the_overlays_image(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    for workload, spec in pod_specs(docs):
        for container in _containers(spec):
            if "postgres" not in container["image"]:
                assert container["image"] == IMAGES[name], f"{workload} {container['name']}"


def test_validation_refuses_a_field_kubernetes_does_not_know(tmp_path: Path) -> None:
    # The check above can fail: an overlay with a misspelt field renders, and is refused.
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUSTOMIZE, tree)
    patch = tree / "overlays" / "dev" / "kustomization.yaml"
    replicas = "      - {op: replace, path: /spec/replicas, value: 1}\n"
    assert replicas in patch.read_text(encoding="utf-8")
    patch.write_text(
        patch.read_text(encoding="utf-8").replace(
            replicas, replicas + "      - {op: add, path: /spec/replica, value: 1}\n"
        )
    )
    docs = [d for d in render(tree / "overlays" / "dev") if d["metadata"]["name"] == "custodian-1"]
    problems = _validate(docs)
    assert len(problems) == 1 and problems[0].startswith("Deployment/custodian-1:"), problems
    assert "replica" in problems[0]


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_pod_meets_the_restricted_pod_security_standard(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    namespaces = [doc for doc in docs if doc["kind"] == "Namespace"]
    assert [ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] for ns in namespaces] == ["restricted"]
    for workload, spec in pod_specs(docs):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, workload
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, workload
        assert spec["automountServiceAccountToken"] is False, workload
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), workload
        for container in _containers(spec):
            context = container["securityContext"]
            where = f"{workload} {container['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert "privileged" not in context, where


def test_every_container_has_requests_and_limits_and_every_server_probes(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    for workload, spec in pod_specs(docs):
        for container in _containers(spec):
            resources = container["resources"]
            assert set(resources) == {"requests", "limits"}, workload
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


def test_servers_probe_and_expose_the_plain_health_port_to_monitoring_only(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    servers = 0
    for doc in docs:
        if doc["kind"] != "Deployment" or doc["metadata"]["name"] not in SERVERS:
            continue
        servers += 1
        template = doc["spec"]["template"]
        assert template["metadata"]["annotations"] == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9464",
            "prometheus.io/path": "/metrics",
        }
        (container,) = template["spec"]["containers"]
        assert "--metrics-listen=0.0.0.0:9464" in container["args"]
        assert {"name": "metrics", "containerPort": 9464} in container["ports"]
        probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes == {
            "startupProbe": {"path": "/readyz", "port": "metrics"},
            "livenessProbe": {"path": "/healthz", "port": "metrics"},
            "readinessProbe": {"path": "/readyz", "port": "metrics"},
        }
    assert servers == len(_servers(docs))
    policies = _policies(docs)
    (metrics,) = policies["metrics-ingress"]["ingress"]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    opened = [port["port"] for spec in policies.values() for rule in spec.get("ingress", []) for port in rule["ports"]]
    assert opened.count(9464) == 1  # Only the policy above opens the unauthenticated port.


def test_every_egress_rule_names_where_it_goes(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    # A rule without `to` (or with a block of every address) lets its pods reach any host on its ports.
    _, docs = overlay
    for name, spec in _policies(docs).items():
        for rule in spec.get("egress", []):
            assert rule.get("to") and rule.get("ports"), name
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    assert "except" not in peer["ipBlock"], name
                    assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen >= 24, name


def test_each_server_reaches_its_own_database_only(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    policies = _policies(docs)
    for server in _servers(docs):
        spec = policies[f"{server}-egress"]
        assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": server}}, server
        (rule,) = spec["egress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 5432}], server
        (peer,) = rule["to"]
        if name == "dev":  # The dev overlay's own PostgreSQL, by its pods' label.
            assert peer == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgres"}}}, server
        else:  # The party's database outside the cluster, by its address.
            assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen == 32, server
    # No other policy lets a server (or every pod) out, but name resolution.
    for policy, spec in policies.items():
        if "Egress" in spec["policyTypes"] and policy not in ("dns", "default-deny", "member-egress"):
            assert policy.removesuffix("-egress") in SERVERS and spec["podSelector"] != {}, policy


def test_members_reach_only_the_coordinator_and_custodians(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    policies = _policies(docs)
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    if "member-egress" not in policies:
        return
    member = policies["member-egress"]
    assert member["podSelector"] == {"matchLabels": {"alliance-psi/role": "member"}}
    if name == "dev":  # The servers in the same namespace, by their pods' labels.
        reached = {
            (tuple(sorted(rule["to"][0]["podSelector"]["matchLabels"].items())), port["port"])
            for rule in member["egress"]
            for port in rule["ports"]
        }
        assert reached == {
            ((("app.kubernetes.io/name", "coordinator"),), 7100),
            ((("app.kubernetes.io/component", "custodian"),), 7101),
        }
    else:  # A member's own cluster: the servers' published addresses, each on its gRPC port.
        import tomllib

        (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("member-node")]
        node = tomllib.loads(config["data"]["node.toml"])["node"]
        ports = {int(node["coordinator"].rsplit(":", 1)[1])}
        ports |= {int(entry.split(",")[0].rsplit(":", 1)[1]) for entry in node["custodian"]}
        assert [rule["ports"] for rule in member["egress"]] == [[{"protocol": "TCP", "port": p}] for p in sorted(ports)]
        assert all([set(peer) for peer in rule["to"]] == [{"ipBlock"}] for rule in member["egress"])
    # No other policy opens egress to member pods beyond name resolution.
    for policy, spec in policies.items():
        if policy not in ("member-egress", "dns", "default-deny") and "Egress" in spec["policyTypes"]:
            assert spec["podSelector"] != {} and spec["podSelector"] != member["podSelector"], policy


def test_the_database_url_comes_from_a_secret_and_postgresql_only_in_dev(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = overlay
    workloads = dict(pod_specs(docs))
    for workload in (f"Deployment/{server}" for server in _servers(docs)):
        container = workloads[workload]["containers"][0]
        assert "--database=$(DATABASE_URL)" in container["args"]
        (env,) = [e for e in container["env"] if e["name"] == "DATABASE_URL"]
        assert set(env["valueFrom"]) == {"secretKeyRef"}
    assert ("StatefulSet/postgres" in workloads) is (name == "dev")


def test_each_custodian_serves_the_threshold_epoch_behind_a_headless_service_of_its_own(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    import tomllib

    name, docs = overlay
    custodians = {
        doc["metadata"]["name"]: doc
        for doc in docs
        if doc["kind"] == "Deployment" and doc["metadata"]["labels"].get("app.kubernetes.io/component") == "custodian"
    }
    expected = {w.split("/")[1] for w in WORKLOADS[name] if w.startswith("Deployment/custodian-")}
    assert set(custodians) == expected
    services = {doc["metadata"]["name"]: doc["spec"] for doc in docs if doc["kind"] == "Service"}
    for custodian, doc in custodians.items():
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        assert f"--name={custodian}" in container["args"]
        assert "--epoch-file=/etc/alliance-psi/tls/epoch.json" in container["args"]
        assert f"--cert=/etc/alliance-psi/tls/{custodian}.pem" in container["args"]
        assert ("--own-ca=/etc/alliance-psi/tls/own-ca.pem" in container["args"]) is (custodian != "custodian-1")
        secrets = {v["secret"]["secretName"] for v in doc["spec"]["template"]["spec"]["volumes"] if "secret" in v}
        assert secrets == {f"{custodian}-tls", f"{custodian}-private"}
        # Headless: the name resolves to every ready replica, and selects this custodian's pods only.
        assert services[custodian]["clusterIP"] == "None"
        assert services[custodian]["selector"] == {"app.kubernetes.io/name": custodian}
        assert doc["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": custodian}
    if "StatefulSet/member-node" not in WORKLOADS[name]:
        return
    (config,) = [
        doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("member-node")
    ]
    node = tomllib.loads(config["data"]["node.toml"])["node"]
    assert node["epoch-file"] == "epoch.json"
    listed = [entry.split("@")[0] for entry in node["custodian"]]
    assert listed == ["custodian-1", "custodian-2", "custodian-3"]
    # One address per custodian (its Service's name), never a list of pod addresses.
    assert all("+" not in entry for entry in node["custodian"])
    if name == "dev":
        assert [entry.split("@")[1].split(":")[0] for entry in node["custodian"]] == listed


@pytest.mark.parametrize("name", [name for name, kinds in WORKLOADS.items() if "StatefulSet/member-node" in kinds])
def test_the_member_node_runs_node_run_with_probes_on_its_metrics_port(name: str) -> None:
    docs = render(KUSTOMIZE / "overlays" / name)
    (node,) = [doc for doc in docs if doc["kind"] == "StatefulSet" and doc["metadata"]["name"] == "member-node"]
    template = node["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert "command" not in container  # The image's entry point: alliance-psi.
    assert container["args"][:2] == ["node", "run"]
    assert "--metrics-listen=0.0.0.0:9464" in container["args"] and "--create-database" in container["args"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9464"
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes == {
        "startupProbe": {"path": "/readyz", "port": "metrics"},
        "livenessProbe": {"path": "/healthz", "port": "metrics"},
        "readinessProbe": {"path": "/readyz", "port": "metrics"},
    }
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in docs if doc["kind"] == "NetworkPolicy"}
    selector = policies["metrics-ingress"]["podSelector"]
    assert selector == {
        "matchExpressions": [{"key": "alliance-psi/role", "operator": "In", "values": ["server", "member"]}]
    }
