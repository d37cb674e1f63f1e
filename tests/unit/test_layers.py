"""Each layer imports only the layers below it (STYLE guideline 2), and exports exactly what it says.

The order is the README's: identifiers → crypto → protocol → storage → services → reports → cli,
over a base of ``errors``, ``defaults``, ``_files`` and ``config`` that every layer may use and
in which each module imports only those listed before it. ``upward_imports`` reads every
module's import statements (also those inside functions and ``TYPE_CHECKING`` blocks, which the
lazy CLI uses), so an import the tests never execute is still checked; a subprocess test checks
third-party packages that must stay out."""

from __future__ import annotations

import ast
import importlib
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import alliance_psi

PACKAGE = Path(alliance_psi.__file__).resolve().parent
LAYERS = ("identifiers", "crypto", "protocol", "storage", "services", "reports", "cli")
BASE = ("errors", "defaults", "_files", "config")  # Each imports only those before it.


def _layer_of(module: str) -> str:
    """The layer of a dotted ``alliance_psi`` module name: one of LAYERS, BASE or the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(layer: str) -> int:
    if layer in LAYERS:
        return 1 + LAYERS.index(layer)
    return 0  # errors, config, _files and alliance_psi/__init__.py


def _allowed(importer: str, imported: str) -> bool:
    source, target = _layer_of(importer), _layer_of(imported)
    if source == "__init__":
        return False
    if source in BASE:  # Only base modules listed before it.
        return target in BASE[: BASE.index(source)]
    return _rank(target) <= _rank(source)


def _imported_modules(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every ``alliance_psi`` module a file imports, with the line, relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from alliance_psi import errors`` imports the submodule alliance_psi.errors.
            found += [(node.lineno, f"{base}.{a.name}" if base == "alliance_psi" else base) for a in node.names]
    return [(line, name) for line, name in found if name == "alliance_psi" or name.startswith("alliance_psi.")]


def upward_imports(package_dir: Path) -> list[str]:
    """``"file:line: a imports b"`` for every import of a layer above the importer (or beside it, for the base)."""
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir.parent).with_suffix("")
        is_package = relative.name == "__init__"
        module = ".".join(relative.parent.parts if is_package else relative.parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, imported in _imported_modules(tree, module, is_package):
            if not _allowed(module, imported):
                problems.append(f"{relative}.py:{line}: {module} imports {imported}")
    return problems


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert upward_imports(PACKAGE) == []


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the package to plant bad imports in."""
    copy = tmp_path / "alliance_psi"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "_pb"))
    return copy


@pytest.mark.parametrize(
    "where, line, imported",
    [
        ("identifiers/types.py", "from alliance_psi.protocol.model import Role", "alliance_psi.protocol.model"),
        ("crypto/labels.py", "import alliance_psi.reports.model", "alliance_psi.reports.model"),
        ("protocol/model.py", "from alliance_psi.storage import schema", "alliance_psi.storage"),
        ("storage/engine.py", "from alliance_psi.services import status", "alliance_psi.services"),
        ("services/status.py", "from alliance_psi.reports.verify import ReportMismatch", "alliance_psi.reports.verify"),
        ("reports/model.py", "from alliance_psi.cli import main", "alliance_psi.cli"),
        ("errors.py", "from alliance_psi.identifiers import types", "alliance_psi.identifiers"),
        ("_files.py", "from alliance_psi import config", "alliance_psi.config"),
        ("defaults.py", "from alliance_psi.config import MemberConfig", "alliance_psi.config"),
        ("__init__.py", "from alliance_psi import errors", "alliance_psi.errors"),
        ("crypto/derive.py", "from ..protocol import model", "alliance_psi.protocol"),
    ],
)
def test_the_checker_catches_an_upward_import(package_copy: Path, where: str, line: str, imported: str) -> None:
    target = package_copy / where
    # Inside a function, where only a static reading sees it.
    target.write_text(
        target.read_text(encoding="utf-8") + f"\n\ndef _planted() -> None:\n    {line}\n", encoding="utf-8"
    )
    problems = upward_imports(package_copy)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"alliance_psi/{where}:") and problems[0].endswith(f" imports {imported}")


def test_the_checker_allows_imports_downward_and_within_a_layer(package_copy: Path) -> None:
    target = package_copy / "cli" / "demo.py"
    target.write_text(
        target.read_text(encoding="utf-8")
        + "\nfrom alliance_psi import errors, identifiers\nfrom alliance_psi.cli import main\n",
        encoding="utf-8",
    )
    assert upward_imports(package_copy) == []


PURE = ["grpc", "sqlalchemy", "click", "rich"]
# What each layer must never pull in when all its modules are imported.
FORBIDDEN = {
    "alliance_psi.errors": PURE,
    "alliance_psi.identifiers": PURE,
    "alliance_psi.crypto": PURE,
    "alliance_psi.protocol": PURE,
    "alliance_psi.reports": PURE,
    "alliance_psi.storage": ["grpc", "click", "rich"],
    "alliance_psi.services": ["click", "rich"],
}


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_layers_pull_in_no_forbidden_package(layer: str) -> None:
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


def public_names(module: types.ModuleType) -> list[str]:
    """What a module offers: names without a leading underscore, except submodules, ``annotations``
    and ``TYPE_CHECKING`` (imported for the module's own use)."""
    names = []
    for name in dir(module):
        if (name.startswith("_") and name != "__version__") or name == "TYPE_CHECKING":
            continue
        value = getattr(module, name)
        if isinstance(value, types.ModuleType) or (name == "annotations" and type(value).__name__ == "_Feature"):
            continue
        names.append(name)
    return names


EXPORTING = [
    "alliance_psi",
    "alliance_psi.errors",
    "alliance_psi.defaults",
    "alliance_psi.identifiers",
    "alliance_psi.crypto",
    "alliance_psi.protocol",
    "alliance_psi.storage",
    "alliance_psi.reports",
]


@pytest.mark.parametrize("name", EXPORTING)
def test_exported_members(name: str) -> None:
    # httpx's test_exported_members: __all__ is exactly the public names, in sorted() order.
    module = importlib.import_module(name)
    assert module.__all__ == sorted(public_names(module))


def test_exported_members_fails_on_a_name_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import alliance_psi.errors as errors

    monkeypatch.setattr(errors, "__all__", [n for n in errors.__all__ if n != "SetMismatch"])
    with pytest.raises(AssertionError):
        test_exported_members("alliance_psi.errors")
