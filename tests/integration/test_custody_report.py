"""The custody report a court package holds: real items, ingested, labelled in Chinese (one
label hostile), held, replicated and audited through the command line, then rendered to HTML
and PDF; the PDF is read back as text by poppler, as a reader's tool sees it."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SERIAL, Clips, build_recorder, cli_json, init_station, open_station, run_cli

from ingestd.domain.timeline import ItemTimeline, Outcome
from ingestd.report.custody import PackageInfo, write_custody_report
from ingestd.usecases.timeline import item_timelines

pytestmark = pytest.mark.integration

CASE = "（2026）京0105行初123号"
PARTY = "张三"
OFFICER = "李四"
HOSTILE = "<script>alert(1)</script>"
HOLD_REASON = "当事人申请复议 & <b>urgent</b>"
ACTOR = {"INGESTD_ACTOR": "王五"}


@dataclass(frozen=True)
class Rendered:
    html: Path
    pdf: Path
    text: str  # pdftotext -layout of the PDF
    raw: str  # pdftotext -raw, without white space: each cell's words in reading order
    timelines: list[ItemTimeline]
    labelled: str  # the item labelled in Chinese
    hostile: str  # the item whose label is hostile


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, clips: Clips) -> Rendered:
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is needed (Debian package poppler-utils)")
    base = tmp_path_factory.mktemp("report")
    nas = base / "nas"
    nas.mkdir()
    config = ('station_timezone = "+08:00"\n\n'
              f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
              'same_filesystem_ok = true\n')
    home = init_station(base / "home", config=config, register={SERIAL: (OFFICER, "PS-1001")})
    rec = build_recorder(base / "rec", {"DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL, env=ACTOR).exit_code == 0
    a, b = clips.a.sha256, clips.b.sha256
    cli_json(home, "label", a, "--case", CASE, "--party", PARTY, "--officer", OFFICER, env=ACTOR)
    cli_json(home, "label", b, "--case", HOSTILE, "--party", HOSTILE, env=ACTOR)
    cli_json(home, "hold", b, "--reason", HOLD_REASON, env=ACTOR)
    cli_json(home, "replicate", env=ACTOR)
    cli_json(home, "audit", "--all", "--offsite", env=ACTOR)

    station = open_station(home)
    try:
        timelines = list(item_timelines(station, [a, b]))
        package = PackageInfo(
            package_id="PKG-2026-0001", created_at=datetime(2026, 12, 1, 14, 0, 5, tzinfo=UTC),
            station=station.name, case=CASE, party=PARTY, officers=(OFFICER,),
            approver="赵六", requester="北京市朝阳区人民法院", purpose="庭审举证",
            reason=HOSTILE, checkpoint_seq=42, checkpoint_head="ab" * 32)
        out = base / "package"
        out.mkdir()
        html_path, pdf_path = write_custody_report(out, package=package, items=iter(timelines),
                                                   tz=station.settings.station_tz)
    finally:
        station.close()
    text, raw = (subprocess.run(["pdftotext", mode, str(pdf_path), "-"], check=True,
                                capture_output=True, text=True, timeout=120).stdout
                 for mode in ("-layout", "-raw"))
    return Rendered(html=html_path, pdf=pdf_path, text=text, raw=re.sub(r"\s+", "", raw),
                    timelines=timelines, labelled=a, hostile=b)


def test_both_files_are_written_privately(rendered: Rendered) -> None:
    assert rendered.html.name == "custody-report.html"
    assert rendered.pdf.name == "custody-report.pdf"
    assert rendered.pdf.read_bytes().startswith(b"%PDF-")
    for path in (rendered.html, rendered.pdf):
        assert path.stat().st_mode & 0o007 == 0  # it names parties: not for other users
    assert not [p for p in rendered.html.parent.iterdir() if p.name.startswith(".")]


def test_the_html_shows_what_was_typed_as_text(rendered: Rendered) -> None:
    page = rendered.html.read_text(encoding="utf-8")
    assert "<script" not in page
    assert html.escape(HOSTILE) in page or "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>urgent</b>" not in page and "&lt;b&gt;urgent&lt;/b&gt;" in page
    assert CASE in page and PARTY in page and OFFICER in page
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)
    assert '"Noto Sans CJK SC"' in page and '"Noto Serif CJK SC"' in page


def test_the_pdf_text_has_the_chinese_names_hashes_and_events(rendered: Rendered) -> None:
    text = rendered.text
    for name in (CASE, PARTY, OFFICER, "王五", "赵六", "证据保管报告"):
        assert name in text, name
    for sha in (rendered.labelled, rendered.hostile):
        assert sha in text  # the item's SHA-256, whole, on one line
    for kind in ("docked", "acquired", "stored", "labelled", "held", "replicated", "audited"):
        assert kind in text, kind
    assert "<script>alert(1)</script>" in text  # shown as the text it is
    # what was verified, each in both languages
    for phrase in ("SHA-256re-computedfromdiskmatched", "从磁盘重新计算SHA-256，一致",
                   "off-sitecopyonnasreadbackandmatched", "storedcopyreadbackfromdisk",
                   "entryhashandsignature", "placedonlegalhold:当事人申请复议&<b>urgent</b>"):
        assert phrase in rendered.raw, phrase
    assert "VERIFY.txt" in text
    # times in the station's zone with their offset; page numbers from the page counters
    assert "+08:00" in text
    pages = int(re.findall(r"page \d+ of (\d+)", text)[0])
    assert f"page {pages} of {pages}" in text and "第 1 页" in text
    assert text.count("How to verify: see VERIFY.txt") == pages  # every page's footer


def test_each_item_has_its_whole_custody_in_order(rendered: Rendered) -> None:
    labelled, hostile = rendered.timelines
    assert (labelled.case, labelled.party, labelled.officer) == (CASE, PARTY, OFFICER)
    assert hostile.case == HOSTILE
    for timeline in rendered.timelines:
        kinds = [e.kind for e in timeline.events]
        assert kinds[0] == "docked" and kinds[1:3] == ["acquired", "stored"]
        assert {"labelled", "replicated", "audited"} <= set(kinds)
        seqs = [e.seq for e in timeline.events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # every entry's hash and signature checked and found good
        signatures = [v for e in timeline.events for v in e.verified
                      if v.what.en.startswith("entry hash and signature")]
        assert len(signatures) == len(timeline.events)
        assert all(v.outcome == Outcome.OK for v in signatures)
        audited = next(e for e in timeline.events if e.kind == "audited")
        assert [v.outcome for v in audited.verified][:2] == [Outcome.OK, Outcome.OK]
        assert all(e.local.endswith("+08:00") for e in timeline.events)
    assert "held" in [e.kind for e in hostile.events]


def test_the_pdf_embeds_a_cjk_font(rendered: Rendered) -> None:
    fonts = subprocess.run(["pdffonts", str(rendered.pdf)], check=True, capture_output=True,
                           text=True, timeout=60).stdout
    assert re.search(r"Noto-S(ans|erif)-CJK-SC", fonts), fonts


def test_the_renderers_are_imported_only_to_write_a_report() -> None:
    probe = ("import sys, ingestd.report.custody, ingestd.usecases.timeline; "
             "print(sorted(m for m in ('weasyprint', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_page_one_renders_to_an_image(rendered: Rendered, tmp_path: Path) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm is not installed")
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(rendered.pdf),
                    str(tmp_path / "page")], check=True, capture_output=True, timeout=120)
    (png,) = tmp_path.glob("page*.png")
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
