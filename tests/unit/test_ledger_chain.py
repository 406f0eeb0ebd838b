"""The custody ledger's chain: seal, verify_chain, key rotation, the JSON-lines mirror."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from msgspec import structs

from ingestd.domain.models import LedgerEntry, UnreadableEntry, body_of
from ingestd.integrity.discrepancy import BadSignature, ChainBroken
from ingestd.integrity.ledger import (
    GENESIS_HASH,
    ChainCheck,
    KeyChain,
    Mirror,
    compare_mirror,
    from_json,
    seal,
    to_json,
    verify_chain,
)
from ingestd.integrity.signing import PublicKey, StationKey

T = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
ITEM = "ab" * 32


@pytest.fixture(scope="module")
def key() -> StationKey:
    return StationKey.generate()


def chain(key: StationKey, n: int = 5, *, start: int = 1, prev: str = GENESIS_HASH,
          kinds: list[str] | None = None) -> list[LedgerEntry]:
    out = []
    for i in range(n):
        entry = seal(seq=start + i, at=T + timedelta(minutes=start + i), station="station-01",
                     actor="tester", kind=(kinds or [])[i] if kinds else "acquired", item=ITEM,
                     data={"n": i, "path": f"DCIM/{i}.MP4"}, prev_hash=prev, key=key)
        out.append(entry)
        prev = entry.entry_hash
    return out


def trusted(*keys: StationKey) -> dict[str, PublicKey]:
    return {k.key_id: k.public for k in keys}


def kinds_of(problems: list) -> list[tuple[str, int | None]]:
    return [(p.kind, p.seq) for p in problems]


def test_an_intact_chain_verifies(key: StationKey) -> None:
    entries = chain(key)
    problems, count, head = verify_chain(entries, trusted(key))
    assert problems == []
    assert count == 5
    assert head == entries[-1].entry_hash
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in zip(entries, entries[1:], strict=False))


def test_an_entry_dated_before_the_one_it_follows_is_found(key: StationKey) -> None:
    # Signed and linked as it should be, but dated a day before its predecessor: a clock set
    # back (or a forger) shows in the times alone. The same time twice is no discrepancy.
    entries = dated(key, [T, T + timedelta(hours=1), T + timedelta(hours=1),
                          T - timedelta(days=1), T + timedelta(hours=2)], rule=True)
    problems, count, _ = verify_chain(entries, trusted(key))
    assert count == 5
    assert kinds_of(problems) == [("time_went_back", 4)]
    assert "2026-02-28T02:00:00" in problems[0].detail and "2026-03-01T03:00:00" in \
        problems[0].detail


def test_times_are_checked_from_the_station_s_time_rule_on(key: StationKey) -> None:
    # An earlier release took some times before its writes: a ledger it began may be a
    # little out of order before the `time_rule` entry that the upgrade writes, never after.
    times = [T + timedelta(seconds=2), T + timedelta(seconds=1), T + timedelta(seconds=3),
             T + timedelta(seconds=2)]
    old = dated(key, times[:2])
    marker = seal(seq=3, at=times[2], station="station-01", actor="ingestd", kind="time_rule",
                  item=None, data={"station": "station-01"}, prev_hash=old[-1].entry_hash,
                  key=key)
    after = seal(seq=4, at=times[3], station="station-01", actor="tester", kind="acquired",
                 item=ITEM, data={}, prev_hash=marker.entry_hash, key=key)
    problems, _, _ = verify_chain([*old, marker, after], trusted(key))
    assert kinds_of(problems) == [("time_went_back", 4)]
    assert verify_chain(old, trusted(key))[0] == []


def dated(key: StationKey, times: list[datetime], *, rule: bool = False) -> list[LedgerEntry]:
    """A chain with these times; with ``rule``, its first entry states the time rule."""
    entries: list[LedgerEntry] = []
    prev = GENESIS_HASH
    for seq, at in enumerate(times, start=1):
        first = rule and seq == 1
        entries.append(seal(seq=seq, at=at, station="station-01", actor="tester",
                            kind="time_rule" if first else "acquired",
                            item=None if first else ITEM, data={"n": seq}, prev_hash=prev,
                            key=key))
        prev = entries[-1].entry_hash
    return entries


def test_empty_chain() -> None:
    assert verify_chain([], {}) == ([], 0, GENESIS_HASH)


def test_edited_entry_is_found(key: StationKey) -> None:
    entries = chain(key)
    entries[2] = structs.replace(entries[2], data={**entries[2].data, "path": "other.MP4"})
    problems, _, _ = verify_chain(entries, trusted(key))
    found = kinds_of(problems)
    assert ("edited", 3) in found
    assert ("bad_signature", 3) in found
    # Only entry 3 is wrong: the next one still links to the hash entry 3 was sealed with.
    assert {seq for _, seq in found} == {3}


def test_edited_entry_with_recomputed_hash_breaks_signature_and_link(key: StationKey) -> None:
    from ingestd.domain.canonical import canonical_bytes, sha256_hex

    entries = chain(key)
    forged = structs.replace(entries[1], actor="mallory")
    forged = structs.replace(forged, entry_hash=sha256_hex(canonical_bytes(body_of(forged))))
    entries[1] = forged
    problems, _, _ = verify_chain(entries, trusted(key))
    found = kinds_of(problems)
    assert ("bad_signature", 2) in found
    assert ("broken_link", 3) in found
    assert ("edited", 2) not in found


@pytest.mark.parametrize("index", [0, 2, 4])
def test_deleted_entry_is_found(key: StationKey, index: int) -> None:
    entries = chain(key)
    del entries[index]
    problems, count, _ = verify_chain(entries, trusted(key))
    found = kinds_of(problems)
    assert count == 4
    if index < 4:
        assert ("missing", index + 1) in found
        assert ("broken_link", index + 2) in found
    else:
        # The last entry gone leaves a valid shorter chain: only a checkpoint or the mirror
        # can tell (see compare_mirror below).
        assert found == []


def test_reordered_entries_are_found(key: StationKey) -> None:
    entries = chain(key)
    entries[1], entries[2] = entries[2], entries[1]
    problems, _, _ = verify_chain(entries, trusted(key))
    found = kinds_of(problems)
    assert ("missing", 2) in found  # 3 came where 2 was expected
    assert ("out_of_order", 2) in found
    assert ("broken_link", 3) in found
    assert ("broken_link", 2) in found


def test_wrong_key_is_found(key: StationKey) -> None:
    other = StationKey.generate()
    entries = chain(key)
    # The catalog claims the station's key id belongs to another public key.
    problems, _, _ = verify_chain(entries, {key.key_id: other.public})
    assert kinds_of(problems) == [("bad_signature", n) for n in range(1, 6)]


def test_unknown_key_is_found(key: StationKey) -> None:
    entries = chain(key)
    problems, _, _ = verify_chain(entries, trusted(StationKey.generate()))
    assert kinds_of(problems) == [("unknown_key", n) for n in range(1, 6)]


def test_every_discrepancy_is_reported_not_just_the_first(key: StationKey) -> None:
    entries = chain(key, 8)
    entries[1] = structs.replace(entries[1], actor="mallory")
    del entries[4]
    problems, _, _ = verify_chain(entries, trusted(key))
    found = kinds_of(problems)
    assert ("edited", 2) in found
    assert ("missing", 5) in found
    assert ("broken_link", 6) in found


def rotation(old: StationKey, new: StationKey, *, seq: int, prev: str,
             signer: StationKey | None = None) -> LedgerEntry:
    return seal(seq=seq, at=T + timedelta(minutes=seq), station="station-01", actor="ingestd",
                kind="key_rotated", item=None,
                data={"old_key_id": old.key_id, "new_key_id": new.key_id,
                      "new_public_key": new.public.hex},
                prev_hash=prev, key=signer or old)


def test_key_rotation_entry_signed_by_the_old_key_makes_the_new_key_trusted(
        key: StationKey) -> None:
    new = StationKey.generate()
    before = chain(key, 3)
    rotated = rotation(key, new, seq=4, prev=before[-1].entry_hash)
    after = chain(new, 3, start=5, prev=rotated.entry_hash)
    problems, count, _ = verify_chain([*before, rotated, *after], trusted(key))
    assert problems == []
    assert count == 7


def test_new_key_is_not_trusted_before_its_rotation_entry(key: StationKey) -> None:
    new = StationKey.generate()
    first = chain(key, 2)
    early = chain(new, 1, start=3, prev=first[-1].entry_hash)
    rotated = rotation(key, new, seq=4, prev=early[-1].entry_hash)
    problems, _, _ = verify_chain([*first, *early, rotated], trusted(key))
    assert kinds_of(problems) == [("unknown_key", 3)]


def test_rotation_signed_by_an_untrusted_key_grants_nothing(key: StationKey) -> None:
    intruder, new = StationKey.generate(), StationKey.generate()
    first = chain(key, 2)
    forged = rotation(key, new, seq=3, prev=first[-1].entry_hash, signer=intruder)
    after = chain(new, 2, start=4, prev=forged.entry_hash)
    problems, _, _ = verify_chain([*first, forged, *after], trusted(key))
    assert kinds_of(problems) == [("unknown_key", 3), ("unknown_key", 4), ("unknown_key", 5)]


def test_edited_rotation_entry_grants_nothing(key: StationKey) -> None:
    new, swapped = StationKey.generate(), StationKey.generate()
    first = chain(key, 1)
    rotated = rotation(key, new, seq=2, prev=first[-1].entry_hash)
    tampered = structs.replace(
        rotated, data={**rotated.data, "new_public_key": swapped.public.hex})
    after = chain(swapped, 1, start=3, prev=tampered.entry_hash)
    problems, _, _ = verify_chain([*first, tampered, *after], trusted(key))
    found = kinds_of(problems)
    assert ("bad_signature", 2) in found
    assert ("unknown_key", 3) in found


def genesis(key: StationKey, *, seq: int = 1, prev: str = GENESIS_HASH,
            station: str = "station-01", signer: StationKey | None = None) -> LedgerEntry:
    return seal(seq=seq, at=T + timedelta(minutes=seq), station=station, actor="ingestd",
                kind="genesis", item=None,
                data={"station": station, "public_key": key.public.hex}, prev_hash=prev,
                key=signer or key)


def pins(key: StationKey) -> dict[str, str]:
    return {"station-01": key.public.fingerprint}


def test_the_genesis_key_with_the_pinned_fingerprint_is_proven(key: StationKey) -> None:
    start = genesis(key)
    entries = [start, *chain(key, 3, start=2, prev=start.entry_hash)]
    keys = KeyChain(pins=pins(key))
    assert verify_chain(entries, keys=keys)[0] == []
    current = keys.current("station-01")
    assert current is not None and current.key_id == key.key_id and current.since == 1


def test_a_genesis_key_other_than_the_pinned_one_proves_nothing(key: StationKey) -> None:
    rogue = StationKey.generate()
    start = genesis(rogue)
    entries = [start, *chain(rogue, 2, start=2, prev=start.entry_hash)]
    keys = KeyChain(pins=pins(key))
    problems, _, _ = verify_chain(entries, keys=keys)
    assert kinds_of(problems) == [("pin_mismatch", 1), ("unknown_key", 2), ("unknown_key", 3)]
    assert keys.current("station-01") is None
    assert kinds_of(KeyChain(pins=pins(key)).unmet_pins()) == [("pin_mismatch", None)]


def test_a_second_genesis_brings_in_no_key(key: StationKey) -> None:
    rogue = StationKey.generate()
    start = genesis(key)
    again = genesis(rogue, seq=2, prev=start.entry_hash)
    after = chain(rogue, 1, start=3, prev=again.entry_hash)
    problems, _, _ = verify_chain([start, again, *after], keys=KeyChain(pins=pins(key)))
    assert kinds_of(problems) == [("unvouched_key", 2), ("unknown_key", 3)]


def test_a_key_signs_only_for_its_own_station(key: StationKey) -> None:
    other = StationKey.generate()
    one = genesis(key)
    two = genesis(other, seq=2, prev=one.entry_hash, station="station-02")
    # station-02's key signing an entry of station-01
    forged = chain(other, 1, start=3, prev=two.entry_hash)
    problems, _, _ = verify_chain([one, two, *forged], keys=KeyChain(pins=pins(key)))
    assert kinds_of(problems) == [("unknown_key", 3)]


def test_a_retired_key_signs_nothing_after_its_rotation(key: StationKey) -> None:
    new = StationKey.generate()
    start = genesis(key)
    rotated = rotation(key, new, seq=2, prev=start.entry_hash)
    late = chain(key, 1, start=3, prev=rotated.entry_hash)
    keys = KeyChain(pins=pins(key))
    problems, _, _ = verify_chain([start, rotated, *late], keys=keys)
    assert kinds_of(problems) == [("retired_key", 3)]
    old = keys.keys[key.key_id]
    assert (old.since, old.until) == (1, 2)
    assert keys.keys[new.key_id].since == 3


def test_json_round_trip_keeps_the_signature_valid(key: StationKey) -> None:
    entries = [from_json(json.loads(json.dumps(to_json(e)))) for e in chain(key)]
    assert verify_chain(entries, trusted(key))[0] == []


# -- the mirror ------------------------------------------------------------------------------


def test_mirror_matches_and_catches_edited_missing_and_extra_lines(
        key: StationKey, tmp_path: Path) -> None:
    entries = chain(key, 5)
    mirror = Mirror(tmp_path / "ledger.jsonl")
    assert mirror.append(entries) == 5
    db = {e.seq: e for e in entries}
    assert compare_mirror(db, mirror) == []
    assert mirror.last_seq() == 5

    lines = mirror.path.read_text(encoding="utf-8").splitlines(keepends=True)
    edited = json.loads(lines[1])
    edited["actor"] = "mallory"
    lines[1] = json.dumps(edited) + "\n"
    del lines[3]
    lines.append("not json\n")
    mirror.path.write_text("".join(lines), encoding="utf-8")
    extra = chain(key, 1, start=6, prev=entries[-1].entry_hash)[0]
    with mirror.path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(to_json(extra)) + "\n")

    found = kinds_of(compare_mirror(db, mirror))
    assert ("mirror_differs", 2) in found
    assert ("missing_in_mirror", 4) in found
    assert ("mirror_unreadable", None) in found
    assert ("missing_in_catalog", 6) in found


def test_mirror_lines_out_of_order_or_repeated_are_found(key: StationKey, tmp_path: Path) -> None:
    entries = chain(key, 4)
    mirror = Mirror(tmp_path / "ledger.jsonl")
    mirror.append([entries[0], entries[2], entries[1], entries[3], entries[3]])
    found = kinds_of(compare_mirror({e.seq: e for e in entries}, mirror))
    assert found == [("mirror_out_of_order", 2), ("mirror_out_of_order", 4)]


def test_mirror_drops_only_a_torn_last_line(key: StationKey, tmp_path: Path) -> None:
    entries = chain(key, 3)
    mirror = Mirror(tmp_path / "ledger.jsonl")
    mirror.append(entries[:2])
    whole = mirror.path.read_bytes()
    torn = json.dumps(to_json(entries[2])).encode()[:40]  # a crash in the middle of a write
    mirror.path.write_bytes(whole + torn)
    mirror.truncate_partial_tail()
    assert mirror.path.read_bytes() == whole
    mirror.append(entries[2:])
    assert compare_mirror({e.seq: e for e in entries}, mirror) == []


@pytest.mark.parametrize("lines_before", [0, 2])
def test_a_last_line_whole_but_for_its_newline_is_kept(
        key: StationKey, tmp_path: Path, lines_before: int) -> None:
    entries = chain(key, lines_before + 1)
    mirror = Mirror(tmp_path / "ledger.jsonl")
    mirror.append(entries)
    whole = mirror.path.read_bytes()
    mirror.path.write_bytes(whole[:-1])  # a crash just before the newline reached the disk
    mirror.truncate_partial_tail()
    assert mirror.path.read_bytes() == whole
    assert mirror.last_seq() == lines_before + 1
    assert compare_mirror({e.seq: e for e in entries}, mirror) == []


def test_a_whole_last_line_that_is_not_the_next_entry_is_cut_and_logged(
        key: StationKey, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    entries = chain(key, 3)
    mirror = Mirror(tmp_path / "ledger.jsonl")
    mirror.append(entries[:1])
    whole = mirror.path.read_bytes()
    skipped = json.dumps(to_json(entries[2]), sort_keys=True).encode()  # entry 2 is not there
    mirror.path.write_bytes(whole + skipped)
    with caplog.at_level("WARNING", logger="ingestd.integrity.ledger"):
        mirror.truncate_partial_tail()
    assert mirror.path.read_bytes() == whole
    assert f"cut a torn last line of {len(skipped)} bytes at offset {len(whole)}" in caplog.text
    assert "DCIM" not in caplog.text  # where and how much, never what


@pytest.mark.parametrize("torn_size", [1, 70_000, 300_000])
def test_a_torn_line_longer_than_the_tail_read_is_dropped_whole(
        key: StationKey, tmp_path: Path, torn_size: int) -> None:
    entries = chain(key, 2)
    mirror = Mirror(tmp_path / "ledger.jsonl")
    mirror.append(entries[:1])
    whole = mirror.path.read_bytes()
    mirror.path.write_bytes(whole + b"{" + b"x" * torn_size)
    mirror.truncate_partial_tail()
    assert mirror.path.read_bytes() == whole
    # A mirror that is nothing but a torn first line is emptied, not left half-written.
    mirror.path.write_bytes(b'{"seq": 1, "kind"' + b"y" * torn_size)
    mirror.truncate_partial_tail()
    assert mirror.path.read_bytes() == b""


def test_last_seq_reads_the_last_complete_line_of_a_long_mirror(
        key: StationKey, tmp_path: Path) -> None:
    entries = chain(key, 400)  # well over the 64 KiB first read of the tail
    mirror = Mirror(tmp_path / "ledger.jsonl")
    assert mirror.last_seq() == 0  # no mirror yet
    mirror.append(entries)
    assert mirror.path.stat().st_size > 1 << 17
    assert mirror.last_seq() == 400
    whole = mirror.path.read_bytes()
    mirror.path.write_bytes(whole + b'{"seq": 401, "ki')  # a torn last line is not counted
    assert mirror.last_seq() == 400
    mirror.path.write_bytes(whole + b"\n\n")  # nor are blank lines
    assert mirror.last_seq() == 400
    mirror.path.write_bytes(b'{"seq": 1, "kind": "gen')  # nothing complete at all
    assert mirror.last_seq() == 0


def test_every_fault_of_one_entry_is_reported(key: StationKey) -> None:
    # A second genesis that is also badly signed: both, not just the first.
    start = genesis(key)
    rogue = StationKey.generate()
    again = genesis(rogue, seq=2, prev=start.entry_hash, signer=StationKey.generate())
    problems, _, _ = verify_chain([start, again], keys=KeyChain(pins=pins(key)))
    assert kinds_of(problems) == [("bad_signature", 2), ("unvouched_key", 2)]
    # A retired key whose signature does not verify either.
    new = StationKey.generate()
    rotated = rotation(key, new, seq=2, prev=start.entry_hash)
    (late,) = chain(key, 1, start=3, prev=rotated.entry_hash)
    late = structs.replace(late, signature=new.sign(b"something else"))
    problems, _, _ = verify_chain([start, rotated, late], keys=KeyChain(pins=pins(key)))
    assert kinds_of(problems) == [("retired_key", 3), ("bad_signature", 3)]
    assert all(isinstance(p, BadSignature) for p in problems)


def test_an_unreadable_entry_is_reported_and_the_walk_goes_on(key: StationKey) -> None:
    entries = chain(key, 5)
    check = ChainCheck(KeyChain(trusted=trusted(key)))
    for entry in entries:
        if entry.seq == 3:  # its fields do not parse: its hashes and number still count
            check.step_unreadable(UnreadableEntry(
                seq=3, station=entry.station, prev_hash=entry.prev_hash,
                entry_hash=entry.entry_hash, why="its data is not JSON"))
        else:
            check.step(entry)
    assert kinds_of(check.problems) == [("entry_unreadable", 3)]
    assert isinstance(check.problems[0], ChainBroken)
    assert check.count == 5 and check.head == entries[-1].entry_hash
    # Its link is still checked.
    again = ChainCheck(KeyChain(trusted=trusted(key)))
    again.step(entries[0])
    again.step_unreadable(UnreadableEntry(seq=2, station="station-01", prev_hash="f" * 64,
                                          entry_hash=entries[1].entry_hash, why="bad time"))
    again.step(entries[2])
    assert kinds_of(again.problems) == [("entry_unreadable", 2), ("broken_link", 2)]
