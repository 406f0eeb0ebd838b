"""Policy: deadlines, clock plausibility, recorded time, retention, WORM lock dates, eviction
from the local store, wipe eligibility, the spot checks' sample.

Every function takes the time it needs as an argument, so each rule is testable to the second.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Struct, field

from .flags import Flag
from .models import MediaInfo, RecordedTime, RetentionClass, TimeSource

#: What tells the time: the station's clock (UTC, aware), or a fake one in tests.
Clock = Callable[[], datetime]

#: A recorder time before this means its clock was never set.
CLOCK_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class Windows(Struct, frozen=True, kw_only=True):
    ingest: timedelta = timedelta(hours=24)
    label: timedelta = timedelta(hours=48)
    replication: timedelta = timedelta(hours=24)


class FilenameTime(Struct, frozen=True, kw_only=True):
    """A recorder's file-name convention: a regex whose first group is parsed by ``format``."""

    pattern: re.Pattern[str]
    format: str

    @classmethod
    def of(cls, pattern: str, fmt: str) -> FilenameTime:
        return cls(pattern=re.compile(pattern), format=fmt)


class Deadlines(Struct, frozen=True, kw_only=True):
    ingest: datetime
    label: datetime
    replication: datetime


def deadlines(*, recorded_end: datetime, stored_at: datetime, windows: Windows) -> Deadlines:
    return Deadlines(
        ingest=recorded_end + windows.ingest,
        label=stored_at + windows.label,
        replication=stored_at + windows.replication,
    )


def time_from_filename(
    name: str, conventions: Sequence[FilenameTime], tz: tzinfo
) -> datetime | None:
    for convention in conventions:
        match = convention.pattern.search(name)
        if not match:
            continue
        text = match.group(1) if match.groups() else match.group(0)
        try:
            parsed = datetime.strptime(text, convention.format)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz)
        return parsed.astimezone(UTC)
    return None


def recorded_time(
    *,
    media: MediaInfo | None,
    name: str,
    file_mtime: datetime,
    conventions: Sequence[FilenameTime],
    tz: tzinfo = UTC,
) -> RecordedTime:
    """Recorded start and end: media metadata, else the file name, else the file time.

    A file's modification time is when the recorder finished writing it, so it is taken as the
    end and the duration (when known) gives the start.
    """
    duration = timedelta(seconds=media.duration) if media and media.duration else timedelta(0)
    if media and media.creation_time is not None:
        start = media.creation_time.astimezone(UTC)
        return RecordedTime(start=start, end=start + duration, source=TimeSource.MEDIA)
    from_name = time_from_filename(name, conventions, tz)
    if from_name is not None:
        return RecordedTime(start=from_name, end=from_name + duration, source=TimeSource.FILENAME)
    end = file_mtime.astimezone(UTC)
    return RecordedTime(start=end - duration, end=end, source=TimeSource.FILE_TIME)


def clock_ahead(*, recorded_start: datetime, docked_at: datetime,
                tolerance: timedelta) -> timedelta | None:
    """How far a recording lies in the station's future when its recorder docked, if more than
    ``tolerance`` (None: its clock is not ahead, or within the tolerance)."""
    ahead = recorded_start - docked_at
    return ahead if ahead > tolerance else None


def clock_flags(recorded: RecordedTime, *, docked_at: datetime, tolerance: timedelta) -> set[Flag]:
    if recorded.start < CLOCK_EPOCH:
        return {Flag.CLOCK_UNSET}
    if clock_ahead(recorded_start=recorded.start, docked_at=docked_at,
                   tolerance=tolerance) is not None:
        return {Flag.CLOCK_SKEW}
    return set()


def ingest_flags(
    *,
    recorded: RecordedTime,
    stored_at: datetime,
    docked_at: datetime,
    windows: Windows,
    clock_tolerance: timedelta,
) -> set[Flag]:
    """Flags known at the moment an item is stored."""
    flags = clock_flags(recorded, docked_at=docked_at, tolerance=clock_tolerance)
    # A recorder whose clock is wrong cannot tell us whether we are late: flag the clock instead.
    if not flags and stored_at > recorded.end + windows.ingest:
        flags.add(Flag.LATE_INGEST)
    return flags


