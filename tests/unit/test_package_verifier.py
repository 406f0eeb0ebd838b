"""The one-file package verifier: standard library only, its kinds ingestd's, its Merkle
checks those of ingestd's tree."""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

import pytest

from ingestd.integrity import merkle
from ingestd.integrity import verify_package as standalone
from ingestd.integrity.discrepancy import DiscrepancyKind

SOURCE = Path(standalone.__file__)


def test_it_imports_nothing_but_the_standard_library() -> None:
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative import: the file travels alone"
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_every_kind_it_reports_is_a_discrepancy_kind() -> None:
    text = SOURCE.read_text(encoding="utf-8")
    reported = set(re.findall(r'\.add\(\s*"([a-z_]+)"', text))
    assert len(reported) > 15
    assert reported <= {str(k) for k in DiscrepancyKind}, reported - {str(k) for k in
                                                                      DiscrepancyKind}


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31])
def test_its_proof_checks_accept_ingestds_proofs_and_nothing_else(size: int) -> None:
    leaves = [merkle.leaf_hash(os.urandom(32)) for _ in range(size)]
    n, root = merkle.root(leaves)
    proofs = merkle.inclusion_proofs(leaves, range(size))
    for i, path in proofs.items():
        assert standalone.root_from_inclusion(i, n, leaves[i], path) == root
        other = (i + 1) % size
        if other != i:
            assert standalone.root_from_inclusion(other, n, leaves[other], path) != root
    for old in range(1, size + 1):
        proof = merkle.consistency_proof(leaves, old)
        _, old_root = merkle.root(leaves[:old])
        assert standalone.consistent(old, old_root, n, root, proof)
        assert not standalone.consistent(old, os.urandom(32), n, root, proof)


def test_a_pem_round_trips_and_a_wrong_one_is_refused() -> None:
    raw = os.urandom(32)
    assert standalone.raw_from_pem(standalone.public_pem(raw)) == raw
    assert standalone.raw_from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n"
                                   b"-----END PUBLIC KEY-----\n") is None


@pytest.mark.parametrize("path", ["../x", "data/../../x", "/etc/passwd", "data//x", "./data/x",
                                  "data\\x", "data/x\x00", ""])
def test_a_path_that_could_escape_is_unsafe(path: str) -> None:
    assert not standalone.safe_relpath(path)


def test_a_plain_path_is_safe() -> None:
    assert standalone.safe_relpath("data/Wang Fang_20260301T020000Z_a.MP4")
