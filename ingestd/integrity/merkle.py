"""A Merkle tree over the ledger, hashed as RFC 9162 (Certificate Transparency 2.0) says.

Leaf ``i`` (0-based) is ledger entry ``seq = i + 1``; its leaf input is the 32 bytes of the
entry's hash (the SHA-256 of its canonical body). With ``H`` SHA-256:

    leaf hash  = H(0x00 || entry_hash)
    node hash  = H(0x01 || left || right)
    empty root = H("")

A tree of ``n > 1`` leaves splits at ``k``, the largest power of two below ``n``: the root is
the node hash of the root of the first ``k`` leaves and the root of the rest. Inclusion and
consistency proofs and their checks are those of RFC 9162 sections 2.1.3 and 2.1.4, so any
verifier written to that RFC checks them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence

LEAF = b"\x00"
NODE = b"\x01"


def leaf_hash(entry_hash: bytes) -> bytes:
    return hashlib.sha256(LEAF + entry_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two below ``n`` (for ``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Iterable[bytes]) -> tuple[int, bytes]:
    """The size and root of the tree over ``leaves`` (leaf hashes), read once, in order, keeping
    only one hash per level."""
    stack: list[tuple[int, bytes]] = []  # (leaves under it, hash), sizes strictly decreasing
    size = 0
    for leaf in leaves:
        size += 1
        node = (1, leaf)
        while stack and stack[-1][0] == node[0]:
            left = stack.pop()
            node = (left[0] * 2, node_hash(left[1], node[1]))
        stack.append(node)
    if not stack:
        return 0, hashlib.sha256(b"").digest()
    top = stack.pop()[1]
    while stack:
        top = node_hash(stack.pop()[1], top)
    return size, top


def _subtree(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return leaves[lo]
    k = _split(hi - lo)
    return node_hash(_subtree(leaves, lo, lo + k), _subtree(leaves, lo + k, hi))


def inclusion_proofs(leaves: Sequence[bytes], indices: Collection[int]) -> dict[int, list[bytes]]:
    """The audit path of each leaf in ``indices`` in the tree over ``leaves``, computed in one
    pass over the tree (a subtree without a wanted leaf is hashed once)."""
    n = len(leaves)
    wanted = sorted(set(indices))
    if any(i < 0 or i >= n for i in wanted):
        raise ValueError(f"leaf index out of a tree of {n}")
    proofs: dict[int, list[bytes]] = {i: [] for i in wanted}

    def walk(lo: int, hi: int, inside: list[int]) -> bytes:
        if not inside:
            return _subtree(leaves, lo, hi)
        if hi - lo == 1:
            return leaves[lo]
        mid = lo + _split(hi - lo)
        left_in = [i for i in inside if i < mid]
        right_in = [i for i in inside if i >= mid]
        left = walk(lo, mid, left_in)
        right = walk(mid, hi, right_in)
        for i in left_in:
            proofs[i].append(right)
        for i in right_in:
            proofs[i].append(left)
        return node_hash(left, right)

    if n:
        walk(0, n, wanted)
    return proofs


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` proves ``leaf`` at ``index`` is under, in a tree of ``size``
    leaves; None if the path cannot be one (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree of the first ``old_size`` leaves is a prefix of the tree over
    all of ``leaves`` (RFC 9162 2.1.4.1)."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"no consistency proof from {old_size} to {n} leaves")

    def sub(m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        if m == hi - lo:
            return [] if whole else [_subtree(leaves, lo, hi)]
        k = _split(hi - lo)
        if m <= k:
            return sub(m, lo, lo + k, whole) + [_subtree(leaves, lo + k, hi)]
        return sub(m - k, lo + k, hi, False) + [_subtree(leaves, lo, lo + k)]

    return sub(old_size, 0, n, True)


def consistent(old_size: int, old_root: bytes, new_size: int, new_root: bytes,
               proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree (``old_size``, ``old_root``) is a prefix of the tree
    (``new_size``, ``new_root``) (RFC 9162 2.1.4.2)."""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


def roots_at(leaves: Iterable[bytes], sizes: Collection[int]) -> dict[int, bytes]:
    """The root of the tree over the first ``n`` of ``leaves`` for each ``n`` in ``sizes``,
    in one pass over ``leaves`` (read in order, one hash per level kept). A size beyond the
    leaves there are, or below zero, is not in the answer."""
    wanted = set(sizes)
    out: dict[int, bytes] = {}
    if 0 in wanted:
        out[0] = hashlib.sha256(b"").digest()
    last = max(wanted, default=0)
    stack: list[tuple[int, bytes]] = []
    size = 0
    for leaf in leaves if last > 0 else ():
        size += 1
        node = (1, leaf)
        while stack and stack[-1][0] == node[0]:
            left = stack.pop()
            node = (left[0] * 2, node_hash(left[1], node[1]))
        stack.append(node)
        if size in wanted:
            top = stack[-1][1]
            for _count, below in reversed(stack[:-1]):
                top = node_hash(below, top)
            out[size] = top
        if size == last:
            break  # the leaves after the largest size asked are not read
    return out
