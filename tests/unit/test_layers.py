"""Dependencies point one way (docs/ARCHITECTURE.md): a module imports its own layer or the
layers below it, never one above. Checked on the source, imports inside functions included."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import ingestd

PACKAGE = Path(ingestd.__file__).parent

#: From the top down. A module's layer is the first entry whose name is its dotted name or a
#: package it is in.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("command line", ("cli",)),
    ("daemon", ("app",)),
    ("use cases", ("usecases",)),
    ("wiring", ("station", "custody")),
    ("adapters", ("catalog", "store", "docks", "targets", "media", "simulate", "logs",
                  "modes", "timestamping")),
    ("settings", ("config",)),
    ("ports", ("ports",)),
    ("integrity", ("integrity",)),
    ("domain", ("domain",)),
    ("errors", ("errors",)),
]


def layer_of(module: str) -> int:
    """The index in LAYERS of a module named relative to the package (``docks.walk``)."""
    if module in ("", "__init__"):
        return 0  # the package itself: nothing may import it but the outside
    head = module.split(".")[0]
    for index, (_name, members) in enumerate(LAYERS):
        if head in members:
            return index
    raise AssertionError(f"ingestd.{module} is in no layer: add it to LAYERS and to "
                         "docs/ARCHITECTURE.md")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def internal_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module relative to the package) for every import of ingestd code."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *([node.module] if node.module else [])])
                if not node.module:  # from . import a, b
                    out.extend((node.lineno, ".".join([*base, a.name])) for a in node.names)
                    continue
                out.append((node.lineno, target))
            elif node.module and node.module.split(".")[0] == "ingestd":
                out.append((node.lineno, node.module.removeprefix("ingestd").lstrip(".")))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name.removeprefix("ingestd").lstrip("."))
                       for a in node.names if a.name.split(".")[0] == "ingestd")
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_every_module_has_a_layer() -> None:
    for path in MODULES:
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        layer_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    if path.parent == PACKAGE and path.name == "__init__.py":
        return
    here = layer_of(module_name(path))
    upward = [f"line {line}: imports ingestd.{target} ({LAYERS[layer_of(target)][0]})"
              for line, target in internal_imports(path) if layer_of(target) < here]
    assert not upward, (f"{path.relative_to(PACKAGE)} is in the {LAYERS[here][0]} layer and "
                        "imports upward:\n" + "\n".join(upward))


def test_the_checker_sees_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "ingestd"
    (fake / "domain").mkdir(parents=True)
    bad = fake / "domain" / "bad.py"
    bad.write_text("def f():\n    from ..station import Station\n    return Station\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert internal_imports(bad) == [(2, "station")]
    assert layer_of("station") < layer_of("domain.bad")


def sql_imports(path: Path) -> list[int]:
    """The lines of ``path`` that import SQLAlchemy or Alembic (inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            names.extend((node.lineno, a.name) for a in node.names)
    return [line for line, name in names if name.split(".")[0] in ("sqlalchemy", "alembic")]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_catalog_speaks_sql(path: Path) -> None:
    name = module_name(path)
    if name.split(".")[0] == "catalog":
        return
    lines = sql_imports(path)
    assert not lines, (f"{path.relative_to(PACKAGE)} imports SQLAlchemy (lines {lines}): "
                       "ask the catalog through ports.CatalogTx, which speaks in records")


def test_the_sql_checker_sees_an_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sqlalchemy.engine import RowMapping\n    return 1\n")
    assert sql_imports(bad) == [2]
