"""The ``alliance-psi`` command."""

from __future__ import annotations

import click

from alliance_psi import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alliance-psi")
def main() -> None:
    """alliance-psi: privacy-preserving lead matching for anti-fraud alliances."""


if __name__ == "__main__":  # pragma: no cover
    main()
