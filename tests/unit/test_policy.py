"""Domain policy, to the second: recorded time, ingest lateness, recorder clocks, deadlines,
windows, retention and how it is never shortened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ingestd.domain import policy
from ingestd.domain.flags import Flag
from ingestd.domain.models import MediaInfo, RecordedTime, RetentionClass, TimeSource
from ingestd.domain.policy import FilenameTime, RetentionPolicy, Windows

T = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)
CST = timezone(timedelta(hours=8))
CONVENTIONS = (
    FilenameTime.of(r"(\d{8}_\d{6})", "%Y%m%d_%H%M%S"),
    FilenameTime.of(r"(\d{14})", "%Y%m%d%H%M%S"),
)
SECOND = timedelta(seconds=1)
MICRO = timedelta(microseconds=1)


def media(*, created: datetime | None, duration: float | None = 30.0) -> MediaInfo:
    return MediaInfo(ok=True, duration=duration, creation_time=created)


# -- recorded time ---------------------------------------------------------------------------


def test_recorded_time_comes_from_media_first() -> None:
    got = policy.recorded_time(media=media(created=T, duration=90.5),
                               name="20200101_000000.MP4", file_mtime=T + timedelta(days=3),
                               conventions=CONVENTIONS, tz=CST)
    assert got == RecordedTime(start=T, end=T + timedelta(seconds=90.5), source=TimeSource.MEDIA)


def test_media_time_with_an_offset_is_taken_as_utc() -> None:
    local = datetime(2026, 3, 1, 10, 0, tzinfo=CST)
    got = policy.recorded_time(media=media(created=local), name="x.mp4", file_mtime=T,
                               conventions=CONVENTIONS)
    assert got.start == T and got.start.tzinfo == UTC


def test_recorded_time_from_file_name_in_the_recorder_timezone() -> None:
    # The recorder names files in local time (+08:00): 10:00 local is 02:00 UTC.
    got = policy.recorded_time(media=media(created=None, duration=60),
                               name="20260301_100000_0007.MP4", file_mtime=T + timedelta(days=3),
                               conventions=CONVENTIONS, tz=CST)
    assert got.source == TimeSource.FILENAME
    assert got.start == T
    assert got.end == T + timedelta(seconds=60)


def test_second_file_name_convention_is_tried() -> None:
    got = policy.recorded_time(media=None, name="REC20260301100000.mp4", file_mtime=T,
                               conventions=CONVENTIONS, tz=CST)
    assert got.source == TimeSource.FILENAME and got.start == T


def test_a_name_that_looks_like_a_date_but_is_not_falls_through_to_file_time() -> None:
    mtime = T + timedelta(hours=5)
    got = policy.recorded_time(media=None, name="20261399_996099.MP4", file_mtime=mtime,
                               conventions=CONVENTIONS, tz=CST)
    assert got.source == TimeSource.FILE_TIME
    assert got.end == mtime


def test_file_time_is_the_end_of_the_recording() -> None:
    mtime = T + timedelta(minutes=10)
    got = policy.recorded_time(media=media(created=None, duration=120), name="clip.mp4",
                               file_mtime=mtime, conventions=CONVENTIONS, tz=CST)
    assert got == RecordedTime(start=mtime - timedelta(seconds=120), end=mtime,
                               source=TimeSource.FILE_TIME)


def test_unreadable_media_uses_name_then_file_time() -> None:
    got = policy.recorded_time(media=None, name="broken.mp4", file_mtime=T,
                               conventions=CONVENTIONS, tz=CST)
    assert got == RecordedTime(start=T, end=T, source=TimeSource.FILE_TIME)


# -- late ingest, clocks ---------------------------------------------------------------------


def flags_at(stored_at: datetime, *, start: datetime = T, end: datetime | None = None,
             docked_at: datetime | None = None, tolerance: timedelta = timedelta(minutes=10),
             windows: Windows | None = None) -> set[Flag]:
    recorded = RecordedTime(start=start, end=end or start + timedelta(minutes=5),
                            source=TimeSource.MEDIA)
    return policy.ingest_flags(recorded=recorded, stored_at=stored_at,
                               docked_at=docked_at or stored_at, windows=windows or Windows(),
                               clock_tolerance=tolerance)


def test_late_ingest_exactly_at_the_boundary() -> None:
    end = T + timedelta(minutes=5)
    deadline = end + timedelta(hours=24)
    assert flags_at(deadline, end=end) == set()
    assert flags_at(deadline + MICRO, end=end) == {Flag.LATE_INGEST}
    assert flags_at(deadline + SECOND, end=end) == {Flag.LATE_INGEST}
    assert flags_at(deadline - SECOND, end=end) == set()


def test_ingest_window_is_configurable() -> None:
    end = T + timedelta(minutes=5)
    two_days = Windows(ingest=timedelta(days=2))
    assert flags_at(end + timedelta(days=2), end=end, windows=two_days) == set()
    assert flags_at(end + timedelta(days=2) + SECOND, end=end, windows=two_days) == {
        Flag.LATE_INGEST}


def test_clock_unset_before_2000() -> None:
    docked = T
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    assert flags_at(docked, start=epoch - SECOND, docked_at=docked) == {Flag.CLOCK_UNSET}
    assert flags_at(docked, start=datetime(1970, 1, 1, tzinfo=UTC), docked_at=docked) == {
        Flag.CLOCK_UNSET}
    # 2000-01-01 itself is a plausible time (very late, so flagged late instead).
    assert flags_at(docked, start=epoch, docked_at=docked) == {Flag.LATE_INGEST}


def test_clock_skew_beyond_tolerance_only() -> None:
    docked = T
    tolerance = timedelta(minutes=10)
    assert flags_at(docked, start=docked + tolerance, docked_at=docked) == set()
    assert flags_at(docked, start=docked + tolerance + SECOND, docked_at=docked) == {
        Flag.CLOCK_SKEW}
    assert flags_at(docked, start=docked + timedelta(days=400), docked_at=docked,
                    tolerance=tolerance) == {Flag.CLOCK_SKEW}


def test_how_far_a_clock_is_ahead_counts_only_beyond_the_tolerance() -> None:
    docked = T
    tolerance = timedelta(minutes=10)

    def ahead(start: datetime) -> timedelta | None:
        return policy.clock_ahead(recorded_start=start, docked_at=docked, tolerance=tolerance)

    assert ahead(docked + tolerance - SECOND) is None
    assert ahead(docked + tolerance) is None
    assert ahead(docked + tolerance + SECOND) == tolerance + SECOND
    assert ahead(docked + timedelta(days=400)) == timedelta(days=400)
    assert ahead(docked) is None
    assert ahead(docked - timedelta(days=1)) is None  # behind is not ahead
    assert policy.clock_ahead(recorded_start=docked + SECOND, docked_at=docked,
                              tolerance=timedelta(0)) == SECOND


def test_a_wrong_clock_is_flagged_instead_of_lateness() -> None:
    # A 1980 time would make every item "late"; the clock is what is wrong.
    stored = T
    assert flags_at(stored, start=datetime(1980, 1, 1, tzinfo=UTC)) == {Flag.CLOCK_UNSET}


def test_deadlines() -> None:
    end = T + timedelta(minutes=5)
    stored = T + timedelta(hours=3)
    got = policy.deadlines(recorded_end=end, stored_at=stored, windows=Windows())
    assert got.ingest == end + timedelta(hours=24)
    assert got.label == stored + timedelta(hours=48)
    assert got.replication == stored + timedelta(hours=24)


def test_window_flags_at_the_label_and_replication_boundaries() -> None:
    stored = T
    w = Windows()

    def at(now: datetime, *, labelled: bool = False, replicated: bool = False,
           required: bool = True) -> set[Flag]:
        due = policy.deadlines(recorded_end=stored, stored_at=stored, windows=w)
        return policy.window_flags(label_deadline=due.label,
                                   replication_deadline=due.replication, now=now,
                                   labelled=labelled, replicated=replicated,
                                   replication_required=required)

    assert at(stored + w.replication) == set()
    assert at(stored + w.replication + SECOND) == {Flag.LATE_REPLICATION}
    assert at(stored + w.label) == {Flag.LATE_REPLICATION}
    assert at(stored + w.label + SECOND) == {Flag.LATE_REPLICATION, Flag.LATE_LABEL}
    assert at(stored + w.label + SECOND, labelled=True, replicated=True) == set()
    assert at(stored + w.label + SECOND, required=False) == {Flag.LATE_LABEL}


def test_window_flags_go_by_the_deadlines_the_item_was_stored_with() -> None:
    # Windows shortened after storage do not make an item late before its own deadline.
    label_due, replication_due = T + timedelta(hours=48), T + timedelta(hours=24)

    def at(now: datetime) -> set[Flag]:
        return policy.window_flags(label_deadline=label_due, replication_deadline=replication_due,
                                   now=now, labelled=False, replicated=False,
                                   replication_required=True)

    assert at(replication_due) == set()
    assert at(replication_due + SECOND) == {Flag.LATE_REPLICATION}
    assert at(label_due) == {Flag.LATE_REPLICATION}
    assert at(label_due + SECOND) == {Flag.LATE_REPLICATION, Flag.LATE_LABEL}


def test_replicated_for_the_window_once_every_required_target_holds_a_sent_copy() -> None:
    required = {"nas", "cloud"}
    assert policy.replication_done(required=required, sent={"nas", "cloud"})
    assert policy.replication_done(required=required, sent={"nas", "cloud", "spare"})
    assert not policy.replication_done(required=required, sent={"nas"})
    assert not policy.replication_done(required=required, sent={"spare"})
    assert not policy.replication_done(required=required, sent=set())
    assert policy.replication_done(required=set(), sent=set())  # nothing is asked for


# -- retention -------------------------------------------------------------------------------

P = RetentionPolicy()


def keep(**kw: object) -> policy.Retention:
    args: dict[str, object] = {"recorded_end": T, "stored_at": T, "has_case": False,
                               "categories": (), "hold": False, "policy": P}
    args.update(kw)
    return policy.retention(**args)  # type: ignore[arg-type]


def test_routine_footage_is_kept_one_year() -> None:
    got = keep()
    assert got.cls == RetentionClass.ROUTINE
    assert got.until == T + timedelta(days=365)
    assert not got.hold


def test_evidence_takes_the_case_retention() -> None:
    got = keep(has_case=True, case_retention=timedelta(days=365 * 10))
    assert got.cls == RetentionClass.EVIDENCE
    assert got.until == T + timedelta(days=365 * 10)
    # Without a case-specific retention, the policy's evidence period.
    assert keep(has_case=True).until == T + P.evidence


def test_longest_retention_wins_over_a_short_case() -> None:
    got = keep(has_case=True, case_retention=timedelta(days=30))
    assert got.cls == RetentionClass.EVIDENCE
    assert got.until == T + timedelta(days=365)


@pytest.mark.parametrize("category", sorted(P.long_term_categories))
def test_long_term_categories_never_expire(category: str) -> None:
    got = keep(has_case=True, categories=[category], case_retention=timedelta(days=30))
    assert got.cls == RetentionClass.LONG_TERM
    assert got.until is None


def test_unknown_category_does_not_make_long_term() -> None:
    assert keep(categories=["birthday"]).cls == RetentionClass.ROUTINE


def test_hold_is_carried_beside_the_class_and_never_shortens_retention() -> None:
    # A legal hold blocks every deletion on its own; the class's retention keeps running
    # beside it (so releasing the hold later falls back to the right date).
    for kw in ({}, {"has_case": True}, {"categories": ["assault"]}):
        held, free = keep(hold=True, **kw), keep(hold=False, **kw)
        assert held.hold and not free.hold
        assert held.cls == free.cls
        assert held.until == free.until


def test_routine_retention_follows_policy() -> None:
    two_years = RetentionPolicy(routine=timedelta(days=730))
    assert keep(policy=two_years).until == T + timedelta(days=730)
    # A case shorter than routine still gets routine.
    assert keep(policy=two_years, has_case=True,
                case_retention=timedelta(days=400)).until == T + timedelta(days=730)


def test_retention_runs_from_storage_when_the_recorder_clock_is_behind() -> None:
    # A recorder two and a half years behind: its clip is stored today and kept a full
    # year from today, not until a date already past.
    stored = T + timedelta(days=913, hours=5, seconds=7)
    got = keep(recorded_end=T, stored_at=stored)
    assert got.until == stored + timedelta(days=365)
    assert keep(recorded_end=T, stored_at=stored, has_case=True).until == stored + P.evidence


def test_retention_runs_from_an_unset_clock_to_a_full_period_after_storage() -> None:
    unset = datetime(1999, 12, 31, 16, 0, 1, tzinfo=UTC)
    got = keep(recorded_end=unset, stored_at=T)
    assert got.until == T + timedelta(days=365)


def test_retention_runs_from_the_recording_end_when_it_is_later() -> None:
    # A recorder clock ahead of the station's: the later of the two still wins, so a wrong
    # clock can only lengthen retention.
    ahead = T + timedelta(hours=3, seconds=1)
    assert keep(recorded_end=ahead, stored_at=T).until == ahead + timedelta(days=365)
    assert keep(recorded_end=T, stored_at=T + SECOND).until == T + SECOND + timedelta(days=365)


def test_longer_retention_treats_never_as_the_longest() -> None:
    assert policy.longer_retention(T + SECOND, T)
    assert not policy.longer_retention(T, T)
    assert not policy.longer_retention(T - SECOND, T)
    assert policy.longer_retention(None, T)
    assert not policy.longer_retention(None, None)
    assert not policy.longer_retention(T, None)


def kept(new: policy.Retention, granted_class: RetentionClass,
         granted_until: datetime | None) -> policy.Retention:
    return policy.kept_retention(new, granted_class=granted_class, granted_until=granted_until)


def test_a_shorter_new_date_is_refused_to_the_second() -> None:
    # A rule that shrank (evidence now kept for less) never moves a date granted before.
    new = keep(has_case=True, policy=RetentionPolicy(evidence=timedelta(days=3650)))
    assert new.until is not None
    evidence = RetentionClass.EVIDENCE
    later = new.until + SECOND
    assert kept(new, evidence, later) == policy.Retention(cls=evidence, until=later, hold=False)
    assert kept(new, evidence, new.until) == new
    assert kept(new, evidence, new.until - SECOND) == new
    assert kept(new, evidence, None) == new  # no date granted: nothing to keep


def test_a_class_change_keeps_the_longer_date_and_takes_the_new_class() -> None:
    routine = keep()
    assert routine.until is not None
    # Labelled: routine becomes evidence, and its longer date wins.
    evidence = keep(has_case=True)
    assert kept(evidence, RetentionClass.ROUTINE, routine.until) == evidence
    # A routine date granted later than what the new class gives stays, under the new class.
    long_granted = routine.until + P.evidence
    got = kept(evidence, RetentionClass.ROUTINE, long_granted)
    assert (got.cls, got.until) == (RetentionClass.EVIDENCE, long_granted)


def test_long_term_never_expires_and_stays() -> None:
    long_term = keep(has_case=True, categories=["assault"])
    assert long_term.until is None
    # Raised to long-term: no date wins over never.
    assert kept(long_term, RetentionClass.EVIDENCE, T + P.evidence) == long_term
    # A later label without the category, or a release, leaves it long-term.
    for new in (keep(has_case=True), keep(), keep(has_case=True, hold=True)):
        got = kept(new, RetentionClass.LONG_TERM, None)
        assert (got.cls, got.until, got.hold) == (RetentionClass.LONG_TERM, None, new.hold)


def test_the_hold_is_always_the_new_one() -> None:
    held = keep(has_case=True, hold=True)
    assert held.until is not None
    assert kept(held, RetentionClass.EVIDENCE, held.until + SECOND).hold is True
    released = keep(has_case=True, hold=False)
    assert kept(released, RetentionClass.EVIDENCE, held.until + SECOND).hold is False
    assert kept(released, RetentionClass.LONG_TERM, None).hold is False


# -- offsets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "hours"), [
    ("+08:00", 8), ("-0500", -5), ("UTC", 0), ("Z", 0), ("+05:30", 5.5)])
def test_utc_offsets(text: str, hours: float) -> None:
    tz = policy.parse_utc_offset(text)
    assert tz.utcoffset(None) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["CET", "8", "+8", "Asia/Shanghai", ""])
def test_bad_utc_offsets(text: str) -> None:
    with pytest.raises(ValueError, match="not a UTC offset"):
        policy.parse_utc_offset(text)


@pytest.mark.parametrize(("text", "hours"), [
    ("+08:00", 8), ("UTC", 0), ("Asia/Shanghai", 8), ("America/New_York", -5)])
def test_zones_are_offsets_or_names(text: str, hours: float) -> None:
    winter = datetime(2026, 12, 1, tzinfo=UTC)
    assert policy.parse_zone(text).utcoffset(winter) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["Mars/Olympus", "8", "", "../etc/passwd"])
def test_bad_zones(text: str) -> None:
    with pytest.raises(ValueError, match="not a UTC offset or time zone"):
        policy.parse_zone(text)


# -- case types ------------------------------------------------------------------------------

TYPED = RetentionPolicy(case_types={"penalty": timedelta(days=365 * 30 + 1, seconds=1),
                                    "minor": timedelta(days=400)})


def test_a_case_type_longer_than_evidence_gives_its_period_to_the_second() -> None:
    got = keep(policy=TYPED, has_case=True, case_type="penalty")
    assert got.cls == RetentionClass.EVIDENCE
    assert got.until == T + timedelta(days=365 * 30 + 1, seconds=1)
    assert policy.case_type_period(TYPED, "penalty") == timedelta(days=365 * 30 + 1, seconds=1)


def test_a_case_type_shorter_than_evidence_keeps_the_evidence_period() -> None:
    # The longest rule wins: a case type never shortens what a case number alone gives.
    assert keep(policy=TYPED, has_case=True, case_type="minor").until == T + TYPED.evidence
    assert policy.case_type_period(TYPED, "minor") == TYPED.evidence


def test_an_unknown_or_absent_case_type_keeps_the_evidence_period() -> None:
    assert keep(policy=TYPED, has_case=True, case_type="gone").until == T + TYPED.evidence
    assert keep(policy=TYPED, has_case=True).until == T + TYPED.evidence
    assert policy.case_type_period(TYPED, None) is None
    assert policy.case_type_period(TYPED, "gone") is None


def test_a_case_type_without_a_case_and_under_long_term_changes_nothing() -> None:
    assert keep(policy=TYPED, case_type="penalty").until == T + TYPED.routine
    got = keep(policy=TYPED, has_case=True, case_type="penalty", categories=["assault"])
    assert got.cls == RetentionClass.LONG_TERM and got.until is None


def test_a_case_type_runs_from_the_later_of_recording_end_and_storage() -> None:
    stored = T + timedelta(days=3, seconds=5)
    got = keep(policy=TYPED, has_case=True, case_type="penalty", stored_at=stored)
    assert got.until == stored + timedelta(days=365 * 30 + 1, seconds=1)


def test_a_later_shorter_case_type_never_shortens_what_was_granted() -> None:
    granted = keep(policy=TYPED, has_case=True, case_type="penalty")
    shorter = keep(policy=TYPED, has_case=True, case_type="minor")
    kept = policy.kept_retention(shorter, granted_class=granted.cls,
                                 granted_until=granted.until)
    assert kept.until == granted.until
    longer = policy.kept_retention(granted, granted_class=shorter.cls,
                                   granted_until=shorter.until)
    assert longer.until == granted.until


# -- what decided a retention ------------------------------------------------------------------


def why(granted: policy.Retention, **kw: object) -> policy.RetentionReason:
    args: dict[str, object] = {"recorded_end": T, "stored_at": T, "labelled": False,
                               "categories": (), "case_type": None, "policy": TYPED}
    args.update(kw)
    return policy.retention_reason(granted=granted, **args)  # type: ignore[arg-type]


def test_the_reason_names_the_rule_that_gave_the_date() -> None:
    routine = keep(policy=TYPED)
    assert why(routine) == policy.RetentionReason(
        rule=policy.RetentionRule.ROUTINE, since=T, period=TYPED.routine)
    evidence = keep(policy=TYPED, has_case=True)
    assert why(evidence, labelled=True).rule == policy.RetentionRule.EVIDENCE
    # A shorter case type did not decide: the evidence period did.
    assert why(evidence, labelled=True, case_type="minor").rule == policy.RetentionRule.EVIDENCE
    typed = keep(policy=TYPED, has_case=True, case_type="penalty")
    got = why(typed, labelled=True, case_type="penalty")
    assert got.rule == policy.RetentionRule.CASE_TYPE and got.case_type == "penalty"
    assert got.period == timedelta(days=365 * 30 + 1, seconds=1)
    long_term = keep(policy=TYPED, has_case=True, categories=["assault", "dispute"])
    got = why(long_term, labelled=True, categories=["dispute", "assault"])
    assert got.rule == policy.RetentionRule.CATEGORY and got.category == "assault"
    assert got.period is None


def test_the_reason_is_an_earlier_grant_when_the_rules_now_give_another_date() -> None:
    typed = keep(policy=TYPED, has_case=True, case_type="penalty")
    # Relabelled with a shorter case type: the granted date stays, and the grant decided.
    assert why(typed, labelled=True, case_type="minor").rule == policy.RetentionRule.GRANTED
    one_second_more = policy.Retention(cls=typed.cls, until=typed.until + SECOND,  # type: ignore[operator]
                                       hold=False)
    assert why(one_second_more, labelled=True,
               case_type="penalty").rule == policy.RetentionRule.GRANTED
    long_term = keep(policy=TYPED, has_case=True, categories=["dispute"])
    assert why(long_term, labelled=True).rule == policy.RetentionRule.GRANTED


def test_the_reason_counts_from_the_later_of_recording_end_and_storage() -> None:
    stored = T + timedelta(days=2, seconds=1)
    got = why(keep(policy=TYPED, stored_at=stored), stored_at=stored)
    assert got.since == stored and got.rule == policy.RetentionRule.ROUTINE


# -- windows ahead -----------------------------------------------------------------------------


def ahead(now: datetime, within: timedelta = timedelta(hours=6), **kw: object
          ) -> dict[Flag, datetime]:
    args: dict[str, object] = {"label_deadline": T + timedelta(hours=48),
                               "replication_deadline": T + timedelta(hours=24),
                               "labelled": False, "replicated": False,
                               "replication_required": True}
    args.update(kw)
    return policy.windows_ahead(now=now, within=within, **args)  # type: ignore[arg-type]


def test_a_window_is_ahead_from_six_hours_before_its_deadline_to_the_second() -> None:
    rep = T + timedelta(hours=24)
    assert ahead(rep - timedelta(hours=6) - SECOND) == {}
    assert ahead(rep - timedelta(hours=6)) == {Flag.LATE_REPLICATION: rep}
    assert ahead(rep) == {Flag.LATE_REPLICATION: rep}  # still open at the deadline itself
    assert ahead(rep + SECOND) == {}  # past: a flag now, not a window ahead
    label = T + timedelta(hours=48)
    assert ahead(label - timedelta(hours=6)) == {Flag.LATE_LABEL: label}
    both = ahead(rep, within=timedelta(hours=24))
    assert both == {Flag.LATE_REPLICATION: rep, Flag.LATE_LABEL: label}
    assert ahead(rep, within=timedelta(hours=24) - SECOND) == {Flag.LATE_REPLICATION: rep}


def test_a_window_met_or_not_asked_for_is_not_ahead() -> None:
    rep, label = T + timedelta(hours=24), T + timedelta(hours=48)
    near = rep - timedelta(hours=1)
    assert ahead(near, replicated=True) == {}
    assert ahead(near, replication_required=False) == {}
    assert ahead(label - SECOND, labelled=True) == {}
    # The flag for each window goes at the same instant the window check would set it.
    for now in (rep, rep + SECOND):
        flagged = policy.window_flags(label_deadline=label, replication_deadline=rep, now=now,
                                      labelled=False, replicated=False,
                                      replication_required=True)
        assert (Flag.LATE_REPLICATION in flagged) != (Flag.LATE_REPLICATION in ahead(now))


def test_the_missed_deadline_is_the_window_flag_own() -> None:
    times = {"ingest": T, "label": T + SECOND, "replication": T + 2 * SECOND}
    assert policy.missed_deadline(Flag.LATE_INGEST, **times) == T
    assert policy.missed_deadline(Flag.LATE_LABEL, **times) == T + SECOND
    assert policy.missed_deadline(Flag.LATE_REPLICATION, **times) == T + 2 * SECOND
    assert policy.missed_deadline(Flag.CLOCK_SKEW, **times) is None


def test_local_time_is_to_the_second_with_its_offset() -> None:
    moment = datetime(2026, 12, 1, 14, 0, 5, 999999, tzinfo=UTC)
    assert policy.local_time(moment, policy.parse_utc_offset("+08:00")) == (
        "2026-12-01 22:00:05+08:00")
    assert policy.local_time(moment, UTC) == "2026-12-01 14:00:05+00:00"
    assert policy.local_time(moment, policy.parse_utc_offset("-0530")) == (
        "2026-12-01 08:30:05-05:30")
