"""``ledger verify`` on a real station: every kind of tampering with the mirror or the catalog
is found, typed, and all of them at once; key rotation keeps the chain valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import (
    SERIAL,
    Clips,
    build_recorder,
    cli_json,
    item_record,
    ledger_problems,
    run_cli,
)

from ingestd.integrity.signing import StationKey
from tests.support import catalog

pytestmark = pytest.mark.integration

MEDIA = "DCIM/100MEDIA"


@pytest.fixture
def busy_home(home: Path, tmp_path: Path, clips: Clips) -> Path:
    """A station with two items, a label and a flag: every kind of catalog row."""
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a, f"{MEDIA}/B.MP4": clips.b,
                                            f"{MEDIA}/EMPTY.MP4": b""})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    labelled = run_cli(home, "label", clips.a.sha256[:10], "--case", "C-2026-1", "--party", "Li")
    assert labelled.exit_code == 0, labelled.stderr
    ok = run_cli(home, "ledger", "verify", "--json")
    assert ok.exit_code == 0 and ok.json()["ok"] is True, ok.stdout
    return home


def mirror_lines(home: Path) -> list[str]:
    return (home / "ledger.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)


def write_mirror(home: Path, lines: list[str]) -> None:
    (home / "ledger.jsonl").write_text("".join(lines), encoding="utf-8")


def seq_of(home: Path, kind: str, nth: int = 0, *, item: str | None = None) -> int:
    entries = [json.loads(line) for line in mirror_lines(home)]
    return [e["seq"] for e in entries
            if e["kind"] == kind and item in (None, e["item"])][nth]


def edit_mirror_line(home: Path, seq: int) -> None:
    lines = mirror_lines(home)
    entry = json.loads(lines[seq - 1])
    assert entry["seq"] == seq
    entry["actor"] = "mallory"
    lines[seq - 1] = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
    write_mirror(home, lines)


def delete_mirror_line(home: Path, seq: int) -> None:
    lines = mirror_lines(home)
    assert json.loads(lines[seq - 1])["seq"] == seq
    del lines[seq - 1]
    write_mirror(home, lines)


def edit_catalog_entry(home: Path, seq: int) -> None:
    entry = catalog.ledger_entry(home, seq)
    data = {**entry["data"], "path": "DCIM/100MEDIA/OTHER.MP4"}
    assert catalog.forge_entry(home, seq, data=data) == 1


def delete_catalog_entry(home: Path, seq: int) -> None:
    assert catalog.delete_entries(home, seq=seq) == 1


def test_intact_ledger_verifies_with_a_summary(busy_home: Path) -> None:
    result = run_cli(busy_home, "ledger", "verify")
    assert result.exit_code == 0
    assert "ledger intact" in result.stdout
    report = run_cli(busy_home, "ledger", "verify", "--json").json()
    assert report["entries"] == report["head_seq"] == len(mirror_lines(busy_home))
    assert report["head_hash"] == json.loads(mirror_lines(busy_home)[-1])["entry_hash"]


def test_edited_mirror_line_is_found(busy_home: Path) -> None:
    seq = seq_of(busy_home, "stored")
    edit_mirror_line(busy_home, seq)
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert found == [("mirror_differs", seq)]


@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_deleted_mirror_line_is_found(busy_home: Path, which: str) -> None:
    count = len(mirror_lines(busy_home))
    seq = {"first": 1, "middle": count // 2, "last": count}[which]
    delete_mirror_line(busy_home, seq)
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert found == [("missing_in_mirror", seq)]


def test_reordered_mirror_lines_are_found(busy_home: Path) -> None:
    lines = mirror_lines(busy_home)
    lines[3], lines[4] = lines[4], lines[3]
    write_mirror(busy_home, lines)
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert found == [("mirror_out_of_order", 4)]


def test_edited_catalog_ledger_row_is_found(busy_home: Path) -> None:
    seq = seq_of(busy_home, "acquired")
    edit_catalog_entry(busy_home, seq)
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert ("edited", seq) in found
    assert ("bad_signature", seq) in found
    assert ("mirror_differs", seq) in found


@pytest.mark.parametrize("kind", ["stored", "labelled"])
def test_deleted_catalog_ledger_row_is_found(busy_home: Path, kind: str) -> None:
    seq = seq_of(busy_home, kind)
    last = seq == len(mirror_lines(busy_home))
    delete_catalog_entry(busy_home, seq)
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert ("missing_in_catalog", seq) in found  # the mirror still has it
    assert ("unbacked_row", seq) in found  # a catalog row names an entry that is gone
    if not last:
        assert ("missing", seq) in found
        assert ("broken_link", seq + 1) in found


def test_changed_item_row_is_found(busy_home: Path, clips: Clips) -> None:
    assert catalog.forge_item(busy_home, clips.b.sha256, recorder="BWC-9999") == 1
    code, found = ledger_problems(busy_home)
    assert code == 1
    stored_seq = item_record(busy_home, clips.b.sha256)["ledger_seq"]
    assert found == [("row_differs", stored_seq)]
    detail = run_cli(busy_home, "ledger", "verify", "--json").json()["problems"][0]["detail"]
    assert "recorder" in detail and "BWC-9999" in detail


def test_changed_label_row_is_found(busy_home: Path) -> None:
    assert catalog.forge_labels(busy_home, case_no="C-OTHER") == 1
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert found == [("row_differs", seq_of(busy_home, "labelled"))]


def test_deleted_item_row_is_found(busy_home: Path, clips: Clips) -> None:
    assert catalog.delete_item(busy_home, clips.b.sha256) == 1
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert ("missing_row", seq_of(busy_home, "stored", item=clips.b.sha256)) in found


def test_a_catalog_row_no_entry_backs_is_found(busy_home: Path, clips: Clips) -> None:
    # A label slipped into the catalog, pointing at an entry that is not a label.
    catalog.insert_label(busy_home, clips.b.sha256, ledger_seq=seq_of(busy_home, "stored"),
                         case_no="C-FAKE", party="X", officer="Y", by="mallory",
                         at="2026-01-01")
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert found == [("unbacked_row", seq_of(busy_home, "stored"))]


def test_every_discrepancy_is_reported_at_once(busy_home: Path, clips: Clips) -> None:
    count = len(mirror_lines(busy_home))
    acquired = seq_of(busy_home, "acquired", 1)
    stored = seq_of(busy_home, "stored", item=clips.a.sha256)  # files go in parallel
    edit_mirror_line(busy_home, 2)
    edit_catalog_entry(busy_home, acquired)
    delete_mirror_line(busy_home, count)  # the last line: indexes above are unchanged
    delete_catalog_entry(busy_home, stored)
    b_record = item_record(busy_home, clips.b.sha256)
    catalog.forge_item(busy_home, clips.b.sha256, size=b_record["size"] + 1)
    b_stored = b_record["ledger_seq"]
    assert b_stored != stored

    code, found = ledger_problems(busy_home)
    assert code == 1
    kinds = {k for k, _ in found}
    assert {"mirror_differs", "edited", "bad_signature", "missing_in_mirror", "missing",
            "broken_link", "missing_in_catalog", "unbacked_row", "row_differs"} <= kinds
    assert ("mirror_differs", 2) in found
    assert ("edited", acquired) in found
    assert ("missing", stored) in found
    assert ("unbacked_row", stored) in found
    assert ("row_differs", b_stored) in found

    text = run_cli(busy_home, "ledger", "verify")
    assert text.exit_code == 1
    assert f"ledger has {len(found)} problems" in text.stdout
    for kind in kinds:
        assert kind in text.stdout


def test_wrong_public_key_in_the_catalog_is_found(busy_home: Path) -> None:
    impostor = StationKey.generate()
    assert catalog.forge_keys(busy_home, public_key=impostor.public.hex) == 1
    code, found = ledger_problems(busy_home)
    assert code == 1
    # The keys table is only a cache: the entries still verify with the keys the chain proves.
    assert found == [("wrong_key", None)]


def test_entries_and_keys_that_cannot_be_read_do_not_stop_the_check(
        busy_home: Path, clips: Clips) -> None:
    # Values no parser takes, where a check that stops at the first would stop: an entry whose
    # data is not JSON (a stored entry, whose item row names it), another whose time is not a
    # time, a keys row whose public key is not hex, and an ordinary edit after them all.
    stored = seq_of(busy_home, "stored", item=clips.a.sha256)
    labelled = seq_of(busy_home, "labelled")
    acquired = seq_of(busy_home, "acquired", 1)
    assert catalog.tamper(busy_home, "UPDATE ledger SET data = '{not json' WHERE seq = ?",
                           stored) == 1
    assert catalog.tamper(busy_home, "UPDATE ledger SET at = 'yesterday' WHERE seq = ?",
                           labelled) == 1
    assert catalog.tamper(busy_home, "UPDATE keys SET public_key = 'not hex'") == 1
    edit_catalog_entry(busy_home, acquired)
    entries = len(mirror_lines(busy_home))

    result = run_cli(busy_home, "ledger", "verify", "--json")

    assert result.exit_code == 1, result.stderr
    report = result.json()
    found = [(p["kind"], p["seq"]) for p in report["problems"]]
    assert report["entries"] == entries, "every entry walked, the unreadable ones too"
    assert ("entry_unreadable", stored) in found and ("entry_unreadable", labelled) in found
    assert ("mirror_differs", stored) in found and ("mirror_differs", labelled) in found
    assert ("edited", acquired) in found and ("mirror_differs", acquired) in found
    assert ("wrong_key", None) in found
    assert not any(k == "broken_link" for k, _ in found), "their stored hashes still link"
    why = {p["seq"]: p["detail"] for p in report["problems"] if p["kind"] == "entry_unreadable"}
    assert "not JSON" in why[stored] and "'yesterday'" in why[labelled]
    # verify reads the item's entries the same way: it says so, and checks the rest.
    checked = run_cli(busy_home, "verify", "--hash", clips.a.sha256, "--json")
    assert checked.exit_code == 1
    (verdict,) = checked.json()["results"]
    assert any(f"entry {stored} cannot be read" in p for p in verdict["problems"])
    text = run_cli(busy_home, "ledger", "verify")
    assert text.exit_code == 1 and "entry_unreadable" in text.stdout


def test_a_station_key_the_catalog_does_not_know_is_found(busy_home: Path) -> None:
    keys = busy_home / "keys"
    (keys / "station.key").rename(keys / "station.key.orig")
    StationKey.generate().save(keys)
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert found == [("unknown_key", None)]


def test_key_rotation_keeps_the_chain_valid(busy_home: Path, tmp_path: Path,
                                            clips: Clips) -> None:
    old = run_cli(busy_home, "keys", "show", "--json").json()["key_id"]
    rotated = run_cli(busy_home, "keys", "rotate")
    assert rotated.exit_code == 0, rotated.stderr
    shown = run_cli(busy_home, "keys", "show", "--json").json()
    assert shown["key_id"] != old
    assert {k["key_id"] for k in shown["trusted"]} == {old, shown["key_id"]}
    assert [k["retired_at"] is not None for k in shown["trusted"]
            if k["key_id"] == old] == [True]
    rotation = json.loads(mirror_lines(busy_home)[-1])
    assert rotation["kind"] == "key_rotated" and rotation["key_id"] == old

    rec = build_recorder(tmp_path / "rec2", {f"{MEDIA}/C.MP4": clips.c})
    assert run_cli(busy_home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    after = json.loads(mirror_lines(busy_home)[-1])
    assert after["key_id"] == shown["key_id"]
    assert ledger_problems(busy_home) == (0, [])
    assert run_cli(busy_home, "verify", "--hash", clips.c.sha256).exit_code == 0
    assert run_cli(busy_home, "verify", "--hash", clips.a.sha256).exit_code == 0


# -- every row that says something about evidence is backed, both ways ---------------------------


def empty_sha(home: Path) -> str:
    (item,) = [i for i in cli_json(home, "items")["items"] if i["size"] == 0]
    return str(item["sha256"])


def latest_retention_seq(home: Path, sha: str) -> int:
    entries = [json.loads(line) for line in mirror_lines(home)]
    return max(e["seq"] for e in entries
               if e["item"] == sha and isinstance(e["data"].get("retention"), dict))


@pytest.mark.parametrize("column,value", [
    ("retain_until", "2099-01-01T00:00:00.000000Z"), ("hold", 1),
    ("retention_class", "long-term")])
def test_a_changed_retention_is_found(busy_home: Path, clips: Clips, column: str,
                                      value: object) -> None:
    for sha in (clips.a.sha256, clips.b.sha256):  # labelled, and only stored
        assert catalog.forge_item(busy_home, sha, **{column: value}) == 1
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert sorted(found) == sorted(("row_differs", latest_retention_seq(busy_home, sha))
                                   for sha in (clips.a.sha256, clips.b.sha256))
    assert seq_of(busy_home, "labelled") == latest_retention_seq(busy_home, clips.a.sha256)
    assert seq_of(busy_home, "stored", item=clips.b.sha256) == latest_retention_seq(
        busy_home, clips.b.sha256)


@pytest.mark.parametrize("column", ["officer", "original_name"])
def test_a_changed_officer_or_original_name_is_found(busy_home: Path, clips: Clips,
                                                     column: str) -> None:
    assert catalog.forge_item(busy_home, clips.b.sha256, **{column: "forged"}) == 1
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert found == [("row_differs", seq_of(busy_home, "stored", item=clips.b.sha256))]
    detail = run_cli(busy_home, "ledger", "verify", "--json").json()["problems"][0]["detail"]
    assert column in detail and "forged" in detail


def test_a_deleted_flag_is_found_and_stays_flagged_in_the_ledger(busy_home: Path) -> None:
    sha = empty_sha(busy_home)
    flagged = sorted(f["ledger_seq"] for f in cli_json(busy_home, "show", sha)["flags"])
    assert flagged
    assert catalog.delete_flags(busy_home, sha) == len(flagged)
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert found == [("missing_row", seq) for seq in flagged]


def test_deleted_label_justification_and_acquisition_rows_are_found(busy_home: Path) -> None:
    sha = empty_sha(busy_home)
    justified = run_cli(busy_home, "justify", sha[:12], "--flag", "empty_file",
                        "--reason", "recorder fault")
    assert justified.exit_code == 0, justified.stderr
    assert ledger_problems(busy_home) == (0, [])
    (acq,) = cli_json(busy_home, "show", sha)["acquisitions"]
    assert catalog.delete_labels(busy_home) == 1
    assert catalog.delete_justifications(busy_home) == 1
    assert catalog.delete_acquisition(busy_home, acq["id"]) == 1
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert sorted(found) == sorted([
        ("missing_row", seq_of(busy_home, "labelled")),
        ("missing_row", seq_of(busy_home, "justified")),
        ("missing_row", acq["ledger_seq"])])


def test_replica_rows_and_evictions_are_backed(busy_home: Path, clips: Clips,
                                               tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    with (busy_home / "ingestd.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'\n[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                 'prefix = "bwc"\nsame_filesystem_ok = true\n')
    assert run_cli(busy_home, "replicate").exit_code == 0
    assert ledger_problems(busy_home) == (0, [])
    replicated = {json.loads(line)["item"]: json.loads(line)["seq"]
                  for line in mirror_lines(busy_home) if json.loads(line)["kind"] == "replicated"}
    a, b = clips.a.sha256, clips.b.sha256
    assert catalog.forge_replicas(busy_home, a, key="elsewhere") == 1
    assert catalog.delete_replicas(busy_home, item=b) == 1
    # a local copy said gone that no eviction entry records
    assert catalog.forge_item(busy_home, b, local_present=False) == 1
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert sorted(found, key=str) == sorted(
        [("row_differs", replicated[a]), ("missing_row", replicated[b]),
         ("unbacked_row", None)], key=str)
