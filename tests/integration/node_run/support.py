"""``alliance-psi node run`` as a real process against an alliance on loopback (``harness``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alliance_psi.cli._processes import cli_command
from tests.integration.test_cli_node_join import write_toml

DEADLINE = 240.0  # Generous: the machine is shared; nothing here asserts a duration.


class NodeRun:
    """A ``node run`` child process in its own session (so its worker processes die with it);
    its standard error is kept, line by line, in ``lines``."""

    def __init__(self, config: Path, *options: str) -> None:
        self.config = config
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            cli_command("node", "run", "--config", str(config), *options),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def metrics_port(self) -> int:
        """The port of ``--metrics-listen HOST:0``, from the line that announces it."""
        line = self.wait_for_line("metrics and health on http://")
        match = re.search(r"http://\S+:(\d+)/metrics", line)
        assert match, line
        return int(match.group(1))

    def wait_for_line(self, text: str, deadline: float = DEADLINE) -> str:
        """The first log line that contains ``text``, waiting for it (the process must not end first)."""
        return wait_for(
            lambda: next((line for line in self.lines if text in line), None), f"log line {text!r}", self, deadline
        )

    def signal(self, signum: int) -> None:
        os.killpg(self.proc.pid, signum)

    def stop(self) -> int:
        """SIGTERM, then its exit code (SIGKILL after the deadline, and fail)."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            raise AssertionError("node run did not stop after SIGTERM:\n" + self.log[-3000:]) from None

    def kill(self) -> None:
        """SIGKILL to its whole session: no chance to clean up, as in a crash."""
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
        self.proc.wait(DEADLINE)


def wait_for(check: Callable[[], object], what: str, run: NodeRun | None = None, deadline: float = DEADLINE) -> object:
    """Poll ``check`` until it returns something truthy; fail with ``what`` (and the log) after ``deadline``."""
    end = time.monotonic() + deadline
    while True:
        found = check()
        if found:
            return found
        if run is not None and run.proc.poll() is not None:
            raise AssertionError(f"node run ended ({run.proc.returncode}) before {what}:\n{run.log[-3000:]}")
        if time.monotonic() > end:
            raise AssertionError(f"no {what} after {deadline:.0f}s" + (f":\n{run.log[-3000:]}" if run else ""))
        time.sleep(0.05)


def node_toml(tmp: Path, pki, alliance, member: str, **overrides: str) -> Path:  # type: ignore[no-untyped-def]
    """``member``'s node.toml for ``node run``: quick looks, an inbox in ``tmp/MEMBER-inbox``."""
    settings = {
        "inbox": str(tmp / f"{member}-inbox"),
        "poll-every": "0.1",
        "settle-seconds": "0.2",
        **overrides,
    }
    return write_toml(tmp / f"{member}.toml", pki, alliance, member, **settings)


@contextmanager
def node_run(config: Path, *options: str) -> Iterator[NodeRun]:
    """``node run`` started, and stopped (SIGKILL if still running) when the block ends."""
    run = NodeRun(config, *options)
    try:
        run.wait_for_line("node run: member")
        yield run
    finally:
        if run.proc.poll() is None:
            run.kill()


def drop(inbox: Path, name: str, text: str) -> Path:
    """Write a file into the inbox as the bank's systems should: NAME.part, then renamed."""
    part = inbox / f"{name}.part"
    part.write_text(text, encoding="utf-8")
    os.replace(part, inbox / name)
    return inbox / name
