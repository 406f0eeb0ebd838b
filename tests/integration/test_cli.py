"""The command line as investigators, supervisors and IT staff use it: labels, show, items,
verify, status, devices, init; exit codes and messages; and the real console script."""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    RECORDED_T0,
    SERIAL,
    Clips,
    build_recorder,
    every_label,
    init_station,
    ledger_lines,
    run_cli,
    run_ingestd,
    write_config,
)

from ingestd.domain.canonical import format_time, parse_time
from tests.support import catalog
from tests.support.damage import flipped

pytestmark = pytest.mark.integration

MEDIA = "DCIM/100MEDIA"


def mirror_count(home: Path) -> int:
    return len((home / "ledger.jsonl").read_text(encoding="utf-8").splitlines())


def ingest_ok(home: Path, rec: Path, serial: str = SERIAL) -> dict:
    result = run_cli(home, "ingest", rec, "--serial", serial, "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()


def colliding_contents() -> tuple[bytes, bytes]:
    """Two byte strings whose SHA-256 share the first 8 hex digits (a birthday search)."""
    seen: dict[str, bytes] = {}
    i = 0
    while True:
        data = b"ambiguous %d" % i
        key = hashlib.sha256(data).hexdigest()[:8]
        if key in seen:
            return seen[key], data
        seen[key] = data
        i += 1


# -- labels ----------------------------------------------------------------------------------


@pytest.fixture
def two_recorders(tmp_path: Path, clips: Clips) -> Path:
    """R-1 (Li Na) docked clips a and b, R-2 (Zhao Lei) clip c."""
    home = init_station(tmp_path / "home", register={"R-1": ("Li Na", "P-1"),
                                                     "R-2": ("Zhao Lei", "P-2")})
    ingest_ok(home, build_recorder(tmp_path / "r1", {f"{MEDIA}/A.MP4": clips.a,
                                                     f"{MEDIA}/B.MP4": clips.b}), "R-1")
    ingest_ok(home, build_recorder(tmp_path / "r2", {f"{MEDIA}/C.MP4": clips.c}), "R-2")
    return home


def test_label_by_prefix_with_the_officer_from_the_registry(two_recorders: Path,
                                                            clips: Clips) -> None:
    home = two_recorders
    result = run_cli(home, "label", clips.a.sha256[:8], "--case", "C-2026-001",
                     "--party", "张三", "--json")
    assert result.exit_code == 0, result.stderr
    (done,) = result.json()["labelled"]
    assert done["sha256"] == clips.a.sha256
    assert (done["case"], done["party"], done["officer"]) == ("C-2026-001", "张三", "Li Na")
    assert done["retention_class"] == "evidence"
    shown = run_cli(home, "show", clips.a.sha256[:12], "--json").json()
    assert shown["item"]["case"] == "C-2026-001"
    assert shown["item"]["party"] == "张三"
    assert shown["item"]["officer"] == "Li Na"
    labelled = [h for h in shown["history"] if h["kind"] == "labelled"]
    assert len(labelled) == 1 and labelled[0]["actor"] == "tester"


def test_label_history_is_kept_and_the_latest_is_current(two_recorders: Path,
                                                         clips: Clips) -> None:
    home = two_recorders
    assert run_cli(home, "label", clips.c.sha256, "--case", "C-1", "--party", "Wang",
                   "--by", "investigator-7").exit_code == 0
    assert run_cli(home, "label", clips.c.sha256, "--case", "C-1", "--party", "Wang Wu",
                   "--officer", "Qian Jun", "--by", "supervisor-2").exit_code == 0
    shown = run_cli(home, "show", clips.c.sha256, "--json").json()
    assert [(lb["party"], lb["officer"], lb["by"]) for lb in shown["labels"]] == [
        ("Wang", "Zhao Lei", "investigator-7"), ("Wang Wu", "Qian Jun", "supervisor-2")]
    assert (shown["item"]["party"], shown["item"]["officer"]) == ("Wang Wu", "Qian Jun")
    history = shown["history"]
    assert [h["kind"] for h in history][:2] == ["acquired", "stored"]
    assert [(h["actor"], h["data"]["party"]) for h in history if h["kind"] == "labelled"] == [
        ("investigator-7", "Wang"), ("supervisor-2", "Wang Wu")]
    assert [h["seq"] for h in history] == sorted(h["seq"] for h in history)
    text = run_cli(home, "show", clips.c.sha256)
    assert text.exit_code == 0
    assert "Wang Wu" in text.stdout and "labelled" in text.stdout


def test_label_refs_are_checked_before_anything_is_written(two_recorders: Path,
                                                           clips: Clips) -> None:
    home = two_recorders
    before = mirror_count(home)
    cases = [
        (["abc1234"], 2, "at least 8 hex digits"),
        (["not-hex!"], 2, "at least 8 hex digits"),
        (["00000000"], 10, "no item matches 00000000"),
        ([clips.a.sha256[:8], "ffffffffff"], 10, "no item matches ffffffffff"),
    ]
    for refs, code, message in cases:
        result = run_cli(home, "label", *refs, "--case", "C-9", "--party", "P")
        assert result.exit_code == code, (refs, result.stderr)
        assert message in result.stderr
    assert run_cli(home, "label", clips.a.sha256, "--case", " ", "--party", "P").exit_code == 2
    bad_category = run_cli(home, "label", clips.a.sha256, "--case", "C", "--party", "P",
                           "--category", "birthday")
    assert bad_category.exit_code == 2 and "birthday" in bad_category.stderr
    assert mirror_count(home) == before
    assert every_label(home) == []
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_an_ambiguous_prefix_is_refused(home: Path, tmp_path: Path) -> None:
    first, second = colliding_contents()
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/1.JPG": first, f"{MEDIA}/2.JPG": second})
    ingest_ok(home, rec)
    sha1, sha2 = hashlib.sha256(first).hexdigest(), hashlib.sha256(second).hexdigest()
    assert sha1[:8] == sha2[:8] and sha1 != sha2
    differ = next(i for i in range(64) if sha1[i] != sha2[i])
    for command in (["show", sha1[:8]], ["label", sha1[:8], "--case", "C", "--party", "P"]):
        result = run_cli(home, *command)
        assert result.exit_code == 11, result.stderr
        assert "matches more than one item" in result.stderr
    assert run_cli(home, "show", sha1[:differ + 1], "--json").json()["item"]["sha256"] == sha1
    assert every_label(home) == []


def test_long_term_category_is_kept_by_later_labels(two_recorders: Path, clips: Clips) -> None:
    home = two_recorders
    first = run_cli(home, "label", clips.b.sha256, "--case", "C-7", "--party", "P",
                    "--category", "obstruction", "--json").json()["labelled"][0]
    assert first["retention_class"] == "long-term"
    assert first["retain_until"] is None
    # A later label without the category must not shorten what was granted: longest wins.
    again = run_cli(home, "label", clips.b.sha256, "--case", "C-7", "--party", "P2", "--json")
    assert again.exit_code == 0
    item = run_cli(home, "show", clips.b.sha256, "--json").json()["item"]
    assert item["retain_until"] is None
    assert item["retention_class"] == "long-term"


def test_routine_items_are_kept_a_year_and_labels_extend_it(two_recorders: Path,
                                                            clips: Clips) -> None:
    home = two_recorders
    item = run_cli(home, "show", clips.a.sha256, "--json").json()["item"]
    assert item["retention_class"] == "routine"
    assert clips.a.recorded is not None
    # a year from when it was stored (its recording ended earlier)
    assert item["retain_until"] == format_time(parse_time(item["stored_at"])
                                               + timedelta(days=365))
    done = run_cli(home, "label", clips.a.sha256, "--case", "C", "--party", "P", "--json")
    assert done.json()["labelled"][0]["retain_until"] > item["retain_until"]


# -- items -----------------------------------------------------------------------------------


def listed(home: Path, *filters: str) -> list[str]:
    result = run_cli(home, "items", *filters, "--json")
    assert result.exit_code == 0, result.stderr
    return [i["sha256"] for i in result.json()["items"]]


def test_items_filters(two_recorders: Path, clips: Clips) -> None:
    home = two_recorders
    a, b, c = clips.a.sha256, clips.b.sha256, clips.c.sha256
    assert listed(home) == [a, b, c]  # by recorded time
    run_cli(home, "label", a, "--case", "C-1", "--party", "P")
    run_cli(home, "label", c, "--case", "C-2", "--party", "P", "--officer", "Qian Jun")
    assert listed(home, "--case", "C-1") == [a]
    assert listed(home, "--case", "C-3") == []
    assert listed(home, "--officer", "Li Na") == [a, b]
    assert listed(home, "--officer", "Qian Jun") == [c]
    assert listed(home, "--officer", "Zhao Lei") == []  # the label names another officer
    assert listed(home, "--recorder", "R-2") == [c]
    since = (RECORDED_T0 + timedelta(minutes=30)).isoformat()
    until = (RECORDED_T0 + timedelta(minutes=90)).isoformat()
    assert listed(home, "--since", since) == [b, c]
    assert listed(home, "--until", until) == [a, b]
    assert listed(home, "--since", since, "--until", until) == [b]
    assert listed(home, "--limit", "2") == [a, b]
    info = run_cli(home, "items", "--case", "C-2", "--json").json()["items"][0]
    assert {"sha256", "size", "recorder", "officer", "case", "party", "recorded_at",
            "stored_at", "name", "flags"} <= set(info)
    bad = run_cli(home, "items", "--since", "last tuesday")
    assert bad.exit_code == 2 and "--since" in bad.stderr
    text = run_cli(home, "items")
    assert text.exit_code == 0 and "3 items" in text.stdout


def test_items_by_flag(home: Path, tmp_path: Path, clips: Clips) -> None:
    ingest_ok(home, build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a,
                                                      f"{MEDIA}/E.MP4": b""}))
    empty = hashlib.sha256(b"").hexdigest()
    assert listed(home, "--flag", "empty_file") == [empty]
    assert listed(home, "--flag", "late_label") == []
    bad = run_cli(home, "items", "--flag", "no_such_flag")
    assert bad.exit_code == 2