def window_flags(
    *,
    label_deadline: datetime,
    replication_deadline: datetime,
    now: datetime,
    labelled: bool,
    replicated: bool,
    replication_required: bool,
) -> set[Flag]:
    """Flags for deadlines that run after storage (checked on a schedule). The deadlines are
    the item's own, fixed when it was stored (``deadlines``) and signed in its entry: a later
    change of the windows applies to what is stored after it, and the entry of a flag names
    the deadline that passed."""
    flags: set[Flag] = set()
    if not labelled and now > label_deadline:
        flags.add(Flag.LATE_LABEL)
    if replication_required and not replicated and now > replication_deadline:
        flags.add(Flag.LATE_REPLICATION)
    return flags


def windows_ahead(
    *,
    label_deadline: datetime,
    replication_deadline: datetime,
    now: datetime,
    within: timedelta,
    labelled: bool,
    replicated: bool,
    replication_required: bool,
) -> dict[Flag, datetime]:
    """The windows still open that close within ``within`` of ``now``: the flag each would
    set, and its deadline. A window is open up to its deadline itself (``window_flags`` flags
    only once ``now`` is past it) and is listed when its deadline is at most ``now + within``;
    one already past is a flag, not a window ahead."""
    horizon = now + within
    ahead: dict[Flag, datetime] = {}
    if not labelled and now <= label_deadline <= horizon:
        ahead[Flag.LATE_LABEL] = label_deadline
    if (replication_required and not replicated
            and now <= replication_deadline <= horizon):
        ahead[Flag.LATE_REPLICATION] = replication_deadline
    return ahead


def missed_deadline(flag: Flag, *, ingest: datetime, label: datetime,
                    replication: datetime) -> datetime | None:
    """The deadline a window flag says was missed (the item's own, as it was stored); None for
    a flag that is not about a window."""
    return {Flag.LATE_INGEST: ingest, Flag.LATE_LABEL: label,
            Flag.LATE_REPLICATION: replication}.get(flag)


def replication_done(*, required: AbstractSet[str], sent: AbstractSet[str]) -> bool:
    """Whether an item is replicated, as its replication window asks: every required target
    holds a copy it accepted and describes correctly (``sent``, read back or not: the window
    asks for copies made in time; what lets anything go is a proven copy)."""
    return required <= sent


class RetentionPolicy(Struct, frozen=True, kw_only=True):
    routine: timedelta = timedelta(days=365)
    evidence: timedelta = timedelta(days=365 * 30)
    long_term_categories: frozenset[str] = frozenset(
        {"dispute", "complaint", "obstruction", "assault", "incident", "mass-incident"}
    )
    #: Evidence periods by case type (``[retention.case_types]``): an item labelled with one
    #: is kept the longer of its period and ``evidence``.
    case_types: Mapping[str, timedelta] = field(default_factory=dict)


class Retention(Struct, frozen=True, kw_only=True):
    cls: RetentionClass
    until: datetime | None  # None: never expires (long-term); a hold blocks deletion besides
    hold: bool


def retention_start(*, recorded_end: datetime, stored_at: datetime) -> datetime:
    """When a retention period starts: the later of the recording's end and its storage, so a
    recorder clock that is behind (or unset) never shortens how long footage is kept."""
    return max(recorded_end, stored_at)


def retention(
    *,
    recorded_end: datetime,
    stored_at: datetime,
    has_case: bool,
    categories: Iterable[str],
    hold: bool,
    policy: RetentionPolicy,
    case_retention: timedelta | None = None,
    case_type: str | None = None,
) -> Retention:
    """The longest applicable retention wins; long-term and legal hold never expire. A case
    type (``case_type``) gives an evidence item its type's period when that is longer."""
    if set(categories) & policy.long_term_categories:
        return Retention(cls=RetentionClass.LONG_TERM, until=None, hold=hold)
    if case_retention is None and has_case:
        case_retention = case_type_period(policy, case_type)
    cls = RetentionClass.EVIDENCE if has_case else RetentionClass.ROUTINE
    start = retention_start(recorded_end=recorded_end, stored_at=stored_at)
    return Retention(cls=cls, until=start + class_period(cls, policy, case_retention), hold=hold)


def case_type_period(policy: RetentionPolicy, case_type: str | None) -> timedelta | None:
    """The evidence period of items labelled with ``case_type``: the longer of the type's own
    period and the evidence period, so a case type never shortens (None: no case type, or one
    the policy no longer names, which then keeps the evidence period)."""
    if case_type is None or case_type not in policy.case_types:
        return None
    return max(policy.evidence, policy.case_types[case_type])


