"""The README's production walkthrough, run as written, in order, to a verified report.

Every fenced block of the README's "A real deployment, by role" section is used, in order, in an
empty folder: a ```sh block's commands run in bash with this package's ``alliance-psi`` first on
PATH (a command ending in ``\\`` continues on the next line; lines starting with ``#`` are
comments); a ``serve`` command runs in the background, as its own process, until the test ends;
any other block (```toml, ```csv) is written to the file named by the last ```path```: just before it.
``alliance-psi node run`` runs in the background too, until the test ends; after each step the test
waits, as a person reading its log would, until the node has taken every file of its inbox. A
command ending in `` &`` runs in the background, as bash runs it, and ``wait`` waits for every one
of them, each of which must exit 0 (stricter than bash's ``wait``).

Substituted, and nothing else:

- ports 7100 to 7103: a server's ``--listen HOST:71xx`` becomes ``--listen 127.0.0.1:0`` (loopback,
  a free port the kernel picks), and every later ``NAME:71xx`` gets the port that server reported;
- ports 7200 to 7299 (the custodians' key ceremony, ``custodian keygen``): each gets a free loopback
  port the first time it appears, the same in its ``--listen 127.0.0.1:PORT`` and every address;
- host names ``*.example`` in addresses become ``localhost``, which resolves on loopback (clients
  check a server's identity name, not the name they dial, so certificates need no change).

The README's own words are the test's input: a command that fails, a file that is not where a
later command looks, or an address no server listens on fails this test with the command and its
output.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## A real deployment, by role"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_FILE_NAME = re.compile(r"`([^`\s]+)`[^`]*:\s*\Z")
_LISTEN = re.compile(r"--listen \S+:(71\d\d)\b")
_CEREMONY_LISTEN = re.compile(r"--listen \S+:(72\d\d)\b")
_ADDRESS = re.compile(r"\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.example:(7[12]\d\d)\b")
_PORT = re.compile(r"serving.* on port (\d+)")
_NODE_RUN = re.compile(r"^alliance-psi node run --config (\S+)/node\.toml\b")
_NODE_READY = re.compile(r"node run: member (\S+), inbox")


@dataclass(frozen=True)
class Step:
    """A command to run, or a file to write."""

    text: str
    file: str | None = None


def walkthrough(readme: str) -> list[Step]:
    """The section's blocks as steps, in order."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else len(readme)]
    steps: list[Step] = []
    previous_end = 0
    for block in _BLOCK.finditer(section):
        language, body = block.group(1), block.group(2)
        before = section[previous_end : block.start()].rstrip()
        previous_end = block.end()
        if language == "sh":
            steps += [Step(command) for command in commands(body)]
            continue
        named = _FILE_NAME.search(before)
        assert named, f"the ```{language} block after {before[-80:]!r} does not follow a sentence naming its file"
        steps.append(Step(body, file=named.group(1)))
    return steps


def commands(body: str) -> Iterator[str]:
    """The commands of a shell block: continuation lines joined, blank and comment lines left out."""
    pending = ""
    for raw in body.splitlines():
        line = f"{pending} {raw.strip()}" if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if line and not line.startswith("#"):
            yield line
    assert not pending, f"a shell block ends in a continuation: {pending!r}"


