"""What the command line does with what people type: a label changes only what it is given;
text that would go into the ledger is checked for length and control characters; with --json
an error is JSON too; what came from a recorder is printed escaped."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    SERIAL,
    Clips,
    CliResult,
    build_recorder,
    cli_json,
    every_label,
    open_station,
    run_cli,
    write_config,
)

from ingestd.cli.base import setup_logging
from ingestd.domain.docks import DockedDevice, DockEvent
from ingestd.usecases.docking import DockCoordinator
from ingestd.usecases.ingest import DockContext, Ingestor
from tests.support import catalog

pytestmark = pytest.mark.integration

MEDIA_DIR = "DCIM/100MEDIA"


def mirror(home: Path) -> str:
    return (home / "ledger.jsonl").read_text(encoding="utf-8")


@pytest.fixture
def ingested(home: Path, tmp_path: Path, clips: Clips) -> Path:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA_DIR}/A.MP4": clips.a,
                                            f"{MEDIA_DIR}/B.MP4": clips.b})
    result = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert result.exit_code == 0, result.stderr
    return home


def strings(value: object) -> Iterator[str]:
    """Every text in a JSON document (keys too), however deep."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from strings(key)
            yield from strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from strings(inner)


def current(home: Path, sha: str) -> tuple[str, str, str]:
    item = run_cli(home, "show", sha, "--json").json()["item"]
    return item["case"], item["party"], item["officer"]


# -- labels change only what they are given ----------------------------------------------------


def test_relabelling_the_case_keeps_an_officer_set_by_hand(ingested: Path, clips: Clips) -> None:
    home, sha = ingested, clips.a.sha256
    assert run_cli(home, "label", sha, "--case", "C-1", "--party", "张三").exit_code == 0
    assert current(home, sha) == ("C-1", "张三", OFFICER)
    assert run_cli(home, "label", sha, "--officer", "王五").exit_code == 0
    assert current(home, sha) == ("C-1", "张三", "王五")
    # Only the case is given: party and the hand-set officer carry over, not the registry's.
    moved = run_cli(home, "label", sha, "--case", "C-2", "--json")
    assert moved.exit_code == 0, moved.stderr
    (done,) = moved.json()["labelled"]
    assert (done["case"], done["party"], done["officer"]) == ("C-2", "张三", "王五")
    assert current(home, sha) == ("C-2", "张三", "王五")
    entries = [json.loads(line) for line in mirror(home).splitlines()]
    last = [e for e in entries if e["kind"] == "labelled"][-1]
    assert (last["data"]["case"], last["data"]["party"], last["data"]["officer"]) == (
        "C-2", "张三", "王五")
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_a_later_label_keeps_the_categories_unless_given(ingested: Path, clips: Clips) -> None:
    home, sha = ingested, clips.b.sha256
    run_cli(home, "label", sha, "--case", "C-7", "--party", "P", "--category", "dispute")
    assert run_cli(home, "label", sha, "--party", "P2").exit_code == 0
    rows = cli_json(home, "show", sha)["labels"]
    assert [(r["party"], json.loads(r["categories"])) for r in rows] == [
        ("P", ["dispute"]), ("P2", ["dispute"])]
    run_cli(home, "label", sha, "--category", "obstruction")
    last = cli_json(home, "show", sha)["labels"][-1]
    assert (last["case_no"], last["party"], json.loads(last["categories"])) == (
        "C-7", "P2", ["obstruction"])


@pytest.mark.parametrize(("args", "missing"), [
    (["--case", "C-1"], "--party"),
    (["--party", "P"], "--case"),
    (["--officer", "王五"], "--case and --party"),
])
def test_a_first_label_needs_case_and_party(ingested: Path, clips: Clips, args: list[str],
                                            missing: str) -> None:
    home = ingested
    before = mirror(home)
    result = run_cli(home, "label", clips.a.sha256, *args)
    assert result.exit_code == 2
    assert "first label needs" in result.stderr and missing in result.stderr
    assert clips.a.sha256[:12] in result.stderr
    assert mirror(home) == before
    assert every_label(home) == []