def class_period(cls: RetentionClass, policy: RetentionPolicy,
                 case_retention: timedelta | None = None) -> timedelta:
    """How long a class keeps footage (long-term: as long as evidence, at the least)."""
    if cls == RetentionClass.ROUTINE:
        return policy.routine
    return max(policy.routine, case_retention or policy.evidence)


def longer_retention(a: datetime | None, b: datetime | None) -> bool:
    """Whether retain-until ``a`` keeps footage longer than ``b`` (None: never expires)."""
    if b is None:
        return False
    return a is None or a > b


def kept_retention(new: Retention, *, granted_class: RetentionClass,
                   granted_until: datetime | None) -> Retention:
    """The retention an item keeps when it is worked out again (a label, a hold or a release,
    a rule that grew): never less than it was granted. Long-term stays long-term, as it was
    granted; a retain-until date never moves earlier (the class is the new one); the hold is
    the new one. Labels, holds and releases (casework) and re-dating ask it alike."""
    if granted_class == RetentionClass.LONG_TERM:
        return Retention(cls=RetentionClass.LONG_TERM, until=granted_until, hold=new.hold)
    if granted_until is not None and longer_retention(granted_until, new.until):
        return Retention(cls=new.cls, until=granted_until, hold=new.hold)
    return new


class RetentionRule(StrEnum):
    """What decided an item's retention, as ``retention list`` says it."""

    ROUTINE = "routine"  # not labelled: the routine period
    EVIDENCE = "evidence"  # labelled with a case: the evidence period
    CASE_TYPE = "case-type"  # labelled with a case type whose period is longer
    CATEGORY = "category"  # a long-term category of its label: it never expires
    GRANTED = "granted"  # what an earlier entry granted, kept: never shortened


class RetentionReason(Struct, frozen=True, kw_only=True):
    rule: RetentionRule
    since: datetime  # when its period runs from
    period: timedelta | None  # None: it never expires, or an earlier grant decided
    category: str | None = None
    case_type: str | None = None


def retention_reason(*, granted: Retention, recorded_end: datetime, stored_at: datetime,
                     labelled: bool, categories: Iterable[str], case_type: str | None,
                     policy: RetentionPolicy) -> RetentionReason:
    """Which rule gives an item the retention it has (``granted``: its class and date as its
    last entry states them), worked out again from its current label. When the rules as they
    are now would give another date (a longer one was granted before, or a rule grew since and
    re-dating has not yet caught up), the earlier grant decided."""
    since = retention_start(recorded_end=recorded_end, stored_at=stored_at)
    wanted = set(categories)
    now = retention(recorded_end=recorded_end, stored_at=stored_at, has_case=labelled,
                    categories=wanted, hold=granted.hold, policy=policy, case_type=case_type)
    if granted.cls == RetentionClass.LONG_TERM:
        hit = sorted(wanted & policy.long_term_categories)
        if hit:
            return RetentionReason(rule=RetentionRule.CATEGORY, since=since, period=None,
                                   category=hit[0])
        return RetentionReason(rule=RetentionRule.GRANTED, since=since, period=None)
    if now.cls != granted.cls or now.until != granted.until:
        return RetentionReason(rule=RetentionRule.GRANTED, since=since, period=None)
    if not labelled:
        return RetentionReason(rule=RetentionRule.ROUTINE, since=since, period=policy.routine)
    period = class_period(RetentionClass.EVIDENCE, policy)
    typed = case_type_period(policy, case_type)
    if typed is not None and typed > period:
        return RetentionReason(rule=RetentionRule.CASE_TYPE, since=since, period=typed,
                               case_type=case_type)
    return RetentionReason(rule=RetentionRule.EVIDENCE, since=since, period=period)


def safe_copies(proven: AbstractSet[str], *, worm_failed: AbstractSet[str]) -> frozenset[str]:
    """The targets whose proven copy of an item counts as safe: a copy on a target whose last
    WORM check let a deletion or a shorter retention through (``worm_failed``) could be
    deleted by whoever holds the bucket's keys, so it counts for nothing until the target
    passes again."""
    return frozenset(proven) - frozenset(worm_failed)


