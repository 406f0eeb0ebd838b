"""The domain is pure: every module in ``ingestd/domain`` imports the standard library only
(or its own siblings). Checked on the source, so an import hidden in a function counts too."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import ingestd.domain

DOMAIN = Path(ingestd.domain.__file__).parent
MODULES = sorted(DOMAIN.rglob("*.py"))


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(relative level, module) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((0, alias.name) for alias in node.names)
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
        top = module.split(".")[0]
        if top not in sys.stdlib_module_names or top == "__import__(...)":
            bad.append(module)
    assert not bad, f"{path.name} imports {bad}: the domain may use the standard library only"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom ..errors import X\n\ndef f():\n    import sqlalchemy\n")
    assert imports_of(sample) == [(0, "os"), (2, "errors"), (0, "sqlalchemy")]