def test_a_label_with_nothing_to_change_is_refused(ingested: Path, clips: Clips) -> None:
    home = ingested
    run_cli(home, "label", clips.a.sha256, "--case", "C-1", "--party", "P")
    before = mirror(home)
    result = run_cli(home, "label", clips.a.sha256)
    assert result.exit_code == 2 and "at least one of --case" in result.stderr
    assert mirror(home) == before


# -- text that goes into the ledger ------------------------------------------------------------


@pytest.mark.parametrize(("args", "field"), [
    (["--case", "C\x1b[2J", "--party", "P"], "--case"),
    (["--case", "C-1", "--party", "P\x07"], "--party"),
    (["--case", "C-1", "--party", "P", "--officer", "Li\rNa"], "--officer"),
    (["--case", "C-1", "--party", "P\u202eevil"], "--party"),
    (["--case", "C-1", "--party", "P", "--by", "bob\x1b]0;x\x07"], "--by"),
])
def test_control_characters_in_a_label_are_refused(ingested: Path, clips: Clips,
                                                   args: list[str], field: str) -> None:
    home = ingested
    before = mirror(home)
    result = run_cli(home, "label", clips.a.sha256, *args)
    assert result.exit_code == 2, result.stderr
    assert field in result.stderr and "control character" in result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert mirror(home) == before
    assert every_label(home) == []


def test_a_control_character_in_ingestd_actor_is_refused(ingested: Path, clips: Clips) -> None:
    home = ingested
    before = mirror(home)
    result = run_cli(home, "label", clips.a.sha256, "--case", "C", "--party", "P",
                     env={"INGESTD_ACTOR": "eve\x1b[8m"})
    assert result.exit_code == 2
    assert "INGESTD_ACTOR" in result.stderr and "control character" in result.stderr
    assert mirror(home) == before


@pytest.mark.parametrize(("args", "field", "limit"), [
    (["--case", "C" * 201, "--party", "P"], "--case", 200),
    (["--case", "C", "--party", "张" * 201], "--party", 200),
    (["--case", "C", "--party", "P", "--officer", "O" * 201], "--officer", 200),
    (["--case", "C", "--party", "P", "--by", "b" * 201], "--by", 200),
])
def test_overlong_label_fields_are_refused_naming_the_limit(ingested: Path, clips: Clips,
                                                            args: list[str], field: str,
                                                            limit: int) -> None:
    home = ingested
    before = mirror(home)
    result = run_cli(home, "label", clips.a.sha256, *args)
    assert result.exit_code == 2, result.stderr
    assert field in result.stderr and f"at most {limit}" in result.stderr
    assert mirror(home) == before


def test_the_longest_allowed_label_is_kept_whole(ingested: Path, clips: Clips) -> None:
    home = ingested
    result = run_cli(home, "label", clips.a.sha256, "--case", "C" * 200, "--party", "张" * 200)
    assert result.exit_code == 0, result.stderr
    assert current(home, clips.a.sha256)[:2] == ("C" * 200, "张" * 200)


def test_a_label_that_looks_like_markup_or_an_emoji_code_is_shown_as_typed(
    ingested: Path, clips: Clips
) -> None:
    """What a person types is what every table shows: rich's markup and emoji codes in a
    label are text."""
    home = ingested
    case, party = "[bold]C-9[/bold]", "张三 :police_car: :smile:"
    assert run_cli(home, "label", clips.a.sha256, "--case", case, "--party", party,
                   "--officer", "[red]x[/]").exit_code == 0
    for command in (["show", clips.a.sha256], ["items", "--case", case]):
        shown = run_cli(home, *command, env={"COLUMNS": "250"})
        assert shown.exit_code == 0, shown.stderr
        assert case in shown.stdout and ":police_car:" in shown.stdout, shown.stdout
        assert "\U0001f693" not in shown.stdout and "\U0001f604" not in shown.stdout