def may_evict(*, required: AbstractSet[str], proven: AbstractSet[str], stored_at: datetime,
              now: datetime, local_keep: timedelta, hold: bool, local_present: bool,
              ours: bool, worm_failed: AbstractSet[str] = frozenset()) -> bool:
    """Whether an item may leave the local store, which is a cache of what is safe off-site.

    Only when every required target holds a proven copy (``proven``: its bytes read back and
    hashed to the item, at the location the target has now; with no required target nothing is
    safe off-site) and is not failing its WORM check (``worm_failed``, see
    :func:`safe_copies`), it was stored ``local_keep`` or longer before ``now``, it is not on
    legal hold, it is still here, and this station stored it (``ours``)."""
    safe = safe_copies(proven, worm_failed=worm_failed)
    return (bool(required) and required <= safe and stored_at + local_keep <= now
            and not hold and local_present and ours)


#: S3 COMPLIANCE retention needs a date. Footage kept long-term (never expires) is locked this
#: long after it was recorded: longer than any rule asks, and no one can shorten it.
LONG_TERM_LOCK = timedelta(days=365 * 100)

#: The latest retain-until date asked of a server. Ceph RGW (16.2 at least) keeps the date in
#: 32-bit seconds: a later one wraps round to the 1970s or 1980s, which it accepts even under
#: COMPLIANCE, leaving the object deletable. 2^32 s after the epoch is 2106-02-07T06:28:16Z.
MAX_RETAIN_UNTIL = datetime(2106, 1, 1, tzinfo=UTC)


def long_term_until(now: datetime, *, cap: datetime = MAX_RETAIN_UNTIL) -> datetime:
    """The COMPLIANCE date for what is kept long-term (and for checkpoints)."""
    return min(now + LONG_TERM_LOCK, cap)


class WormLock(Struct, frozen=True, kw_only=True):
    """The WORM lock an item's off-site copies must carry."""

    retain_until: datetime
    legal_hold: bool


def worm_lock(*, retain_until: datetime | None, cls: RetentionClass, hold: bool,
              recorded_start: datetime, now: datetime, policy: RetentionPolicy,
              cap: datetime = MAX_RETAIN_UNTIL) -> WormLock:
    """The lock for an item's copies: its retain-until date, and never less than its class's
    whole period from ``now`` (a date counted from a wrong recorder clock may already be past).
    Without a date (it never expires) the long-term date, counted from the later of the
    recorder's clock and ours. At most ``cap``; legal hold when it is held, beside the date."""
    if retain_until is not None:
        until = max(retain_until, now + class_period(cls, policy))
    else:
        until = long_term_until(max(recorded_start, now), cap=cap)
    return WormLock(retain_until=min(until, cap), legal_hold=hold)


class WipeMode(StrEnum):
    """``docks.wipe``: whether a recorder's files are deleted once ingested, and after what."""

    NEVER = "never"
    AFTER_LOCAL_VERIFY = "after-local-verify"  # once its bytes are verified in the local store
    AFTER_OFFSITE_VERIFY = "after-offsite-verify"  # ... and proven on every required target

    @property
    def needs_offsite_proof(self) -> bool:
        return self is WipeMode.AFTER_OFFSITE_VERIFY


class FsCheck(StrEnum):
    """What the read-only file system check of a recorder that ingestd mounts found."""

    CLEAN = "clean"
    ERRORS = "errors"
    NOT_RUN = "not-run"  # docks.fs_check = false


class WipeBar(StrEnum):
    """Why a recorder, or one file on it, is not wiped."""

    NEVER = "never"  # docks.wipe = "never"
    FS_NOT_CHECKED = "fs-not-checked"
    FS_ERRORS = "fs-errors"
    FUSEFAT_WRITE_OFF = "fusefat-write-off"  # only fusefat can write it, and it is not asked to
    NO_REQUIRED_TARGET = "no-required-target"  # off-site proof asked for, and nowhere to prove
    NOT_VERIFIED = "not-verified"  # the file's bytes are not a verified item in the store
    NOT_PROVEN = "not-proven"  # a required target holds no proven copy of its item
    WORM_FAILED = "worm-failed"  # a required target's copy is proven, but its WORM check failed


