"""The domain is pure: every module in ``ingestd/domain`` imports the standard library only
(or its own siblings), and msgspec for the base of its values (``Struct``, ``field``,
``structs``: no encoder, no I/O). Checked on the source, so an import hidden in a function
counts too. And every value is frozen and keyword-only."""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from pathlib import Path

import msgspec
import pytest

import ingestd.domain

DOMAIN = Path(ingestd.domain.__file__).parent
MODULES = sorted(DOMAIN.rglob("*.py"))

#: What the domain may take from msgspec: the base of its values and their copy with changes.
VALUE_BASE = {"Struct", "field", "structs"}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(relative level, module) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):  # ``import msgspec`` would bring its encoders too
            out.extend((0, "import msgspec" if alias.name == "msgspec" else alias.name)
                       for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "msgspec" and not node.level:
            out.extend((0, "msgspec" if alias.name in VALUE_BASE else f"msgspec.{alias.name}")
                       for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "__import__"):
            out.append((0, "__import__(...)"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module"):
            out.append((0, "importlib.import_module(...)"))
    return out


def test_there_are_domain_modules() -> None:
    names = {p.name for p in MODULES}
    assert {"__init__.py", "models.py", "policy.py", "canonical.py", "flags.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_domain_module_imports_only_the_standard_library(path: Path) -> None:
    bad = []
    for level, module in imports_of(path):
        if level == 1:
            continue  # a sibling in ingestd.domain
        if level > 1:
            bad.append(f"{'.' * level}{module} (outside the domain)")
            continue
        if module == "msgspec":
            continue  # Struct, field or structs: the values' base
        top = module.split(".")[0]
        if top not in sys.stdlib_module_names or top == "__import__(...)":
            bad.append(module)
    assert not bad, (f"{path.name} imports {bad}: the domain may use the standard library "
                     f"only, and from msgspec {sorted(VALUE_BASE)}")


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom ..errors import X\nfrom msgspec import Struct, json\n"
                      "import msgspec\n\ndef f():\n    import sqlalchemy\n")
    assert imports_of(sample) == [(0, "os"), (2, "errors"), (0, "msgspec"), (0, "msgspec.json"),
                                  (0, "import msgspec"), (0, "sqlalchemy")]


def domain_values() -> list[type[msgspec.Struct]]:
    found: list[type[msgspec.Struct]] = []
    for path in MODULES:
        module = importlib.import_module(f"ingestd.domain.{path.stem}"
                                         if path.stem != "__init__" else "ingestd.domain")
        found.extend(value for value in vars(module).values()
                     if isinstance(value, type) and issubclass(value, msgspec.Struct)
                     and value.__module__ == module.__name__)
    return found


def test_there_are_domain_values() -> None:
    names = {value.__name__ for value in domain_values()}
    assert {"Item", "Replica", "LedgerEntry", "Alert", "Retention", "DockedDevice"} <= names


@pytest.mark.parametrize("value", domain_values(), ids=lambda v: v.__name__)
def test_every_domain_value_is_frozen_and_keyword_only(value: type[msgspec.Struct]) -> None:
    # Neither is inherited from a base in msgspec's keyword-only case, so each class says so.
    assert value.__struct_config__.frozen, f"{value.__name__} is not frozen"
    positional = [name for name, p in inspect.signature(value).parameters.items()
                  if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert not positional, f"{value.__name__} takes {positional} by position"
