"""alliance-psi: privacy-preserving lead matching for anti-fraud alliances.

Members learn which of their own identifiers at least ``t`` members hold, and nothing else.
See ``docs/design.md`` for the protocol and what each party learns.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