# -- verify ----------------------------------------------------------------------------------


def test_verify_a_copy_a_modified_copy_and_a_hash(home: Path, tmp_path: Path,
                                                  clips: Clips) -> None:
    ingest_ok(home, build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a}))
    run_cli(home, "label", clips.a.sha256, "--case", "C-5", "--party", "P")
    copy = tmp_path / "export" / "evidence.mp4"
    copy.parent.mkdir()
    shutil.copyfile(clips.a.path, copy)
    good = run_cli(home, "verify", copy, "--json")
    assert good.exit_code == 0, good.stdout
    (verdict,) = good.json()["results"]
    assert set(verdict) >= {"path", "sha256", "match", "item", "problems"}
    assert verdict["path"] == str(copy)
    assert verdict["sha256"] == clips.a.sha256
    assert verdict["match"] is True and verdict["problems"] == []
    assert verdict["item"]["case"] == "C-5" and verdict["item"]["officer"] == OFFICER
    assert verdict["item"]["recorded_start"] == format_time(clips.a.recorded)  # type: ignore[arg-type]
    text = run_cli(home, "verify", copy)
    assert text.exit_code == 0
    assert "MATCH" in text.stdout and "C-5" in text.stdout and OFFICER in text.stdout

    modified = tmp_path / "export" / "modified.mp4"
    data = flipped(clips.a.path.read_bytes())
    modified.write_bytes(data)
    bad = run_cli(home, "verify", modified, "--json")
    assert bad.exit_code == 1
    (verdict,) = bad.json()["results"]
    assert verdict["match"] is False and verdict["item"] is None
    assert verdict["sha256"] == hashlib.sha256(data).hexdigest()
    assert any("not evidence" in p for p in verdict["problems"])

    both = run_cli(home, "verify", copy, modified, tmp_path / "missing.mp4", "--json")
    assert both.exit_code == 1
    results = both.json()["results"]
    assert [r["match"] for r in results] == [True, False, False]
    assert "cannot read" in results[2]["problems"][0]

    by_hash = run_cli(home, "verify", "--hash", clips.a.sha256.upper(), "--json")
    assert by_hash.exit_code == 0
    assert by_hash.json()["results"][0]["match"] is True
    unknown = run_cli(home, "verify", "--hash", "0" * 64, "--json")
    assert unknown.exit_code == 1 and unknown.json()["results"][0]["item"] is None
    assert run_cli(home, "verify", "--hash", clips.a.sha256[:16]).exit_code == 2
    assert run_cli(home, "verify").exit_code == 2
    assert run_cli(home, "verify", copy, "--hash", clips.a.sha256).exit_code == 2