def test_a_serial_that_looks_like_an_emoji_code_is_shown_as_typed_by_status(
    ingested: Path, tmp_path: Path
) -> None:
    home = ingested
    serial = "X:police_car:[b]"
    rec = build_recorder(tmp_path / "rec", {"DCIM/a.JPG": b"\xff\xd8\xff\xe0xx\xff\xd9"})
    assert run_cli(home, "ingest", rec, "--serial", serial).exit_code == 6  # not registered
    shown = run_cli(home, "status", env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.stderr
    assert f"({serial}): refused" in shown.stdout, shown.stdout
    assert "\U0001f693" not in shown.stdout


@pytest.mark.parametrize("command", [["hold"], ["release"], ["justify", "--flag", "late_ingest"]])
def test_reasons_are_checked(ingested: Path, clips: Clips, command: list[str]) -> None:
    home = ingested
    before = mirror(home)
    bad = run_cli(home, *command, clips.a.sha256, "--reason", "ok\x1b[31m")
    assert bad.exit_code == 2 and "--reason" in bad.stderr
    assert "control character" in bad.stderr
    long = run_cli(home, *command, clips.a.sha256, "--reason", "r" * 2001)
    assert long.exit_code == 2 and "--reason" in long.stderr and "at most 2000" in long.stderr
    assert mirror(home) == before


@pytest.mark.parametrize(("args", "field"), [
    (["R\x1b9", "--officer", "O", "--officer-id", "1"], "SERIAL"),
    (["R" * 129, "--officer", "O", "--officer-id", "1"], "SERIAL"),
    (["R-9", "--officer", "O\x00", "--officer-id", "1"], "--officer"),
    (["R-9", "--officer", "O" * 201, "--officer-id", "1"], "--officer"),
    (["R-9", "--officer", "O", "--officer-id", "1" * 65], "--officer-id"),
    (["R-9", "--officer", "O", "--officer-id", "1", "--unit", "u\x1b"], "--unit"),
    (["R-9", "--officer", "O", "--officer-id", "1", "--vendor", "v" * 129], "--vendor"),
    (["R-9", "--officer", "O", "--officer-id", "1", "--model", "m\u200b"], "--model"),
])
def test_devices_add_checks_every_field(home: Path, args: list[str], field: str) -> None:
    before = mirror(home)
    result = run_cli(home, "devices", "add", *args)
    assert result.exit_code == 2, result.stderr
    assert field in result.stderr
    assert mirror(home) == before
    listed = cli_json(home, "devices", "list", "--all")["recorders"]
    assert [r["serial"] for r in listed] == [SERIAL]


def test_ingest_serial_is_checked(home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA_DIR}/A.MP4": clips.a})
    result = run_cli(home, "ingest", rec, "--serial", "BWC\x1b[0m")
    assert result.exit_code == 2 and "--serial" in result.stderr
    assert cli_json(home, "status")["docks"] == []


# -- recorder text is printed escaped ----------------------------------------------------------


def test_recorder_file_names_are_printed_escaped(home: Path, tmp_path: Path,
                                                 clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {b"DCIM/\x1b[31mred\x07.mp4": clips.a})
    done = run_cli(home, "ingest", rec, "--serial", SERIAL)
    assert done.exit_code == 0, done.stderr
    listed = run_cli(home, "items")
    shown = run_cli(home, "show", clips.a.sha256)
    for out in (done.stdout, listed.stdout, shown.stdout):
        assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mred\\x07" in shown.stdout


EVIL_SERIAL = "EVIL\x1b]0;owned\x07\u202e"
EVIL_HEALTH = {"vendor": "V\x1b[2J", "model": "M\u009b31m", "fs_label": "L\u2028x"}


def test_what_a_udev_recorder_reports_is_printed_escaped(home: Path, tmp_path: Path) -> None:
    station = open_station(home)
    try:
        Ingestor(station).refuse(EVIL_SERIAL, mountpoint=tmp_path / "mnt",
                                 ctx=DockContext(source="udev", health=EVIL_HEALTH),
                                 reason=f"recorder {EVIL_SERIAL} is not registered")
    finally:
        station.close()
    text = run_cli(home, "status")
    as_json = run_cli(home, "status", "--json")
    assert text.exit_code == as_json.exit_code == 0
    for out in (text.stdout, as_json.stdout):
        assert not any(ch in out for ch in "\x1b\x07\u202e\u009b\u2028"), repr(out)
    assert "EVIL" in text.stdout
    # JSON escapes them, so a program reading it still gets the exact serial
    assert as_json.json()["docks"][0]["serial"] == EVIL_SERIAL


def test_log_lines_escape_what_a_recorder_reports(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(1)
    try:
        logging.getLogger("ingestd.docks.udev").warning("recorder %s: %s", EVIL_SERIAL,
                                                        EVIL_HEALTH["vendor"])
        err = capsys.readouterr().err
    finally:
        logging.getLogger("ingestd").handlers.clear()
        logging.getLogger("ingestd").propagate = True
    assert "EVIL\\x1b]0;owned\\x07\\u202e: V\\x1b[2J" in err
    assert "\x1b" not in err


# -- with --json, an error is JSON ------------------------------------------------------------


def json_error(result: CliResult) -> dict:
    doc = result.json()
    assert set(doc) == {"error"}
    assert set(doc["error"]) == {"message", "exit_code", "type"}
    return doc["error"]


@pytest.mark.parametrize(("args", "code", "kind", "words"), [
    (["show", "deadbeef", "--json"], 10, "NotFound", "no item matches deadbeef"),
    (["show", "abc", "--json"], 2, "UsageError", "at least 8 hex digits"),
    (["label", "--json", "--case", "C"], 2, "UsageError", "Missing argument"),
    (["hold", "deadbeef00", "--json"], 2, "UsageError", "Missing option '--reason'"),
    (["items", "--since", "last tuesday", "--json"], 2, "UsageError", "--since"),
    (["items", "--json", "--flag", "no_such_flag"], 2, "UsageError", "no_such_flag"),
    (["devices", "list", "--json", "--colour"], 2, "UsageError", "No such option"),
    (["verify", "--json"], 2, "UsageError", ""),
    (["status", "--json"], 0, "", ""),
])
def test_with_json_an_error_is_json_with_the_same_exit_code(home: Path, args: list[str],
                                                            code: int, kind: str,
                                                            words: str) -> None:
    plain = run_cli(home, *[a for a in args if a != "--json"])
    result = run_cli(home, *args)
    assert result.exit_code == plain.exit_code == code, (result.stdout, result.stderr)
    if code == 0:
        assert "error" not in result.json()
        return
    error = json_error(result)
    assert error["exit_code"] == code and error["type"] == kind
    assert words in error["message"]
    assert words in plain.stderr and plain.stdout == ""


def test_a_config_error_is_json_with_json(home: Path) -> None:
    write_config(home, (home / "ingestd.toml").read_text() + '\n[windows]\ningest = "a day"\n')
    result = run_cli(home, "status", "--json")
    assert result.exit_code == 3
    error = json_error(result)
    assert error["type"] == "ConfigError" and error["exit_code"] == 3
    assert "windows.ingest: not a duration" in error["message"]
    assert "windows.ingest" in result.stderr


def test_a_missing_home_is_json_with_json(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "nowhere", "items", "--json")
    assert result.exit_code == 3
    assert "ingestd --home DIR init" in json_error(result)["message"]


def test_a_label_error_is_json_and_nothing_is_written(ingested: Path, clips: Clips) -> None:
    home = ingested
    before = mirror(home)
    result = run_cli(home, "label", clips.a.sha256, "--case", "C", "--json")
    assert result.exit_code == 2
    assert "first label needs --party" in json_error(result)["message"]
    assert mirror(home) == before


def test_a_report_with_discrepancies_stays_one_json_document(home: Path) -> None:
    (home / "ledger.jsonl").write_text("")
    result = run_cli(home, "ledger", "verify", "--json")
    assert result.exit_code == 1
    assert "error" not in result.json()


def test_an_error_deep_in_ingest_is_json_with_json(home: Path, tmp_path: Path,
                                                   clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA_DIR}/A.MP4": clips.a})
    result = run_cli(home, "ingest", rec, "--serial", "NOBODY", "--json")
    assert result.exit_code == 6
    error = json_error(result)
    assert error["type"] == "RecorderNotRegistered" and error["exit_code"] == 6
    assert "NOBODY is not registered" in error["message"]
    assert cli_json(home, "status")["acquisitions"] == {}


def test_on_postgresql_too_long_is_a_clear_error_and_the_longest_fits(
        tmp_path: Path, postgres_url: str, clips: Clips) -> None:
    home = tmp_path / "home"
    assert run_cli(home, "init", "--catalog", postgres_url).exit_code == 0
    serial = "S" * 128  # the longest serial the column takes
    added = run_cli(home, "devices", "add", serial, "--officer", "O" * 200, "--officer-id",
                    "I" * 64)
    assert added.exit_code == 0, added.stderr
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA_DIR}/A.MP4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", serial).exit_code == 0
    before = mirror(home)
    for args in (["label", clips.a.sha256, "--case", "C" * 201, "--party", "P"],
                 ["label", clips.a.sha256, "--case", "C", "--party", "P", "--by", "b" * 201],
                 ["devices", "add", "S" * 129, "--officer", "O", "--officer-id", "1"],
                 ["hold", clips.a.sha256, "--reason", "r" * 2001]):
        result = run_cli(home, *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert "at most" in result.stderr and "Traceback" not in result.stderr
    assert mirror(home) == before
    longest = run_cli(home, "label", clips.a.sha256, "--case", "C" * 200, "--party", "张" * 200,
                      "--by", "b" * 200)
    assert longest.exit_code == 0, longest.stderr
    assert current(home, clips.a.sha256) == ("C" * 200, "张" * 200, "O" * 200)
    assert run_cli(home, "ledger", "verify").exit_code == 0


@pytest.mark.parametrize("serial", ["D" * 129, "D01\x1b]0;owned\x07", "D01\u202e"])
def test_a_udev_serial_that_cannot_be_stored_is_refused_and_never_stored(
        home: Path, serial: str) -> None:
    station = open_station(home)
    coordinator = DockCoordinator(station)
    try:
        coordinator.device(DockEvent.added(DockedDevice.with_properties(
            serial=serial, devnode="/dev/ingestd-test-none", fs_type="ext4",
            sys_path="/sys/devices/ingestd-test-none")))
    finally:
        coordinator.shutdown(wait=True)
        station.close()
    (outcome,) = coordinator.outcomes
    assert (outcome.serial, outcome.state) == ("", "refused")
    (session,) = cli_json(home, "status")["docks"]
    assert (session["serial"], session["state"]) == ("", "refused")
    assert "its USB serial number" in session["error"]
    # Looked for in the values themselves: JSON and repr() escape a control character.
    mirrored = [json.loads(line) for line in mirror(home).splitlines()]
    for entry in [*mirrored, *catalog.ledger_entries(home)]:
        assert not [text for text in strings(entry) if serial in text], entry
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_init_refuses_a_station_name_it_could_not_read_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = run_cli(home, "init", "--station", 'dock"1\nhome = "/"')
    assert done.exit_code == 2
    assert "--station" in done.stderr and "nothing was created" in done.stderr
    assert not home.exists() or list(home.iterdir()) == []
    url = f'sqlite:///{tmp_path}/a"b.sqlite'
    made = run_cli(home, "init", "--station", "dock-1", "--catalog", url)
    assert made.exit_code == 0, made.stderr
    text = (home / "ingestd.toml").read_text(encoding="utf-8")
    assert f"catalog = {json.dumps(url)}" in text  # quoted, not cut short
    assert (tmp_path / 'a"b.sqlite').is_file()
