"""Each layer imports only the layers below it (STYLE guideline 2), and exports what it says."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

PURE = ["grpc", "sqlalchemy", "click", "rich"]
# Each layer, and what it must never pull in: layers import only the layers below them.
FORBIDDEN = {
    "alliance_psi.errors": PURE,
    "alliance_psi.identifiers": PURE,
    "alliance_psi.crypto": PURE,
    "alliance_psi.protocol": PURE,
    "alliance_psi.reports": PURE,
    "alliance_psi.storage": ["grpc", "click", "rich", "alliance_psi.services"],
    "alliance_psi.services": ["click", "rich", "alliance_psi.cli"],
}
PURE_LAYERS = [layer for layer, banned in FORBIDDEN.items() if banned == PURE and layer != "alliance_psi.reports"]


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_layers_import_only_what_is_below(layer: str) -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"pkg = importlib.import_module({layer!r})\n"
        "for m in pkgutil.walk_packages(getattr(pkg, '__path__', []), pkg.__name__ + '.'):\n"
        "    if not m.name.endswith('_pb2_grpc'):  # gRPC stubs: imported only by services.\n"
        "        importlib.import_module(m.name)\n"
        f"print(json.dumps(sorted(n for n in {FORBIDDEN[layer]!r} if n in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("layer", [*PURE_LAYERS, "alliance_psi"])
def test_exported_members(layer: str) -> None:
    module = importlib.import_module(layer)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"{layer}.__all__ repeats a name"
    for name in exported:
        assert hasattr(module, name), f"{layer}.__all__ names {name!r}, which it lacks"