def recorder_wipe_bar(*, mode: WipeMode, fs_check: FsCheck, fusefat: bool,
                      fusefat_write: bool) -> WipeBar | None:
    """Why a recorder that ingestd mounts itself must not be made writable to be wiped (None:
    nothing forbids it).

    Deleting on a damaged file system (a cross-linked FAT, a bad ext4 bitmap) can free the
    blocks of a file that was never ingested, so only a check that ran and was clean lets a
    wipe happen; fusefat's rw+ is an experimental writer, used only when asked for
    (``fusefat_write``). A watched folder is mounted by the system, not by ingestd, and is not
    asked this."""
    if mode is WipeMode.NEVER:
        return WipeBar.NEVER
    if fs_check is FsCheck.NOT_RUN:
        return WipeBar.FS_NOT_CHECKED
    if fs_check is FsCheck.ERRORS:
        return WipeBar.FS_ERRORS
    if fusefat and not fusefat_write:
        return WipeBar.FUSEFAT_WRITE_OFF
    return None


def wipe_bar(*, mode: WipeMode, required: AbstractSet[str]) -> WipeBar | None:
    """Why no file is wiped under ``mode`` with these required targets, whatever the file (None:
    each file may be, as :func:`file_wipe_bar` says)."""
    if mode is WipeMode.NEVER:
        return WipeBar.NEVER
    if mode.needs_offsite_proof and not required:
        return WipeBar.NO_REQUIRED_TARGET
    return None


def file_wipe_bar(*, mode: WipeMode, required: AbstractSet[str], verified: bool,
                  proven: AbstractSet[str],
                  worm_failed: AbstractSet[str] = frozenset()) -> WipeBar | None:
    """Why one file on a recorder must not be deleted (None: it may, provided what is there
    still hashes to its item when it is deleted).

    ``verified``: the file's bytes were read back from the local store and hashed to its item
    (the acquisition stored them, or found them stored); ``proven``: the targets that hold a
    proven copy of the item, which only ``after-offsite-verify`` asks for (every required one,
    as the retention sweep asks before an item leaves the local store), bar those on a target
    failing its WORM check (``worm_failed``, see :func:`safe_copies`)."""
    bar = wipe_bar(mode=mode, required=required)
    if bar is not None:
        return bar
    if not verified:
        return WipeBar.NOT_VERIFIED
    if mode.needs_offsite_proof and not required <= proven:
        return WipeBar.NOT_PROVEN
    if mode.needs_offsite_proof and not required <= safe_copies(proven, worm_failed=worm_failed):
        return WipeBar.WORM_FAILED
    return None


def local_time(moment: datetime, tz: tzinfo) -> str:
    """A moment as the station's people read it: in ``tz``, to the second, with its offset
    (``2026-12-01 22:00:00+08:00``)."""
    return moment.astimezone(tz).isoformat(sep=" ", timespec="seconds")


# -- WORM check ------------------------------------------------------------------------------

#: The WORM check's canary object is locked (COMPLIANCE) this long ahead...
CANARY_LOCK = timedelta(days=7)
#: ...and its lock is renewed (extended) once less than this is left.
CANARY_RENEW = timedelta(days=3)
#: The attempt to shorten the canary's retention asks for this much less than it has.
CANARY_SHORTEN = timedelta(days=1)


def canary_lock_due(retain_until: datetime | None, now: datetime) -> datetime | None:
    """The retain-until date to give the canary now, or None if its lock is far enough ahead.
    A canary that carries no COMPLIANCE date (``None``) is given one."""
    if retain_until is None or retain_until - now < CANARY_RENEW:
        return now + CANARY_LOCK
    return None


class WormProbe(StrEnum):
    """What a WORM check tries, or reads."""

    CANARY = "canary"  # write (or find) the canary locked under COMPLIANCE
    DELETE = "delete"  # delete the canary's locked version: must be refused
    SHORTEN = "shorten"  # shorten the canary's retention: must be refused
    SAMPLE = "sample"  # read back the lock of a real copy: must be what the catalog expects


class WormAttempt(Struct, frozen=True, kw_only=True):
    """One thing a WORM check tried and what happened. ``held``: WORM held (the deletion or
    shortening was refused, the lock read back as expected); ``detail`` says what the server
    did or answered."""

    probe: WormProbe
    held: bool
    detail: str
    item: str | None = None


