"""Lists printed as aligned plain-text columns that never cut or wrap a cell, however narrow the console.

Round ids (up to 64 characters) must be copied whole from a listing into the next command; a
console table squeezed to 80 columns would cut them. Lines may be wider than the console: a
terminal wraps them for the eye, and the text stays whole for copying and for scripts.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["columns"]

_GAP = "  "


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``header`` and ``rows`` as left-aligned columns, two spaces apart, one line each (no trailing spaces).

    Widths are display widths (a Chinese character takes two columns). Cells are shown as they
    are: the caller makes untrusted text console-safe first. A cell with a line break is shown on
    one line, the break as a space.
    """
    from rich.cells import cell_len

    table = [[" ".join(str(cell).splitlines()) for cell in row] for row in [header, *rows]]
    widths = [max(cell_len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        padded = [cell + " " * (width - cell_len(cell)) for cell, width in zip(row, widths, strict=True)]
        lines.append(_GAP.join(padded).rstrip())
    return "\n".join(lines)
