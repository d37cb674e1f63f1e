"""Drift: every `alliance-psi` command line in docker-compose.yml, the Kubernetes manifests and the
container scripts names a command and options that exist, found by walking the click tree."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from alliance_psi.cli.main import main
from tests.deploy.manifests import KUSTOMIZE, OVERLAYS, ROOT, compose_services, pod_specs, render

SCRIPTS = (
    ROOT / "deploy" / "compose" / "init-alliance.sh",
    ROOT / "scripts" / "container_test.sh",
)


def problems_of(argv: list[str]) -> list[str]:
    """What in ``argv`` (the words after ``alliance-psi``) the CLI does not have."""
    command: click.Command = main
    ctx = click.Context(main, info_name="alliance-psi")
    words = list(argv)
    path = ["alliance-psi"]
    while True:
        positional = []
        while words:
            word = words.pop(0)
            if word == "--":
                positional += words
                break
            if word.startswith("-") and word != "-":
                name, has_value, _ = word.partition("=")
                option = next((p for p in command.params if name in (*p.opts, *p.secondary_opts)), None)
                if option is None:
                    return [f"{' '.join(path)}: no option {name}"]
                if isinstance(option, click.Option) and option.is_eager and option.is_flag:
                    return []  # --version, --help: nothing after them runs.
                takes_value = isinstance(option, click.Option) and not option.is_flag and not option.count
                if takes_value and not has_value and words:
                    words.pop(0)
                continue
            positional.append(word)
            if isinstance(command, click.Group):
                break
        if not isinstance(command, click.Group):
            return []
        if not positional:
            return [f"{' '.join(path)}: no command given"]
        sub = command.get_command(ctx, positional[0])
        if sub is None:
            return [f"{' '.join(path)}: no command {positional[0]}"]
        path.append(positional[0])
        ctx = click.Context(sub, parent=ctx, info_name=positional[0])
        command = sub


def _words(text: str) -> list[str]:
    """Shell words of ``text`` up to the first operator (``;``, ``&&``, ``|``, ``>``, ``)``...)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    words: list[str] = []
    try:
        for word in lexer:
            if word and set(word) <= set(";&|<>()"):
                break
            words.append(word)
    except ValueError:  # A quote that closes before the command started: `sh -c '... alliance-psi --version'`.
        return _words(text[: max(text.rfind("'"), text.rfind('"'))])
    return words


def _script_command_lines(path: Path, text: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """Each ``alliance-psi ...`` of a shell script (continuation lines joined), and each command it
    has the compose file's ``operator`` service run."""
    text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8") if text is None else text)
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"(?:^|[\s;&|(])alliance-psi\s+(.*)", line):
            yield f"{path.relative_to(ROOT)}:{number}", _words(match.group(1))
        operator = re.search(r" run --rm (?:--no-deps )?operator (.*)", line)
        if operator:
            yield f"{path.relative_to(ROOT)}:{number}", _words(operator.group(1))


def command_lines() -> Iterator[tuple[str, list[str]]]:
    """Every alliance-psi command line the deployment files run, with where it is."""
    for name, service in compose_services().items():
        ours = str(service.get("image", "")).startswith("${ALLIANCE_PSI_IMAGE")  # Not PostgreSQL's or Prometheus's.
        if ours and "entrypoint" not in service and "command" in service:
            yield f"docker-compose.yml service {name}", [str(word) for word in service["command"]]
    for overlay in OVERLAYS:
        for workload, spec in pod_specs(render(KUSTOMIZE / "overlays" / overlay)):
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                if container["image"].split("/")[-1].startswith("alliance-psi") and "command" not in container:
                    yield f"{overlay} {workload} {container['name']}", list(container["args"])
    for script in SCRIPTS:
        yield from _script_command_lines(script)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Run with containers") :]
    blocks = re.findall(r"```sh\n(.*?)```", section[: section.index("\n## ", 1)], flags=re.DOTALL)
    yield from _script_command_lines(ROOT / "README.md", "".join(blocks))


LINES = list(command_lines())


def test_the_deployment_files_run_commands() -> None:
    where = {place.split(":")[0].split(" service ")[0] for place, _ in LINES}
    assert {
        "docker-compose.yml",
        "deploy/compose/init-alliance.sh",
        "README.md",
    } <= where
    assert any(place.startswith("production/custodian Deployment/custodian-1") for place, _ in LINES)
    assert len(LINES) >= 25, LINES


@pytest.mark.parametrize(("place", "argv"), LINES, ids=[place for place, _ in LINES])
def test_every_command_and_option_exists(place: str, argv: list[str]) -> None:
    assert problems_of(argv) == [], f"{place}: alliance-psi {' '.join(argv)}"


def test_the_walk_finds_a_missing_command_or_option() -> None:
    assert problems_of(["coordinator", "serve", "--listen=0.0.0.0:7100", "--tick", "1"]) == []
    assert problems_of(["node", "--config", "node.toml", "join", "R", "--wait", "0"]) == []
    assert problems_of(["node", "run", "--config", "node.toml"]) == []
    assert problems_of(["node", "watch", "--config", "node.toml"]) == ["alliance-psi node: no command watch"]
    assert problems_of(["custodian", "serve", "--key-shares=x"]) == [
        "alliance-psi custodian serve: no option --key-shares"
    ]
    assert problems_of(["coordinator", "round", "create", "--treshold", "2"]) == [
        "alliance-psi coordinator round create: no option --treshold"
    ]
    assert problems_of(["pki"]) == ["alliance-psi pki: no command given"]
    assert problems_of(["--version"]) == []