def lock_problem(*, expected_until: datetime | None, expected_hold: bool,
                 mode: str | None, until: datetime | None, hold: bool) -> str | None:
    """Why the lock a server reports for a copy is not the lock the catalog recorded for it
    (None: it is at least that). A retain-until later than recorded is fine (locks are only
    ever extended); any other mode than COMPLIANCE, an earlier date or a missing legal hold is
    not."""
    if expected_until is not None:
        if mode != "COMPLIANCE":
            return f"mode {mode or 'none'}, expected COMPLIANCE"
        if until is None or until < expected_until.replace(microsecond=0):
            shown = until.isoformat() if until else "none"
            return f"retained until {shown}, expected {expected_until.isoformat()} or later"
    if expected_hold and not hold:
        return "no legal hold, expected one"
    return None


def worm_passed(attempts: Sequence[WormAttempt]) -> bool:
    """A WORM check passes only if it tried the canary, its deletion and its shortening, and
    every attempt held: one that succeeded where it must fail is a failure."""
    tried = {a.probe for a in attempts}
    needed = {WormProbe.CANARY, WormProbe.DELETE, WormProbe.SHORTEN}
    return needed <= tried and all(a.held for a in attempts)


def parse_utc_offset(text: str) -> tzinfo:
    """``+08:00`` / ``-0500`` / ``UTC`` as a fixed offset."""
    if text.upper() in {"UTC", "Z", "+00:00"}:
        return UTC
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if not match:
        raise ValueError(f"not a UTC offset: {text!r} (expected like +08:00)")
    sign = 1 if match.group(1) == "+" else -1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


def parse_zone(text: str) -> tzinfo:
    """A UTC offset (as :func:`parse_utc_offset`) or a time zone's name (``Asia/Shanghai``,
    from the system's time zone database)."""
    try:
        return parse_utc_offset(text)
    except ValueError:
        pass
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"not a UTC offset or time zone: {text!r} (expected like +08:00 "
                         "or Asia/Shanghai)") from None


# -- spot checks ---------------------------------------------------------------------------

#: Spot-check periods are counted from here, so every station (and every run) agrees on
#: where a period starts whatever its length.
SPOT_EPOCH = datetime(1970, 1, 5, tzinfo=UTC)  # a Monday: "7d" periods run Monday to Monday


