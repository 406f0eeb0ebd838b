"""Signed checkpoints of the ledger: the head, and the root of the Merkle tree over every entry.

A checkpoint is what the station publishes off-site and what a court package carries: with it,
an inclusion proof shows that an entry is the ledger's, unchanged, without the whole ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..domain.canonical import canonical_bytes, format_time
from ..errors import IntegrityError
from ..integrity import merkle
from ..ports import CatalogTx
from ..station import Station

# 2: carries the pinned fingerprint of the ledger's first key; 3: the Merkle tree's size and root
CHECKPOINT_VERSION = 3


@dataclass(frozen=True, kw_only=True)
class SignedCheckpoint:
    """A checkpoint body, the station's signature over its canonical bytes, and the key."""

    body: dict[str, Any]
    signature: str
    public_key: str

    @property
    def seq(self) -> int:
        return int(self.body["seq"])

    @property
    def head_hash(self) -> str | None:
        head = self.body["head_hash"]
        return str(head) if head is not None else None

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers."""
        return canonical_bytes(self.body)

    def to_bytes(self) -> bytes:
        """The checkpoint as it is published: body, signature and public key, canonical JSON."""
        return canonical_bytes({"checkpoint": self.body, "signature": self.signature,
                                "public_key": self.public_key})


def ledger_leaves(tx: CatalogTx, upto: int) -> Iterator[bytes]:
    """The Merkle leaf hash of each entry from 1 to ``upto``; a gap in the sequence is an
    integrity error (the tree's leaf ``i`` must be entry ``i + 1``)."""
    expected = 1
    for seq, entry_hash in tx.entry_hashes(upto=upto):
        if seq != expected:
            raise IntegrityError(f"the ledger has no entry {expected} (next is {seq}): "
                                 "run `ingestd ledger verify`")
        expected += 1
        yield merkle.leaf_hash(bytes.fromhex(entry_hash))
    if expected != upto + 1:
        raise IntegrityError(f"the ledger ends at entry {expected - 1}, not {upto}")


def sign_checkpoint(station: Station) -> SignedCheckpoint:
    """Sign the ledger's head as it is now, with the root of the tree over all its entries."""
    station.custody.check_signing_key()
    with station.catalog.read(snapshot=True) as tx:
        seq, head = tx.ledger_head()
        size, root = merkle.root(ledger_leaves(tx, seq))
    body = {"version": CHECKPOINT_VERSION, "station": station.name, "seq": seq,
            "head_hash": head, "at": format_time(station.clock()),
            "key_id": station.key.key_id, "genesis_fingerprint": station.custody.pin,
            "tree_size": size, "merkle_root": root.hex()}
    return SignedCheckpoint(body=body, signature=station.key.sign(canonical_bytes(body)),
                            public_key=station.key.public.hex)