@dataclass
class Server:
    """A ``serve`` command running in the background in its own process group."""

    command: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def wait_for_port(self, timeout: float = 120, ready: re.Pattern[str] = _PORT) -> int:
        """The port it reports (for ``node run``, 0 once it says it runs)."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            if found := ready.search(line):
                threading.Thread(target=self._drain, daemon=True).start()
                return int(found.group(1)) if ready is _PORT else 0
        self.stop()
        pytest.fail(f"`{self.command}` did not start:\n{''.join(self.lines[-30:])}", pytrace=False)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


class Walkthrough:
    """Runs steps in ``folder`` with the substitutions of the module docstring."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports: dict[str, int] = {}
        self.servers: list[Server] = []
        self.outputs: list[tuple[str, str]] = []
        self.inboxes: list[Path] = []  # Those of the running ``node run`` processes.
        self.jobs: list[tuple[str, subprocess.Popen[str]]] = []  # Commands ending in `` &``, not yet waited for.
        bin_dir = Path(sys.executable).parent
        assert (bin_dir / "alliance-psi").exists(), f"no alliance-psi next to {sys.executable}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_PSI_")}
        self.env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}

    def substitute(self, text: str) -> str:
        def ceremony_port(port: str) -> int:
            if port not in self.ports:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", 0))
                    self.ports[port] = probe.getsockname()[1]
            return self.ports[port]

        def address(found: re.Match[str]) -> str:
            port = found.group(1)
            if port.startswith("72"):
                return f"localhost:{ceremony_port(port)}"
            assert port in self.ports, f"{found.group(0)} is used before any server listens on port {port}"
            return f"localhost:{self.ports[port]}"

        text = _CEREMONY_LISTEN.sub(lambda found: f"--listen 127.0.0.1:{ceremony_port(found.group(1))}", text)
        return _ADDRESS.sub(address, text)

    def run(self, step: Step) -> None:
        if step.file is not None:
            path = self.folder / step.file
            assert path.parent.is_dir(), f"{step.file}: the walkthrough has not created {path.parent.name}/ yet"
            path.write_text(self.substitute(step.text), encoding="utf-8")
            return
        listen = _LISTEN.search(step.text)
        if listen and re.match(r"alliance-psi \S+ serve\b", step.text):
            self.serve(step.text, listen.group(1))
            return
        if node := _NODE_RUN.match(step.text):
            self.serve(step.text, None)
            self.inboxes.append(self.folder / node.group(1) / "inbox")
            return
        if step.text.endswith(" &"):
            job = subprocess.Popen(
                ["bash", "-c", "exec " + self.substitute(step.text[:-1].rstrip())],
                cwd=self.folder,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            self.jobs.append((step.text, job))
            return
        if step.text == "wait":
            self.wait()
            return
        command = self.substitute(step.text)
        done = subprocess.run(
            ["bash", "-c", command],
            check=False,
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (
            f"README command failed (exit {done.returncode}):\n  {step.text}\nran as:\n  {command}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\n" + self.server_logs()
        )
        self.outputs.append((step.text, done.stdout + done.stderr))
        for inbox in self.inboxes:
            self.wait_for_inbox(inbox)

    def wait(self) -> None:
        """Wait for every background command; each must exit 0. Their outputs count as commands'."""
        jobs, self.jobs = self.jobs, []
        for command, job in jobs:
            out, err = job.communicate(timeout=600)
            assert job.returncode == 0, (
                f"README command failed (exit {job.returncode}):\n  {command}\nstdout:\n{out}\nstderr:\n{err}"
            )
            self.outputs.append((command, out + err))

    def wait_for_inbox(self, inbox: Path, timeout: float = 300) -> None:
        """Wait until ``node run`` has taken every file of ``inbox`` (to done/ or failed/)."""
        deadline = time.monotonic() + timeout
        while any(p.is_file() and not p.name.startswith(".") for p in inbox.iterdir()):
            assert time.monotonic() < deadline, f"{inbox} still holds files:\n{self.server_logs()}"
            time.sleep(0.2)

    def serve(self, command: str, readme_port: str | None) -> None:
        command = self.substitute(_LISTEN.sub("--listen 127.0.0.1:0", command))
        proc = subprocess.Popen(
            ["bash", "-c", "exec " + command],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        server = Server(command, proc)
        self.servers.append(server)
        if readme_port is None:
            server.wait_for_port(ready=_NODE_READY)
        else:
            self.ports[readme_port] = server.wait_for_port()

    def output(self, prefix: str) -> str:
        """The output of the one command that starts with ``prefix``."""
        found = [out for command, out in self.outputs if command.startswith(prefix)]
        assert len(found) == 1, f"{len(found)} README commands start with {prefix!r}"
        return found[0]

    def server_logs(self) -> str:
        return "".join(f"--- {s.command}\n{''.join(s.lines[-15:])}" for s in self.servers)

    def stop(self) -> None:
        for _, job in self.jobs:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
                job.communicate(timeout=15)
        for server in self.servers:
            server.stop()


def test_the_readme_walkthrough_runs_as_written_to_a_verified_report(tmp_path: Path) -> None:
    steps = walkthrough(README.read_text(encoding="utf-8"))
    assert sum(step.file is None for step in steps) >= 20 and any(step.file for step in steps)
    folder = tmp_path / "alliance"
    folder.mkdir()
    run = Walkthrough(folder)
    try:
        for step in steps:
            run.run(step)
        # bank-a did not wait for the round: that is not an error, and it is told how to go on.
        joined_a = run.output("alliance-psi node join 2026-11 --config bank-a/node.toml")
        assert "result is not ready yet" in joined_a and "alliance-psi node fetch 2026-11" in joined_a
        # The round's types leave bank-a's QQ number out, and join says so.
        assert "1 identifier left out by the round's types (qq: 1)" in joined_a
        joined_b = run.output("alliance-psi node join 2026-11 --config bank-b/node.toml")
        assert "3 leads" in joined_b
        # custodian-2 is pinned to its own CA in both forms of node.toml, so neither node warns.
        assert "no custodian is pinned" not in joined_a + joined_b
        # The three custodians generated the epoch together and wrote the same epoch file; both
        # nodes evaluate through it, and nothing says it was dealt.
        generated = [run.output(f"alliance-psi custodian keygen --name custodian-{i} ") for i in (1, 2, 3)]
        assert all("generated key epoch 2026q4: 2 of 3 custodians" in out for out in generated), generated
        assert len({re.findall(r"public epoch file \S+, fingerprint (\S+)", out)[0] for out in generated}) == 1
        assert "dealt by one dealer" not in joined_a + joined_b
        custodian_2 = next(s for s in run.servers if "--name custodian-2" in s.command)
        assert any("custodian custodian-2's certificate is from its own CA" in line for line in custodian_2.lines)
        # bank-b's node run imported its inbox file and joined the next round with that one change.
        node_b = next(s for s in run.servers if s.command.startswith("alliance-psi node run"))
        log_b = "".join(node_b.lines)
        assert "inbox: new-leads.csv imported" in log_b, log_b
        assert "round 2026-12: committed, 1 token computed, 1 change sent (changes only)" in log_b, log_b
        assert "13826419573" not in log_b
        assert "3 leads" in run.output("alliance-psi node join 2026-12 --config bank-a/node.toml")
        verified = run.output("alliance-psi report verify bank-a/leads.json")
        assert verified.startswith("valid: 3 leads of 3 signed matches in round 2026-11")
        shown = run.output("alliance-psi coordinator round show 2026-11")
        for fact in (
            "types +phone, id_card, bank_card, uscc, email, org_name",
            "invited +bank-a, bank-b",
            "labels +shared",
        ):
            assert re.search(f"^{fact}", shown, re.MULTILINE), shown
    finally:
        run.stop()
    report = json.loads((folder / "bank-a" / "leads.json").read_text(encoding="utf-8"))
    spelled = {(lead["type"], lead["value"]): lead["spelling"] for lead in report["leads"]}
    assert spelled == {  # Normalized, and as bank-a wrote it.
        ("phone", "+8613915274680"): "139 1527 4680",
        ("id_card", "44030519870614357X"): "44030519870614357x",
        ("org_name", "深圳市某某法律咨询有限公司"): "深圳市某某法律諮詢有限公司",
    }
    assert all(lead["holder_count"] == 2 for lead in report["leads"])
    # The CSV for Excel, read back: the same values and spellings, nothing neutralised that needs no quote.
    with (folder / "bank-a" / "leads.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert {(row[1], row[2], row[3]) for row in rows[1:]} == {(t, v, s) for (t, v), s in spelled.items()}
    assert (folder / "bank-a" / "leads.html").stat().st_size > 0
    # node.toml's relative paths resolved against its own folder, wherever the command ran.
    assert (folder / "bank-a" / "bank-a.db").exists() and (folder / "bank-a" / "secrets").is_dir()
    assert not (folder / "bank-a.db").exists() and not (folder / "secrets").exists()


def test_the_walkthrough_parser_reads_commands_files_and_continuations() -> None:
    readme = (
        "intro\n## A real deployment, by role\n\n```sh\nalliance-psi a \\\n    --b c   # note\n# only a comment\n"
        "alliance-psi d\n```\n\nthe settings, in `x/node.toml`:\n\n```toml\n[node]\n```\n\n## Next\n```sh\nlater\n```\n"
    )
    assert walkthrough(readme) == [
        Step("alliance-psi a --b c   # note"),
        Step("alliance-psi d"),
        Step("[node]\n", file="x/node.toml"),
    ]
    with pytest.raises(AssertionError, match="does not follow a sentence naming its file"):
        walkthrough("## A real deployment, by role\nno name here\n```toml\n[node]\n```\n")


def test_substitution_refuses_an_address_no_server_listens_on(tmp_path: Path) -> None:
    run = Walkthrough(tmp_path)
    run.ports["7100"] = 40123
    assert run.substitute('coordinator = "coord.example:7100" --host coord.example') == (
        'coordinator = "localhost:40123" --host coord.example'
    )
    with pytest.raises(AssertionError, match="custodian-2.example:7102 is used before any server listens"):
        run.substitute("custodian-2.example:7102")
