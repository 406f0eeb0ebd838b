"""The ledger's Merkle tree against RFC 9162's definitions, written out the way the RFC states
them (recursive MTH, PATH and SUBPROOF), for every leaf of every tree up to 40 leaves."""

import hashlib
from collections.abc import Iterator

import pytest

from ingestd.integrity import merkle


def mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def path(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return path(m, data[:k]) + [mth(data[k:])]
    return path(m - k, data[k:]) + [mth(data[:k])]


def subproof(m: int, data: list[bytes], whole: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if whole else [mth(data)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof(m, data[:k], whole) + [mth(data[k:])]
    return subproof(m - k, data[k:], False) + [mth(data[:k])]


def entries(n: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(n)]


@pytest.mark.parametrize("n", range(0, 41))
def test_root_inclusion_and_consistency_match_the_rfc(n: int) -> None:
    data = entries(n)
    leaves = [merkle.leaf_hash(d) for d in data]
    size, root = merkle.root(iter(leaves))
    assert (size, root) == (n, mth(data))
    proofs = merkle.inclusion_proofs(leaves, range(n))
    for m in range(n):
        assert proofs[m] == path(m, data)
        assert merkle.root_from_inclusion(m, n, leaves[m], proofs[m]) == root
    for m in range(1, n):
        proof = merkle.consistency_proof(leaves, m)
        assert proof == subproof(m, data, True)
        assert merkle.consistent(m, mth(data[:m]), n, root, proof)


def test_a_changed_entry_or_path_or_index_proves_nothing() -> None:
    data = entries(13)
    leaves = [merkle.leaf_hash(d) for d in data]
    _, root = merkle.root(leaves)
    proof = merkle.inclusion_proofs(leaves, [5])[5]
    other = merkle.leaf_hash(hashlib.sha256(b"forged").digest())
    assert merkle.root_from_inclusion(5, 13, other, proof) != root
    assert merkle.root_from_inclusion(6, 13, leaves[5], proof) != root
    bent = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
    assert merkle.root_from_inclusion(5, 13, leaves[5], bent) != root
    assert merkle.root_from_inclusion(5, 13, leaves[5], proof[:-1]) != root
    assert merkle.root_from_inclusion(13, 13, leaves[5], proof) is None
    # a proof for another entry does not prove this one
    assert merkle.root_from_inclusion(5, 13, leaves[5],
                                      merkle.inclusion_proofs(leaves, [4])[4]) != root


def test_a_rewritten_history_is_not_consistent() -> None:
    data = entries(20)
    leaves = [merkle.leaf_hash(d) for d in data]
    _, old_root = merkle.root(leaves[:9])
    changed = list(leaves)
    changed[3] = merkle.leaf_hash(b"\x00" * 32)
    _, new_root = merkle.root(changed)
    assert not merkle.consistent(9, old_root, 20, new_root,
                                 merkle.consistency_proof(changed, 9))
    _, true_root = merkle.root(leaves)
    assert merkle.consistent(9, old_root, 20, true_root, merkle.consistency_proof(leaves, 9))
    assert not merkle.consistent(9, old_root, 20, true_root, [])


def test_roots_at_gives_the_root_of_every_prefix_asked_in_one_pass() -> None:
    data = [hashlib.sha256(str(i).encode()).digest() for i in range(37)]
    leaves = [merkle.leaf_hash(d) for d in data]
    read: list[int] = []

    def once() -> Iterator[bytes]:
        for i, leaf in enumerate(leaves):
            read.append(i)
            yield leaf

    sizes = list(range(0, 38))
    roots = merkle.roots_at(once(), sizes)
    assert read == list(range(37))  # each leaf read once, in order
    for n in sizes:
        assert roots[n] == mth(data[:n]) == merkle.root(leaves[:n])[1], n
    # only the sizes asked; one beyond the leaves is not answered
    assert merkle.roots_at(iter(leaves), [5, 40, -1]) == {5: mth(data[:5])}
    # no leaf after the largest size asked is read
    read.clear()
    assert merkle.roots_at(once(), [3, 9]) == {3: mth(data[:3]), 9: mth(data[:9])}
    assert read == list(range(9))
