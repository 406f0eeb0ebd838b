"""Typed discrepancies: every kind in one family, each family its own kinds only, the ledger's
JSON as it was."""

from __future__ import annotations

import dataclasses

import pytest

from ingestd.integrity.discrepancy import (
    FAMILIES,
    BadSignature,
    ChainBroken,
    ChecksumMismatch,
    DiscrepancyKind,
    RowDiffers,
    family_of,
)

K = DiscrepancyKind
ITEM = "ab" * 32


def test_every_kind_is_in_exactly_one_family() -> None:
    for kind in DiscrepancyKind:
        owners = [f for f in FAMILIES if kind in f.kinds]
        assert len(owners) == 1, (kind, owners)
        assert family_of(kind) is owners[0]


def test_a_family_takes_only_its_own_kinds() -> None:
    ChainBroken(kind=K.EDITED, seq=3, detail="x")
    with pytest.raises(ValueError, match="ChainBroken"):
        ChainBroken(kind=K.BAD_SIGNATURE, seq=3, detail="x")
    with pytest.raises(ValueError):
        BadSignature(kind=K.MISSING_ROW, detail="x")


def test_a_ledger_discrepancy_reads_as_before_in_json() -> None:
    found = BadSignature(kind=K.BAD_SIGNATURE, seq=7, detail="signature does not verify")
    assert found.as_dict() == {"kind": "bad_signature", "seq": 7,
                               "detail": "signature does not verify"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.seq = 8  # type: ignore[misc]


def test_a_row_that_differs_carries_both_values() -> None:
    found = RowDiffers.of(table="items", key="abcd", seq=4, field="officer", found="Mallory",
                          expected="张三")
    assert (found.expected, found.found, found.field) == ("张三", "Mallory", "officer")
    assert found.detail == "items row abcd: officer is 'Mallory' but the ledger says '张三'"
    assert found.as_dict() == {"kind": "row_differs", "seq": 4, "detail": found.detail}


def test_object_discrepancies_name_their_item() -> None:
    bad = ChecksumMismatch.of(ITEM, found="cd" * 32, size=10)
    assert (bad.kind, bad.item, bad.expected, bad.found) == (K.CHECKSUM_MISMATCH, ITEM, ITEM,
                                                             "cd" * 32)
    assert bad.as_dict()["sha256"] == ITEM and bad.as_dict()["problem"] == bad.detail
