"""End-to-end tests run role servers as real processes (``alliance_psi.cli._processes``)."""