def test_verify_finds_a_tampered_signature(home: Path, tmp_path: Path, clips: Clips) -> None:
    ingest_ok(home, build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a}))
    for entry in ledger_lines(home, "stored"):
        catalog.forge_entry(home, entry["seq"], actor="mallory")
    result = run_cli(home, "verify", "--hash", clips.a.sha256, "--json")
    assert result.exit_code == 1
    assert any("altered" in p for p in result.json()["results"][0]["problems"])


# -- status, devices, init, config -----------------------------------------------------------


def test_status_json(home: Path, tmp_path: Path, clips: Clips) -> None:
    ingest_ok(home, build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a,
                                                      f"{MEDIA}/E.MP4": b""}))
    run_cli(home, "ingest", tmp_path / "rec", "--serial", "UNKNOWN-1")
    result = run_cli(home, "status", "--json")
    assert result.exit_code == 0
    info = result.json()
    assert info["station"] == "station-01"
    assert info["store"]["path"] == str(home / "store")
    assert info["store"]["items"] == 2
    assert info["store"]["bytes"] == clips.a.size
    assert 0 < info["store"]["free"] <= info["store"]["total"]
    assert info["items"]["total"] == 2
    assert info["items"]["flags"] == {"empty_file": 1, "damaged_media": 1}
    assert info["acquisitions"] == {"stored": 2}
    assert info["recorders"] == 1
    assert [(d["serial"], d["state"]) for d in info["docks"]] == [
        ("UNKNOWN-1", "refused"), (SERIAL, "done")]
    assert info["docks"][1]["files_new"] == 2
    text = run_cli(home, "status")
    assert text.exit_code == 0 and "station-01" in text.stdout


