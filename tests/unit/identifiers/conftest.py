"""Shared helpers for the identifier tests."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers import normalize

Rejects = Callable[[str, str, str], InvalidIdentifier]


@pytest.fixture
def rejects() -> Rejects:
    """Return a checker: ``rejects(type, raw, reason)`` asserts that exact rejection."""

    def check(type_: str, raw: str, reason: str) -> InvalidIdentifier:
        with pytest.raises(InvalidIdentifier, match=re.escape(reason)) as info:
            normalize(type_, raw)
        assert info.value.type == type_
        assert info.value.reason == reason
        return info.value

    return check
