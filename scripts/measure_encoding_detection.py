"""Measure how `node import` reads generated blacklist files in each encoding, at each size.

Usage: .venv/bin/python scripts/measure_encoding_detection.py [--seeds 100]

For every kind of file (UTF-8, GB18030 simplified, GB18030 traditional, Big5, UTF-8 with one
GB18030 row) and size (data rows), it writes files made by tests/unit/identifiers/encoding_samples.py
with distinct seeds, runs the importer's own encoding decision on each, and prints how often the
outcome is the right one: the right encoding, or a refusal for Big5 and mixed files. The figures
in docs/file-format.md come from this script.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alliance_psi.identifiers.importer import BlacklistFile, ImportFileError
from tests.unit.identifiers import encoding_samples

KINDS = {
    "utf-8": "utf-8",
    "gb18030": "gb18030",
    "traditional-gb18030": "gb18030",
    "big5": "refused: Big5",
    "mixed": "refused: mixed",
}
SIZES = (1, 2, 3, 10, 100, 1000)


def outcome(path: Path) -> str:
    try:
        encoding = BlacklistFile(path).encoding
    except ImportFileError as error:
        message = str(error).removeprefix(f"{path}: ")
        if message.startswith("looks like Big5"):
            return "refused: Big5"
        if message.startswith("mixed encodings"):
            return "refused: mixed"
        return "refused: other"
    assert encoding is not None
    return encoding.codec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="files per kind and size")
    seeds = parser.parse_args().seeds
    print(f"{'file':<22}{'rows':>6}  {'right':>7}  outcomes")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "list.csv"
        for kind, right in KINDS.items():
            for size in SIZES:
                outcomes: Counter[str] = Counter()
                for seed in range(seeds):
                    path.write_bytes(encoding_samples.sample(kind, random.Random(seed * 7919 + size), size))
                    outcomes[outcome(path)] += 1
                shown = ", ".join(f"{name} {count}" for name, count in outcomes.most_common())
                print(f"{kind:<22}{size:>6}  {outcomes[right]:>3}/{seeds:<3}  {shown}")


if __name__ == "__main__":
    main()
