"""An item's custody timeline (domain/timeline.py): one event per ledger entry, each kind
summarised in Chinese and English with what was verified, times in the zone asked for, and a
kind this release does not know still shown, safely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ingestd.domain.models import EventKind, LedgerEntry, RetentionClass, TimeSource
from ingestd.domain.records import Item, Label
from ingestd.domain.timeline import (
    UNKNOWN_KEYS_MAX,
    VALUE_MAX,
    Outcome,
    TimelineEvent,
    build_timeline,
    describe_entry,
    human_size,
)

SHA = "a" * 64
OTHER = "b" * 64
AT = datetime(2026, 12, 1, 14, 0, 5, 987654, tzinfo=UTC)
BEIJING = timezone(timedelta(hours=8))
RETAINED = {"retention_class": "evidence", "retain_until": "2056-11-23T14:00:05.000000Z",
            "hold": False}


def entry(kind: str, data: dict[str, Any], *, seq: int = 7, item: str | None = SHA,
          at: datetime = AT, actor: str = "王五") -> LedgerEntry:
    return LedgerEntry(seq=seq, at=at, station="station-01", actor=actor, kind=kind, item=item,
                       data=data, prev_hash="0" * 64, key_id="k1", entry_hash=f"{seq:064x}",
                       signature="s")


def item() -> Item:
    return Item(sha256=SHA, size=60560, stored_at=AT, station="station-01", recorder="BWC-1",
                officer="李四", original_name="DCIM/a.mp4", recorded_start=AT,
                recorded_end=AT + timedelta(seconds=1), time_source=TimeSource.MEDIA,
                duration=1.0, media={}, ingest_deadline=AT, label_deadline=AT,
                replication_deadline=AT, retention_class=RetentionClass.EVIDENCE,
                retain_until=None, hold=False, local_present=True, ledger_seq=3)


def event(kind: str, data: dict[str, Any], **kw: Any) -> TimelineEvent:
    return describe_entry(entry(kind, data, **kw), tz=BEIJING)


def outcomes(ev: TimelineEvent) -> dict[str, Outcome]:
    return {v.what.en: v.outcome for v in ev.verified}


def facts(ev: TimelineEvent) -> dict[str, str]:
    return {f.label.en: f.value for f in ev.facts}


# -- each kind -----------------------------------------------------------------------------------


def test_acquired_names_the_file_the_recorder_and_the_hash() -> None:
    ev = event("acquired", {"serial": "BWC-1", "path": "DCIM/a.mp4", "path_hex": "00",
                            "size": 2048, "mtime_ns": 1, "acquisition": 4, "copied": True})
    assert ev.known and ev.title.zh == "采集" and ev.title.en == "acquired"
    assert "DCIM/a.mp4" in ev.summary.en and "BWC-1" in ev.summary.zh
    assert "new bytes copied" in ev.summary.en and "复制了新内容" in ev.summary.zh
    assert [h.value for h in ev.hashes] == [SHA]
    assert outcomes(ev) == {"SHA-256 computed as the file was read": Outcome.OK}
    known = event("acquired", {"serial": "BWC-1", "path": "x", "size": 1, "copied": False})
    assert "nothing copied" in known.summary.en


def test_stored_says_the_copy_was_read_back_and_whether_it_plays() -> None:
    data = {"size": 60560, "recorder": "BWC-1", "officer": "李四", "officer_id": "PS-1",
            "recorded_start": "2026-12-01T02:00:00.000000Z",
            "recorded_end": "2026-12-01T02:00:01.000000Z", "time_source": "media",
            "media": {"ok": True, "format": "mp4", "video_codec": "h264", "audio_codec": "aac",
                      "width": 320, "height": 240, "duration": 1.0},
            "original_name": "DCIM/a.mp4", "retention": RETAINED}
    ev = event("stored", data)
    assert outcomes(ev) == {"stored copy read back from disk, SHA-256 matched": Outcome.OK,
                            "readable as media": Outcome.OK}
    shown = facts(ev)
    assert shown["recorded"] == "2026-12-01 10:00:00+08:00 – 2026-12-01 10:00:01+08:00"
    assert shown["officer"] == "李四" and shown["size"] == "60,560 B (59.1 KiB)"
    assert "2056-11-23 22:00:05+08:00" in shown["retention"]
    bad = event("stored", {**data, "media": {"ok": False, "error": "moov atom not found"}})
    (media,) = [v for v in bad.verified if v.what.en == "readable as media"]
    assert media.outcome == Outcome.FAILED and media.detail == "moov atom not found"


def test_labelled_shows_case_party_and_officer_in_both_languages() -> None:
    ev = event("labelled", {"case": "（2026）京0105行初123号", "party": "张三", "officer": "李四",
                            "categories": ["dispute"], "retention": RETAINED,
                            "case_type": "penalty"})
    assert ev.summary.zh == "标注：案号 （2026）京0105行初123号，当事人 张三，承办人 李四"
    assert ev.summary.en == "labelled: case （2026）京0105行初123号, party 张三, officer 李四"
    assert facts(ev)["categories"] == "dispute" and facts(ev)["case type"] == "penalty"


@pytest.mark.parametrize(("kind", "en", "zh"), [("held", "placed on legal hold", "保全"),
                                                ("released", "legal hold released", "解除保全")])
def test_hold_and_release_give_the_reason(kind: str, en: str, zh: str) -> None:
    ev = event(kind, {"reason": "复议 <b>", "retention": {**RETAINED, "hold": kind == "held"}})
    assert ev.summary.en == f"{en}: 复议 <b>" and ev.summary.zh == f"{zh}：复议 <b>"


def test_flagged_and_justified_name_the_flag() -> None:
    flagged = event("flagged", {"flag": "late_label", "detail": "no label within 72h"})
    assert flagged.summary.zh == "标记：标注逾期（late_label）"
    assert "late_label (no case and party label" in flagged.summary.en
    justified = event("justified", {"flag": "late_label", "reason": "officer on leave"})
    assert justified.summary.en.endswith(": officer on leave")
    new_flag = event("flagged", {"flag": "some_future_flag", "detail": "d"})
    assert new_flag.summary.en == "flagged some_future_flag"


def test_replicated_read_back_or_only_counted_as_sent() -> None:
    data = {"target": "nas", "key": "bwc/aa", "size": 10, "sha256": SHA, "version_id": None,
            "retain_until": "2056-11-23T14:00:05.000000Z", "legal_hold": False,
            "location": "dir:/nas", "read_back": True}
    ev = event("replicated", data)
    assert outcomes(ev) == {"SHA-256 stated by nas matched the content": Outcome.OK,
                            "off-site copy read back and matched": Outcome.OK}
    assert [h.label.en for h in ev.hashes] == ["content SHA-256", "SHA-256 of the copy on nas"]
    assert facts(ev)["locked until"] == "2056-11-23 22:00:05+08:00"
    sent = event("replicated", {**data, "read_back": False})
    assert outcomes(sent)["off-site copy read back and matched"] == Outcome.NOT_CHECKED
    wrong = event("replicated", {**data, "sha256": OTHER})
    assert outcomes(wrong)["SHA-256 stated by nas matched the content"] == Outcome.FAILED


def test_audited_says_what_was_rehashed_decoded_and_read_back() -> None:
    ev = event("audited", {"fixity": "ok", "decode": "ok",
                           "offsite": {"nas": "ok", "s3": "not checked: unreachable",
                                       "tape": "hashes to " + OTHER}})
    assert outcomes(ev) == {
        "SHA-256 re-computed from disk matched": Outcome.OK,
        "decoded end to end": Outcome.OK,
        "off-site copy on nas read back and matched": Outcome.OK,
        "off-site copy on s3 read back and matched": Outcome.NOT_CHECKED,
        "off-site copy on tape read back and matched": Outcome.FAILED}
    assert ev.summary.en == "audited: a problem was found"
    clean = event("audited", {"fixity": "ok"})
    assert clean.summary.en == "audited: all checks matched"
    assert clean.summary.zh == "审计：核验通过"
    damaged = event("audited", {"fixity": "hashes to " + OTHER})
    (fixity,) = damaged.verified
    assert fixity.outcome == Outcome.FAILED and OTHER in fixity.detail
    fast = event("audited", {"check": "fast", "found": "file_missing", "problem": "gone"})
    (looked,) = fast.verified
    assert looked.outcome == Outcome.FAILED and "not re-hashed" in looked.what.en
    nothing = event("audited", {})
    assert nothing.verified == () and "no copy" in nothing.summary.en


def test_spot_check_and_its_review() -> None:
    ev = event("spot_checked", {"officer": "李四", "period_start": "2026-11-30T00:00:00.000000Z",
                                "fixity": "ok", "decode": "ok", "result": "ok"})
    assert outcomes(ev) == {"SHA-256 re-computed from disk matched": Outcome.OK,
                            "decoded end to end": Outcome.OK}
    assert "2026-11-30 08:00:00+08:00" in ev.summary.en
    wrong = event("spot_checked", {"officer": "李四", "period_start": "x", "fixity": "gone",
                                   "decode": "not decoded", "result": "fixity_failed"})
    assert outcomes(wrong) == {"SHA-256 re-computed from disk matched": Outcome.FAILED,
                               "decoded end to end": Outcome.NOT_CHECKED}
    review = event("spot_reviewed", {"by": "赵六", "result": "problem", "note": "no sound",
                                     "check_seq": 9})
    (seen,) = review.verified
    assert seen.outcome == Outcome.FAILED and seen.detail == "no sound"
    assert review.summary.zh == "赵六 回放复核：problem"


def test_retention_lock_and_redate() -> None:
    lock = event("retention", {"target": "s3", "class": "evidence",
                               "retain_until": "2056-11-23T14:00:05.000000Z", "legal_hold": True})
    assert lock.summary.en == "copy on s3 locked until 2056-11-23 22:00:05+08:00"
    redate = event("retention", {"retention": RETAINED, "previous": {**RETAINED,
                                 "retention_class": "routine"}, "reason": "rule changed"})
    assert redate.summary.en.startswith("retention now: evidence, kept until 2056-11-23")
    assert facts(redate)["reason"] == "rule changed"


def test_dock_wipe_repair_evict_and_the_rest() -> None:
    docked = event("docked", {"serial": "BWC-1", "officer": "李四", "source": "udev",
                              "health": {"battery": 80}, "mountpoint": "/mnt/x"}, item=None)
    assert docked.summary.en == "recorder BWC-1 docked (udev)" and docked.hashes == ()
    failed = event("docked", {"serial": "BWC-1", "source": "udev", "health": {},
                              "reason": "fsck failed", "state": "failed", "mountpoint": "/m"})
    assert "could not be read: fsck failed" in failed.summary.en
    wiped = event("wiped", {"serial": "BWC-1", "path": "DCIM/a.mp4", "size": 5,
                            "policy": "after-offsite-verify"})
    assert wiped.verified[0].outcome == Outcome.OK and "deleted DCIM/a.mp4" in wiped.summary.en
    not_wiped = event("wipe_failed", {"serial": "BWC-1", "path": "p", "size": 5, "error": "EIO"})
    assert not_wiped.verified == () and facts(not_wiped)["error"] == "EIO"
    repaired = event("repaired", {"problem": "hashes to x", "quarantined_to": "q/aa",
                                  "serial": "BWC-1", "path": "p", "acquisition": 3})
    assert facts(repaired)["damaged bytes kept at"] == "q/aa"
    evicted = event("evicted", {"targets": ["nas", "s3"], "stored_at": "x", "local_keep": 0})
    assert evicted.summary.en == "left the local cache, proven on nas, s3"
    skipped = event("skipped", {"serial": "BWC-1", "count": 3, "by_kind": {"unmatched": 3}})
    assert skipped.summary.en == "3 files on recorder BWC-1 not taken"
    refused = event("recorder_refused", {"serial": "X-9", "reason": "not registered"})
    assert refused.summary.en == "recorder X-9 refused: not registered"


@pytest.mark.parametrize("kind", [k.value for k in EventKind])
def test_every_kind_has_a_bilingual_title_and_a_summary(kind: str) -> None:
    ev = event(kind, {})  # data of any form, here none at all
    assert ev.known and ev.kind == kind
    assert ev.title.zh and ev.title.en and ev.summary.zh and ev.summary.en


# -- times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tz", "local"), [
    (BEIJING, "2026-12-01 22:00:05+08:00"),
    (ZoneInfo("Asia/Shanghai"), "2026-12-01 22:00:05+08:00"),
    (ZoneInfo("America/New_York"), "2026-12-01 09:00:05-05:00"),
    (UTC, "2026-12-01 14:00:05+00:00"),
])
def test_times_are_in_the_zone_to_the_second_with_the_offset(tz: Any, local: str) -> None:
    ev = describe_entry(entry("held", {"reason": "r"}), tz=tz)
    assert ev.local == local
    assert ev.at == AT  # the signed time, untouched


# -- kinds this release does not know, and data of another form ---------------------------------


def test_an_unknown_kind_is_shown_with_its_data_summarised_safely() -> None:
    data: dict[str, Any] = {"by": "法官", "note": "a\x1b[31mred\u202e", "closed": True,
                            "nested": {"x": [1, 2]}, "long": "x" * 5000, "manifest": OTHER,
                            "none": None}
    ev = event("future_kind", data)
    assert not ev.known and ev.kind == "future_kind"
    assert ev.title.en == "event of unknown kind (future_kind)" and "future_kind" in ev.title.zh
    shown = facts(ev)
    assert shown["by"] == "法官" and shown["closed"] == "yes" and shown["none"] == "—"
    assert shown["note"] == "a\\x1b[31mred\\u202e"  # no control or bidi character survives
    assert shown["nested"] == '{"x": [1, 2]}'
    assert len(shown["long"]) == VALUE_MAX and shown["long"].endswith("…")
    assert [(h.label.en, h.value) for h in ev.hashes] == [("manifest", OTHER)]
    assert all(f.value.isprintable() for f in ev.facts)


def test_an_unknown_kind_with_many_keys_is_cut_short() -> None:
    ev = event("future", {f"k{i:03d}": i for i in range(UNKNOWN_KEYS_MAX + 5)})
    assert len(ev.facts) == UNKNOWN_KEYS_MAX + 1
    assert ev.facts[-1].value == "5 more keys"


def test_a_known_kind_with_data_of_another_form_is_shown_not_dropped() -> None:
    ev = event("audited", {"offsite": ["not", "a", "dict"], "fixity": 3})
    assert ev.known and ev.title.en == "audited"
    weird = event("labelled", {"case": {"a": 1}, "categories": 5, "retention": "forever"})
    assert weird.known and '{"a": 1}' in weird.summary.en
    stored = event("stored", {"media": "not a dict", "recorded_start": 5})
    assert stored.known and facts(stored)["recorded"].startswith("5 – ")


# -- the timeline --------------------------------------------------------------------------------


def test_the_timeline_is_in_ledger_order_each_entry_once_with_its_label() -> None:
    label = Label(id=1, item=SHA, case="C-1", party="张三", officer="", categories=(),
                  by="王五", at=AT, ledger_seq=9)
    entries = [entry("labelled", {"case": "C-1"}, seq=9), entry("stored", {}, seq=4),
               entry("docked", {}, seq=2, item=None), entry("stored", {}, seq=4)]
    timeline = build_timeline(item(), iter(entries), tz=BEIJING, label=label)
    assert [e.seq for e in timeline.events] == [2, 4, 9]
    assert (timeline.case, timeline.party, timeline.officer) == ("C-1", "张三", "李四")
    bare = build_timeline(item(), [], tz=BEIJING)
    assert (bare.case, bare.party, bare.officer, bare.events) == ("", "", "李四", ())


def test_signatures_are_claimed_only_as_checked() -> None:
    entries = [entry("stored", {}, seq=1), entry("labelled", {}, seq=2),
               entry("held", {}, seq=3)]
    timeline = build_timeline(item(), entries, tz=BEIJING, signatures={1: True, 2: False})
    marks = [outcomes(e)["entry hash and signature"] for e in timeline.events]
    assert marks == [Outcome.OK, Outcome.FAILED, Outcome.NOT_CHECKED]
    unchecked = build_timeline(item(), entries, tz=BEIJING)
    assert not any("entry hash and signature" in outcomes(e) for e in unchecked.events)


def test_sizes_are_exact_and_readable() -> None:
    assert human_size(512) == "512 B"
    assert human_size(60560) == "60,560 B (59.1 KiB)"
    assert human_size(3 * 1024**3) == "3,221,225,472 B (3.0 GiB)"
    assert human_size(None) == "—" and human_size(True) == "yes"
