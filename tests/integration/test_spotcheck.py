"""``ingestd spotcheck`` on a real station with real clips: a clip whose header reads but
whose end no longer decodes is flagged ``damaged_media`` with the decoder's words; supervisors'
reviews are in the ledger and in ``spotcheck list``; ``ledger verify`` holds after all of it
and catches a review row changed or removed behind ingestd's back."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from conftest import SERIAL, Clips, build_recorder, cli_json, ledger_problems, run_cli, sha256_of

from ingestd.media import probe
from tests.support import catalog

pytestmark = pytest.mark.integration

MEDIA = "DCIM/100MEDIA"


def broken_tail_clip(path: Path) -> Path:
    """An MPEG-TS clip of 3 s whose second half has its packets' payload garbled (the sync
    bytes and headers kept): ffprobe reads it as a clip, a full decode fails."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=25", "-t", "3", "-c:v", "libx264", "-preset",
                    "ultrafast", "-f", "mpegts", str(path)], check=True, capture_output=True,
                   timeout=120)
    data = bytearray(path.read_bytes())
    noise = random.Random(12)
    for packet in range(len(data) // 2 // 188 * 188, len(data) - 187, 188):
        assert data[packet] == 0x47  # a TS sync byte: the packets stay packets
        for i in range(packet + 4, packet + 188):
            data[i] = noise.randrange(256)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    clip = broken_tail_clip(tmp_path / "broken.ts")
    # What the test stands on, checked with ffmpeg itself: the header reads...
    info = probe(clip)
    assert info.ok and info.video_codec == "h264", info.error
    # ...and a decode of every frame does not.
    full = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-xerror", "-i", str(clip),
                           "-f", "null", "-"], capture_output=True, text=True, timeout=120)
    assert full.returncode != 0 and full.stderr.strip()
    return clip


def test_a_clip_that_no_longer_plays_is_flagged_and_reviewed(home: Path, tmp_path: Path,
                                                             clips: Clips, broken: Path) -> None:
    bad = sha256_of(broken)
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/BROKEN.TS": broken})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    assert "damaged_media" not in cli_json(home, "show", bad[:12])["item"]["flags"]  # a clip

    # One per officer and period: the only item is the broken one.
    ran = run_cli(home, "spotcheck", "run", "--json")
    assert ran.exit_code == 1, ran.stdout + ran.stderr
    report = ran.json()
    assert report["ok"] is False
    [check] = report["checked"]
    assert check["sha256"] == bad and check["result"] == "damaged"
    assert check["fixity"] == "ok" and check["decode"] not in ("", "ok")
    assert str(broken) not in check["decode"]

    shown = cli_json(home, "show", bad[:12])
    [flag] = [f for f in shown["flags"] if f["flag"] == "damaged_media"]
    assert flag["detail"] == "does not play back: " + check["decode"]
    kinds = [e["kind"] for e in shown["history"]]
    assert kinds[-2:] == ["spot_checked", "flagged"]
    assert shown["history"][-2]["data"]["decode"] == check["decode"]

    # Ran again in the same period: nothing more to check.
    again = cli_json(home, "spotcheck", "run")
    assert again["ok"] is True and again["checked"] == []

    # A second item, never spot-checked: a review of it is refused, and says why.
    rec2 = build_recorder(tmp_path / "rec2", {f"{MEDIA}/A.MP4": clips.a})
    assert run_cli(home, "ingest", rec2, "--serial", SERIAL).exit_code == 0
    refused = run_cli(home, "spotcheck", "record", clips.a.sha256[:12], "--by", "Chen",
                      "--result", "ok", "--note", "fine", "--json")
    assert refused.exit_code == 2
    assert "has not been spot-checked" in refused.json()["error"]["message"]

    pending = cli_json(home, "spotcheck", "list", "--pending")
    assert [c["sha256"] for c in pending["checks"]] == [bad]
    assert pending["counts"] == {"Wang Fang": {"checked": 1, "reviewed_ok": 0, "problem": 0,
                                               "pending": 1}}

    recorded = cli_json(home, "spotcheck", "record", bad[:12], "--by", "Supervisor Chen",
                        "--result", "problem", "--note", "picture breaks up after 1.5 s")
    assert recorded["reviewed"]["result"] == "problem"

    listing = cli_json(home, "spotcheck", "list", "--officer", "Wang Fang")
    [row] = listing["checks"]
    assert row["status"] == "problem"
    assert row["review"]["by"] == "Supervisor Chen"
    assert row["review"]["note"] == "picture breaks up after 1.5 s"
    assert listing["counts"]["Wang Fang"] == {"checked": 1, "reviewed_ok": 0, "problem": 1,
                                              "pending": 0}
    assert cli_json(home, "spotcheck", "list", "--pending")["checks"] == []
    assert cli_json(home, "spotcheck", "list", "--officer", "Nobody") == {
        "checks": [], "counts": {}}
    [entry] = catalog.ledger_entries(home, "spot_reviewed")
    assert entry["item"] == bad and entry["actor"] == "Supervisor Chen"
    assert entry["seq"] == recorded["reviewed"]["seq"] == row["review"]["seq"]
    table = run_cli(home, "spotcheck", "list")
    assert table.exit_code == 0 and "Wang Fang: 1 checked, 0 reviewed ok, 1 problem" in (
        table.stdout)

    code, problems = ledger_problems(home)
    assert (code, problems) == (0, [])

    # A review row changed behind ingestd's back is caught, naming its entry...
    assert catalog.forge_spot_reviews(home, result="ok") == 1
    code, problems = ledger_problems(home)
    assert code == 1 and ("row_differs", entry["seq"]) in problems
    assert cli_json(home, "spotcheck", "list")["counts"]["Wang Fang"]["reviewed_ok"] == 1
    catalog.forge_spot_reviews(home, result="problem")
    assert ledger_problems(home) == (0, [])
    # ...and so is one taken away.
    assert catalog.delete_spot_reviews(home) == 1
    code, problems = ledger_problems(home)
    assert code == 1 and ("missing_row", entry["seq"]) in problems
    # A spot check made to look clean is caught too.
    assert catalog.forge_spot_checks(home, result="ok", decode="ok") == 1
    code, problems = ledger_problems(home)
    assert code == 1 and ("row_differs", check["seq"]) in problems