def spot_period_start(now: datetime, period: timedelta) -> datetime:
    """The start of the spot-check period ``now`` falls in."""
    if period <= timedelta(0):
        raise ValueError("a spot-check period must be positive")
    return SPOT_EPOCH + ((now - SPOT_EPOCH) // period) * period


class SpotCandidate(Struct, frozen=True, kw_only=True):
    """An item the sampler may pick: whose it is (its label's officer, else its recorder's),
    when it was stored, and when it was last spot-checked (None: never)."""

    sha256: str
    officer: str
    stored_at: datetime
    last_checked: datetime | None


def spot_picks(candidates: Iterable[SpotCandidate], *, now: datetime, period: timedelta,
               per_officer: int, seed: int | None = None) -> list[SpotCandidate]:
    """The items to spot-check now: for each officer, as many as ``per_officer`` less those
    already checked in this period, from the items not checked in it. Items never checked
    come first, then those checked longest ago; among equals the oldest stored first (by
    age), or, given ``seed``, a shuffle that the seed alone decides. Officers in name order;
    the same candidates, time and seed always give the same picks."""
    if per_officer <= 0:
        return []
    start = spot_period_start(now, period)
    done: dict[str, int] = {}
    free: dict[str, list[SpotCandidate]] = {}
    for c in candidates:
        if c.last_checked is not None and c.last_checked >= start:
            done[c.officer] = done.get(c.officer, 0) + 1
        else:
            free.setdefault(c.officer, []).append(c)
    picks: list[SpotCandidate] = []
    for officer in sorted(free):
        wanted = per_officer - done.get(officer, 0)
        if wanted <= 0:
            continue
        pool = sorted(free[officer], key=lambda c: (c.stored_at, c.sha256))
        if seed is not None:
            # deterministic given its seed and the order it is given; the officer's name is
            # mixed in so that officers do not share one draw
            random.Random(f"{seed}:{officer}").shuffle(pool)
        never = [c for c in pool if c.last_checked is None]
        before = sorted((c for c in pool if c.last_checked is not None),
                        key=lambda c: c.last_checked or start)  # stable: keeps the pool order
        picks.extend((never + before)[:wanted])
    return picks


# -- audit cycles ------------------------------------------------------------------------------


def proof_age(*, proven_at: datetime | None, stored_at: datetime, now: datetime) -> timedelta:
    """How long ago a copy was last proven (re-hashed intact, or read back): from its last
    proof, or from its storage when it was never proven. A proof dated after ``now`` (the
    clock was set back since) is as old as nothing: zero, never negative. The audit takes
    copies in the order of their proofs, which the ledger never dates backwards, so a clock
    set back delays no copy's turn; it only hides its age from the overdue rule until the
    clock passes the proof again."""
    return max(now - (proven_at or stored_at), timedelta(0))


def audit_overdue(*, proven_at: datetime | None, stored_at: datetime, now: datetime,
                  cycle: timedelta) -> bool:
    """A copy is past its cycle when its last proof is more than ``cycle`` ago (exactly
    ``cycle`` is still within it)."""
    return proof_age(proven_at=proven_at, stored_at=stored_at, now=now) > cycle


def cycle_batch(*, items: int, overdue: int, every: timedelta, cycle: timedelta,
                at_least: int = 0) -> int:
    """How many copies one audit run takes, the oldest proofs first, so that every one of
    ``items`` is proven within ``cycle`` by runs ``every`` apart: ``ceil(items * every /
    cycle)`` (the cycle's reads spread over its runs), plus the ``overdue`` already past
    their cycle, and never fewer than ``at_least``; never more than ``items``. Computed in
    whole microseconds, so it is exact to the second."""
    if items <= 0:
        return 0
    tick = timedelta(microseconds=1)
    spread = -(-(items * (every // tick)) // max(cycle // tick, 1))
    return min(items, max(spread + max(overdue, 0), at_least))


# -- cases: the archive window, report periods ------------------------------------------------

#: How long after enforcement ends a case's records must be formed into its case file (R9).
CASE_ARCHIVE_WINDOW = timedelta(days=30)


def archive_deadline(*, closed_at: datetime, window: timedelta) -> datetime:
    """When a closed case must be archived by: ``window`` after enforcement ended."""
    return closed_at + window


def archive_overdue(*, closed_at: datetime, archived_at: datetime | None, now: datetime,
                    window: timedelta) -> bool:
    """A closed case is overdue while it has no archive and its deadline has passed (the
    deadline itself is still within the window, as with every other window)."""
    return archived_at is None and now > archive_deadline(closed_at=closed_at, window=window)


def archived_late(*, closed_at: datetime, archived_at: datetime | None,
                  window: timedelta) -> bool:
    """Whether an archive came after its deadline (False: none yet, or in time)."""
    return archived_at is not None and archived_at > archive_deadline(closed_at=closed_at,
                                                                      window=window)


class Period(Struct, frozen=True, kw_only=True):
    """A report's period: from ``start`` (included) to ``end`` (excluded), both UTC, as
    written (``text``) and read in a time zone."""

    text: str
    start: datetime
    end: datetime


_YEAR = re.compile(r"(\d{4})")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_RANGE = re.compile(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})")


def report_period(text: str, tz: tzinfo) -> Period:
    """A period as people write it, read in the station's time zone ``tz``: a year
    (``2026``), a month (``2026-11``) or a range of days, both included
    (``2026-01-01..2026-06-30``)."""
    given = text.strip()
    try:
        if match := _YEAR.fullmatch(given):
            year = int(match.group(1))
            first, after = datetime(year, 1, 1), datetime(year + 1, 1, 1)
        elif match := _MONTH.fullmatch(given):
            year, month = int(match.group(1)), int(match.group(2))
            first = datetime(year, month, 1)
            after = datetime(year + month // 12, month % 12 + 1, 1)
        elif match := _RANGE.fullmatch(given):
            first = datetime.fromisoformat(match.group(1))
            after = datetime.fromisoformat(match.group(2)) + timedelta(days=1)
        else:
            raise ValueError("no form")
    except ValueError:
        raise ValueError(f"not a period: {given!r} (write a year 2026, a month 2026-11, "
                         "or days 2026-01-01..2026-06-30)") from None
    if after <= first:
        raise ValueError(f"not a period: {given!r} ends before it starts")
    return Period(text=given, start=first.replace(tzinfo=tz).astimezone(UTC),
                  end=after.replace(tzinfo=tz).astimezone(UTC))