def test_devices_add_list_remove(home: Path, tmp_path: Path, clips: Clips) -> None:
    added = run_cli(home, "devices", "add", "R-77", "--officer", "Sun Li", "--officer-id", "9",
                    "--unit", "Traffic")
    assert added.exit_code == 0
    rows = run_cli(home, "devices", "list", "--json").json()["recorders"]
    assert [(r["serial"], r["officer"], r["unit"]) for r in rows] == [
        (SERIAL, OFFICER, ""), ("R-77", "Sun Li", "Traffic")]
    # Reassigned to another officer: new items carry the new officer.
    run_cli(home, "devices", "add", "R-77", "--officer", "Ma Chao", "--officer-id", "10")
    report = ingest_ok(home, build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a}),
                       "R-77")
    assert run_cli(home, "show", report["items"][0]["sha256"], "--json").json()["item"][
        "officer"] == "Ma Chao"
    assert run_cli(home, "devices", "remove", "R-77").exit_code == 0
    refused = run_cli(home, "ingest", tmp_path / "rec", "--serial", "R-77")
    assert refused.exit_code == 6
    assert [r["serial"] for r in run_cli(home, "devices", "list", "--json").json()[
        "recorders"]] == [SERIAL]
    every = run_cli(home, "devices", "list", "--all", "--json").json()["recorders"]
    assert {r["serial"]: r["active"] for r in every} == {SERIAL: True, "R-77": False}
    missing = run_cli(home, "devices", "remove", "R-NONE")
    assert missing.exit_code == 10 and "R-NONE" in missing.stderr
    assert run_cli(home, "devices", "add", "X", "--officer", " ", "--officer-id", "1"
                   ).exit_code == 2
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_init_twice_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = run_cli(home, "init", "--station", "dock-3", "--json")
    assert first.exit_code == 0, first.stderr
    info = first.json()
    assert info["station"] == "dock-3" and info["home"] == str(home.resolve())
    key = (home / "keys" / "station.key").read_bytes()
    config = (home / "ingestd.toml").read_text()
    mirror = (home / "ledger.jsonl").read_text()
    again = run_cli(home, "init", "--station", "other")
    assert again.exit_code == 0
    assert "everything was in place" in again.stdout
    assert (home / "keys" / "station.key").read_bytes() == key
    assert (home / "ingestd.toml").read_text() == config
    assert (home / "ledger.jsonl").read_text() == mirror
    assert json.loads(mirror)["kind"] == "genesis"
    assert run_cli(home, "keys", "show", "--json").json()["station"] == "dock-3"


def test_a_bad_config_stops_every_command_with_the_key_and_reason(home: Path) -> None:
    config = (home / "ingestd.toml").read_text()
    write_config(home, config + '\n[windows]\ningest = "a day"\n')
    result = run_cli(home, "status")
    assert result.exit_code == 3
    assert "windows.ingest" in result.stderr and "not a duration" in result.stderr
    write_config(home, config + "\n[ingest]\nwipe_after = true\n")
    result = run_cli(home, "ingest", home, "--serial", SERIAL)
    assert result.exit_code == 3
    assert "ingest.wipe_after: unknown key" in result.stderr
    write_config(home, config)
    assert run_cli(home, "status", "--json").json()["docks"] == []


def test_a_missing_home_says_how_to_start(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "nowhere", "status")
    assert result.exit_code == 3
    assert "ingestd --home DIR init" in result.stderr


# -- the installed console script ------------------------------------------------------------


def test_console_script_exit_codes_reach_the_shell(home: Path, tmp_path: Path,
                                                   clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    done = run_ingestd(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["items"][0]["sha256"] == clips.a.sha256
    refused = run_ingestd(home, "ingest", rec, "--serial", "NOBODY")
    assert refused.returncode == 6 and "not registered" in refused.stderr
    unknown = run_ingestd(home, "show", "deadbeef")
    assert unknown.returncode == 10 and "no item matches deadbeef" in unknown.stderr
    (home / "ledger.jsonl").write_text("")
    broken = run_ingestd(home, "ledger", "verify")
    assert broken.returncode == 1 and "missing_in_mirror" in broken.stdout


def test_a_command_run_in_the_caller_s_process_leaves_its_collector_alone(home: Path) -> None:
    """Only the ``ingestd`` program itself (``cli.command``) leaves what it made out of the
    last collection as it exits; ``cli.main``, called by a process that goes on, does not
    freeze the caller's objects."""
    assert run_cli(home, "status").exit_code == 0  # its modules imported (and frozen) once
    before = gc.get_freeze_count()
    for _ in range(3):
        assert run_cli(home, "status").exit_code == 0
    assert gc.get_freeze_count() == before
