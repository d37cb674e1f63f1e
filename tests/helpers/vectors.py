"""One loader for the published test vectors under ``tests/vectors/``.

RFC appendices print vectors as ``Name = value`` lines, long values folded onto continuation
lines, and groups under headings. ``load_rfc_text`` reads that format as the RFC prints it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def load_rfc_text(relative: str) -> list[dict[str, str]]:
    """Return the vector groups of an RFC-format text file, each as ``{name: value}``.

    A group ends at a blank line or heading once it holds values; header keys (such as ``Seed``)
    stay in ``groups[0]`` and are copied into the later groups that lack them.
    """
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last_key: str | None = None
    for raw in (VECTORS / relative).read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
        if line.startswith("#") or not line.strip():
            if current and (not line.strip() or line.startswith("#")):
                groups.append(current)
                current, last_key = {}, None
            continue
        match = _ASSIGN.match(line.strip())
        if match and not raw.startswith(" "):
            last_key = match.group(1)
            current[last_key] = match.group(2).strip()
        elif last_key is not None:
            current[last_key] += line.strip()
    if current:
        groups.append(current)
    if not groups:
        raise AssertionError(f"no vectors in {relative}")
    header = groups[0]
    return [header] + [{**header, **g} for g in groups[1:]]


def load_json(relative: str) -> Any:
    """Return the parsed JSON vector file."""
    return json.loads((VECTORS / relative).read_text(encoding="utf-8"))
