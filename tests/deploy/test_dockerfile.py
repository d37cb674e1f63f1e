"""The Dockerfile passes hadolint, and keeps the promises the image makes (docs: README, "Run with containers")."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.deploy.manifests import ROOT, venv_tool

DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_passes_at_every_severity() -> None:
    done = subprocess.run(
        [venv_tool("hadolint"), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_root_runtime(tmp_path: Path) -> None:
    # The check above can fail: the same file with its last USER as root is refused (DL3002).
    text = DOCKERFILE.read_text(encoding="utf-8").replace("USER 10001:10001", "USER root")
    broken = tmp_path / "Dockerfile"
    broken.write_text(text, encoding="utf-8")
    done = subprocess.run([venv_tool("hadolint"), str(broken)], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "DL3002" in done.stdout


def _stages() -> dict[str, str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    parts = re.split(r"^FROM \$\{BASE\} AS (\w+)\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_runtime_stage_is_non_root_without_compiler_and_runs_alliance_psi() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG BASE=debian:bookworm-slim$", text, flags=re.MULTILINE)
    stages = _stages()
    assert list(stages) == ["builder", "runtime"]
    runtime = stages["runtime"]
    assert "COPY --from=builder /opt/alliance-psi /opt/alliance-psi" in runtime
    assert re.search(r"^USER 10001:10001$", runtime, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["alliance-psi"]' in runtime
    assert 'alliance-psi health --url \\"$ALLIANCE_PSI_HEALTH_URL\\"' in runtime
    installed = re.findall(r"apt-get install[^&]*", runtime)
    assert installed and all(not re.search(r"\b(gcc|g\+\+|build-essential|clang|python3-dev)\b", i) for i in installed)
