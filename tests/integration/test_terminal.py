"""What a person reads at the terminal: ``status`` as tables fitted to the terminal's width
(a hash never cut below the 8 digits a command accepts), every time in the station's
``recorder_timezone`` with its offset (JSON keeps UTC), dates given on the command line read
in that zone, "never" for a retain-until that never comes, a refused dock with its reason, and
counts in good grammar. On one station (photos, checked without ffprobe; a directory target
that holds nothing yet), made once for the module."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import (
    INGESTD,
    OFFICER,
    OFFICER_ID,
    SERIAL,
    build_recorder,
    cli_json,
    init_station,
    run_cli,
    subprocess_env,
)

from ingestd.domain.canonical import parse_time
from ingestd.domain.policy import local_time

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")
MEDIA = "DCIM/100MEDIA"
#: Named in the recorder's local time: 2026-11-01 01:30 in Shanghai is 2026-10-31 17:30 UTC.
EARLY = "20261101_013000.JPG"
LATER = "20261102_120000.JPG"


def photo(size: int) -> bytes:
    """A whole JPEG as far as ingest checks one (start and end markers): no ffprobe needed."""
    return b"\xff\xd8\xff\xe0" + os.urandom(size) + b"\xff\xd9"


@dataclass(frozen=True)
class Docked:
    home: Path
    early: str  # the SHA-256 of the photo named EARLY
    later: str


@pytest.fixture(scope="module")
def docked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docked]:
    root = tmp_path_factory.mktemp("terminal")
    nas = root / "nas"
    nas.mkdir()
    home = init_station(
        root / "home", register={SERIAL: (OFFICER, OFFICER_ID)},
        config='[ingest]\nrecorder_timezone = "Asia/Shanghai"\n'
               f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
               'prefix = "bwc"\nsame_filesystem_ok = true\n')
    rec = build_recorder(root / "rec", {f"{MEDIA}/{EARLY}": photo(3000),
                                        f"{MEDIA}/{LATER}": photo(4000)})
    taken = cli_json(home, "ingest", rec, "--serial", SERIAL)
    by_name = {Path(i["path"]).name: i["sha256"] for i in taken["items"]}
    stranger = build_recorder(root / "stranger", {f"{MEDIA}/{LATER}": photo(100)})
    refused = run_cli(home, "ingest", stranger, "--serial", "BWC-9999")
    assert refused.exit_code == 6, refused
    yield Docked(home=home, early=by_name[EARLY], later=by_name[LATER])


def shown(home: Path, *args: str, columns: int = 100) -> str:
    result = run_cli(home, *args, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result
    return result.stdout


def words(text: str) -> str:
    return " ".join(text.split())


def test_status_fits_a_narrow_terminal_without_cutting_a_hash_below_8_digits(
        docked: Docked) -> None:
    state = cli_json(docked.home, "status")
    waiting = state["targets"]["nas"]["oldest_waiting"]["sha256"]
    text = shown(docked.home, "status", columns=60)
    assert max(len(line) for line in text.splitlines()) <= 60
    hexes = set(re.findall(r"[0-9a-f]{6,64}", text))
    assert waiting[:8] in text
    # Whatever digits of the waiting item are shown, there are 8 or more of them.
    assert all(len(h) >= 8 for h in hexes if waiting.startswith(h)), hexes
    assert "off-site targets" in text and "recent docks" in text


def test_status_on_a_wide_terminal_shows_12_digits_and_one_line_a_row(docked: Docked) -> None:
    state = cli_json(docked.home, "status")
    waiting = state["targets"]["nas"]["oldest_waiting"]["sha256"]
    text = shown(docked.home, "status", columns=200)
    assert waiting[:12] in text
    docked_at = local_time(parse_time(state["docks"][0]["docked_at"]), SHANGHAI)
    (row,) = [line for line in text.splitlines() if "BWC-9999" in line and "refused" in line
              and docked_at in line]
    assert max(len(line) for line in text.splitlines()) <= 200


def test_status_gives_times_in_the_recorder_zone_and_a_refusal_with_its_reason(
        docked: Docked) -> None:
    state = cli_json(docked.home, "status")
    refused = state["docks"][0]
    assert (refused["serial"], refused["state"]) == ("BWC-9999", "refused")
    assert refused["docked_at"].endswith("Z")  # JSON keeps RFC 3339 UTC
    text = words(shown(docked.home, "status"))
    assert local_time(parse_time(refused["docked_at"]), SHANGHAI) in text
    assert "+08:00" in text
    assert f"dock {refused['id']} (BWC-9999): refused: recorder not registered" in text
    assert "1 recorder registered" in text and "1 recorders" not in text
    assert "store " in text and "2 items" in text


def test_since_is_read_in_the_recorder_zone(docked: Docked) -> None:
    def listed(*args: str) -> set[str]:
        return {i["sha256"] for i in cli_json(docked.home, "items", *args)["items"]}

    (early,) = [i for i in cli_json(docked.home, "items")["items"]
                if i["sha256"] == docked.early]
    assert parse_time(early["recorded_at"]) == datetime(2026, 10, 31, 17, 30, tzinfo=UTC)
    # 2026-10-31T17:30Z is 2026-11-01 01:30 in Shanghai: on 2026-11-01 there.
    assert docked.early in listed("--since", "2026-11-01")
    assert docked.early not in listed("--until", "2026-11-01")
    assert listed("--since", "2026-11-02") == {docked.later}
    # An offset given is taken as given.
    assert docked.early not in listed("--since", "2026-11-01T00:00:00+00:00")
    text = words(shown(docked.home, "items", "--since", "2026-11-01"))
    assert "2026-11-01 01:30:00+08:00" in text and "2 items" in text


def test_show_and_listings_give_times_in_zone_and_never_for_a_long_term_item(
        docked: Docked) -> None:
    labelled = run_cli(docked.home, "label", docked.later, "--case", "C-1", "--party", "P",
                       "--category", "dispute")
    assert labelled.exit_code == 0, labelled
    record = cli_json(docked.home, "show", docked.later)
    assert record["record"]["retain_until"] is None
    text = shown(docked.home, "show", docked.later)
    assert re.search(r"retain_until +never", text), text
    assert "2026-11-02 12:00:00+08:00" in text  # recorded_start, as the file name says
    listed = words(shown(docked.home, "retention", "list", "--item", docked.later))
    assert "never" in listed and "1 item" in listed and "1 items" not in listed
    ledger = words(shown(docked.home, "ledger", "verify"))
    assert "ledger intact" in ledger and " 1 entries" not in ledger
    overdue = words(shown(docked.home, "overdue"))
    assert "+08:00" in overdue


def test_a_utc_zone_shows_utc_with_its_offset(tmp_path: Path) -> None:
    home = init_station(tmp_path / "home", config='[ingest]\nrecorder_timezone = "UTC"\n',
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    text = words(shown(home, "devices", "list", columns=200))
    (added,) = cli_json(home, "devices", "list")["recorders"]
    assert local_time(parse_time(added["added_at"]), UTC) in text
    assert "+00:00" in text


def test_the_progress_bar_shows_a_file_name_as_it_is(tmp_path: Path) -> None:
    """On a terminal, ``ingest`` shows the file it copies: markup and emoji codes in its name
    are shown as typed, never as styles or pictures."""
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    name = "[bold]x[/bold] :police_car:.JPG"
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/{name}": photo(3_000_000)})
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(INGESTD), "--home", str(home), "ingest", str(rec), "--serial", SERIAL],
        stdout=subprocess.PIPE, stderr=follower, env=subprocess_env(COLUMNS="120"))
    os.close(follower)
    drawn = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed: the command is done
                break
            if not chunk:
                break
            drawn += chunk
        elif proc.poll() is not None:
            break
    out, _ = proc.communicate(timeout=60)
    os.close(leader)
    assert proc.returncode == 0, drawn
    bar = drawn.decode("utf-8", "replace")
    assert f"{SERIAL}: " in bar and f"{name} " in bar, repr(bar)
    assert "\U0001f693" not in bar and "\x1b[1mx" not in bar
    assert name in out.decode()


# -- status --watch --------------------------------------------------------------------------


def watch(home: Path, *, terminal: bool) -> tuple[int, str, str]:
    """``status --watch`` run until it has shown the status twice, then interrupted as
    Ctrl-C does: its exit code, what it wrote (up to its exit), and its errors."""
    if terminal:
        leader, follower = pty.openpty()
        out: int | None = follower
    else:
        out = subprocess.PIPE
    proc = subprocess.Popen(
        [str(INGESTD), "--home", str(home), "status", "--watch", "--interval", "0.2"],
        stdout=out, stderr=subprocess.PIPE, env=subprocess_env(COLUMNS="100", LINES="200"))
    if terminal:
        os.close(follower)
    read = leader if terminal else proc.stdout.fileno()  # type: ignore[union-attr]
    seen = b""
    deadline = time.monotonic() + 60
    while seen.count(b"station station-01") < 2:  # shown, then shown again
        assert time.monotonic() < deadline, seen
        ready, _, _ = select.select([read], [], [], 1.0)
        if ready:
            chunk = os.read(read, 65536)
            assert chunk, seen
            seen += chunk
    proc.send_signal(signal.SIGINT)
    # Read on to the end, as a terminal or a pipe's reader does: a terminal nobody reads (a
    # test that stopped reading, say) holds the redraw that ends the watch, as it would any
    # program's last write.
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, ("status --watch still runs 30 s after Ctrl-C",
                                             seen[-2000:])
        ready, _, _ = select.select([read], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(read, 65536)
        except OSError:  # EIO: the terminal's other side closed, the program has ended
            chunk = b""
        if not chunk:
            break
        seen += chunk
    code = proc.wait(timeout=30)
    errors = proc.stderr.read().decode() if proc.stderr else ""
    if terminal:
        os.close(leader)
    return code, seen.decode("utf-8", "replace"), errors


def test_watch_on_a_pipe_prints_the_status_each_interval_and_ctrl_c_exits_0(
        docked: Docked) -> None:
    code, text, errors = watch(docked.home, terminal=False)
    assert code == 0, errors
    assert "\x1b" not in text  # no cursor movement for a log or a pipe
    assert text.count("last ledger check") >= 2 and "Traceback" not in errors


def test_watch_on_a_terminal_redraws_in_place_and_ctrl_c_exits_0(docked: Docked) -> None:
    code, text, errors = watch(docked.home, terminal=True)
    assert code == 0, errors
    assert "recent docks" in text and "Traceback" not in errors
    # Drawn again over the first: the cursor goes back up between the two.
    first, again = text.split("station station-01")[1:3]
    assert "\x1b[1A" in first + again or "\x1b[2K" in first + again, repr(text)
    assert "interrupted" not in text and "aborted" not in errors


def test_watch_refuses_json_and_an_interval_needs_watch(docked: Docked) -> None:
    both = run_cli(docked.home, "status", "--watch", "--json")
    assert both.exit_code == 2 and "--watch" in both.json()["error"]["message"]
    alone = run_cli(docked.home, "status", "--interval", "3")
    assert alone.exit_code == 2 and "--interval goes with --watch" in alone.stderr
