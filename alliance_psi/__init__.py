"""alliance-psi: privacy-preserving lead matching for anti-fraud alliances.

Members learn which of their own identifiers at least ``t`` members hold, and nothing else.
See ``DESIGN.md`` in the shared folder for the protocol and the leakage budget.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
