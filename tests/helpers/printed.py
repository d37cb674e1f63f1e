"""Running a command line that alliance-psi printed as a suggestion, the way a user pastes it."""

from __future__ import annotations

import re
import shlex

from click.testing import CliRunner, Result

from alliance_psi.cli.main import main


def quoted_commands(output: str) -> list[str]:
    """The ``alliance-psi …`` command lines in ``output``, between backticks or after ``with: ``."""
    found = re.findall(r"`(alliance-psi [^`]*)`|with: (alliance-psi .*)$", output, re.MULTILINE)
    return [quoted or after for quoted, after in found]


def run_as_printed(command: str, **placeholders: str) -> Result:
    """``command`` split as a POSIX shell splits it, its placeholders (FILE, SECONDS) filled in, run."""
    words = shlex.split(command)
    assert words[0] == "alliance-psi", command
    return CliRunner().invoke(main, [placeholders.get(word, word) for word in words[1:]], env={"COLUMNS": "200"})
