"""Alerts: what fires, under which key, and when a notice is due.

A condition found in the catalog's state is a :class:`Finding`, named by its key: the condition,
and what it is about (``replication_stalled:nas``, ``unknown_recorder:BWC-9``), so that one
target's failure clearing does not clear another's. :func:`plan` compares the findings with the
alerts already known (persisted in the catalog) and says what to send: a new one fires once, a
firing one is sent again only after ``repeat`` has passed since it was last sent, one no longer
found is sent ``resolved``, and a channel that failed is owed the notice until it takes it.
:func:`payload` and :func:`mail_text` give a notice's forms, everything in them that a recorder
or a person typed made harmless (JSON-encoded, or plain text without control characters).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from msgspec import Struct, field, structs

from .canonical import format_time
from .text import printable


class Condition(StrEnum):
    """What an alert is about; its value begins the alert's key and names it in
    ``alerting.disabled``."""

    MISSED_WINDOW = "missed_window"  # items past a window, not justified
    CHECK_FAILED = "check_failed"  # the last audit, ledger check or spot check failed
    LOW_FREE_SPACE = "low_free_space"  # the store's file system below alerting.free_space_min
    REPLICATION_FAILING = "replication_failing"  # copies on a target failed
    REPLICATION_STALLED = "replication_stalled"  # an item waits too long for a copy
    UNKNOWN_RECORDER = "unknown_recorder"  # a recorder not registered docked
    RECORDER_CLOCK = "recorder_clock"  # its last dock brought items with a doubtful time
    RECORDER_FAULT = "recorder_fault"  # its last dock failed, or files could not be read
    DAMAGED_MEDIA = "damaged_media"  # its last dock brought files that are not media
    SKIPPED_FILES = "skipped_files"  # its last dock left files it did not take
    WORM_FAILED = "worm_failed"  # a target failed its WORM check: critical
    TEST = "test"  # ``ingestd alerts test``: about nothing


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


def alert_key(condition: Condition, subject: str | None = None) -> str:
    return str(condition) if subject is None else f"{condition}:{subject}"


class Finding(Struct, frozen=True, kw_only=True):
    """A condition that holds now."""

    key: str
    condition: Condition
    severity: Severity
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, condition: Condition, subject: str | None = None, *, summary: str,
           severity: Severity = Severity.WARNING, **details: Any) -> Finding:
        return cls(key=alert_key(condition, subject), condition=condition, severity=severity,
                   summary=summary, details=details)


class Alert(Struct, frozen=True, kw_only=True):
    """An alert as the catalog keeps it: firing since ``since`` (last sent ``last_sent``), or
    resolved at ``resolved_at``; ``owed`` names the channels that have not yet taken its last
    notice."""

    key: str
    condition: Condition
    severity: Severity
    state: AlertState
    summary: str
    details: Mapping[str, Any]
    since: datetime
    last_sent: datetime | None = None
    resolved_at: datetime | None = None
    owed: frozenset[str] = frozenset()

    @property
    def firing(self) -> bool:
        return self.state == AlertState.FIRING

    def to_json(self) -> dict[str, Any]:
        return {"alert": self.key, "condition": str(self.condition),
                "severity": str(self.severity), "state": str(self.state),
                "summary": self.summary, "since": format_time(self.since),
                "last_sent": None if self.last_sent is None else format_time(self.last_sent),
                "resolved_at": None if self.resolved_at is None else format_time(
                    self.resolved_at),
                "undelivered": sorted(self.owed), "details": dict(self.details)}


class Notice(Struct, frozen=True, kw_only=True):
    """One message about an alert, to ``channels`` (None: every channel)."""

    alert: Alert
    at: datetime
    repeat: bool = False
    channels: frozenset[str] | None = None

    @property
    def state(self) -> AlertState:
        return self.alert.state

    def wants(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels


class Step(Struct, frozen=True, kw_only=True):
    """What to do with one alert: the notice to send (None: nothing), and the alert as it
    stands after it (to be kept once the notice is sent and ``owed`` known)."""

    alert: Alert
    notice: Notice | None


def plan(findings: Iterable[Finding], known: Iterable[Alert], *, now: datetime,
         repeat: timedelta, unknown: Iterable[str] = ()) -> list[Step]:
    """What to send, given what holds now (``findings``) and what was known. A condition or
    an alert key in ``unknown`` could not be evaluated: its alerts stay as they are (a check
    that cannot look says nothing has cleared)."""
    found = {f.key: f for f in findings}
    before = {a.key: a for a in known}
    blind = set(unknown)
    steps: list[Step] = []
    for key, finding in found.items():
        old = before.get(key)
        if old is None or not old.firing:
            new = Alert(key=key, condition=finding.condition, severity=finding.severity,
                        state=AlertState.FIRING, summary=finding.summary,
                        details=finding.details, since=now, last_sent=now)
            steps.append(Step(alert=new, notice=Notice(alert=new, at=now)))
            continue
        current = structs.replace(old, severity=finding.severity, summary=finding.summary,
                                  details=finding.details)
        if old.last_sent is None or now - old.last_sent >= repeat:
            current = structs.replace(current, last_sent=now)
            steps.append(Step(alert=current, notice=Notice(alert=current, at=now, repeat=True)))
        elif old.owed:
            steps.append(Step(alert=current, notice=Notice(alert=current, at=now,
                                                           channels=old.owed)))
        else:
            steps.append(Step(alert=current, notice=None))
    for key, old in before.items():
        if key in found or key in blind or str(old.condition) in blind:
            continue
        if old.firing:
            done = structs.replace(old, state=AlertState.RESOLVED, resolved_at=now,
                                   last_sent=now)
            steps.append(Step(alert=done, notice=Notice(alert=done, at=now)))
        elif old.owed:
            steps.append(Step(alert=old, notice=Notice(alert=old, at=now, channels=old.owed)))
    return steps


def test_alert(now: datetime) -> Alert:
    """The alert ``ingestd alerts test`` sends: firing, about nothing."""
    return Alert(key=str(Condition.TEST), condition=Condition.TEST, severity=Severity.WARNING,
                 state=AlertState.FIRING, summary="test alert: alerts reach this channel",
                 details={"test": True}, since=now, last_sent=now)


def payload(notice: Notice, *, station: str) -> dict[str, Any]:
    """The JSON a webhook receives. Its strings are JSON-encoded by the sender, so whatever a
    recorder or a person typed in them stays data."""
    alert = notice.alert
    details = {"condition": str(alert.condition), "severity": str(alert.severity),
               "since": format_time(alert.since), "repeat": notice.repeat, **alert.details}
    return {"alert": alert.key, "state": str(alert.state), "summary": alert.summary,
            "station": station, "at": format_time(notice.at), "details": details}


def subject(notice: Notice, *, station: str) -> str:
    """A mail's subject: one line, nothing in it a terminal or a mail header would act on."""
    alert = notice.alert
    word = "RESOLVED" if alert.state == AlertState.RESOLVED else str(alert.severity).upper()
    return printable(f"[ingestd {station}] {word}: {alert.summary}")[:250]


def _lines(value: Any, indent: str) -> list[str]:
    if isinstance(value, Mapping):
        out = []
        for k, v in value.items():
            if isinstance(v, Mapping | list | tuple) and v:
                out.append(f"{indent}{printable(str(k))}:")
                out.extend(_lines(v, indent + "  "))
            else:
                out.append(f"{indent}{printable(str(k))}: {printable(_scalar(v))}")
        return out
    if isinstance(value, list | tuple):
        out = []
        for v in value:
            if isinstance(v, Mapping):
                inner = _lines(v, indent + "  ")
                out.append(f"{indent}- " + inner[0].lstrip() if inner else f"{indent}-")
                out.extend(inner[1:])
            else:
                out.append(f"{indent}- {printable(_scalar(v))}")
        return out
    return [f"{indent}{printable(_scalar(value))}"]


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def mail_text(notice: Notice, *, station: str) -> str:
    """A mail's body, plain text: every value on a line of its own, every character a terminal
    would act on (controls, bidi overrides, line breaks inside a value) written as an escape."""
    doc = payload(notice, station=station)
    head: Sequence[tuple[str, Any]] = (
        ("alert", doc["alert"]), ("state", doc["state"]), ("summary", doc["summary"]),
        ("station", doc["station"]), ("at", doc["at"]))
    lines = [f"{k}: {printable(_scalar(v))}" for k, v in head]
    lines.append("details:")
    lines.extend(_lines(doc["details"], "  "))
    return "\n".join(lines) + "\n"


def log_line(notice: Notice) -> str:
    """The log's line for a notice (the log formatter escapes it again)."""
    alert = notice.alert
    again = " (still firing)" if notice.repeat else ""
    return printable(f"alert {alert.key} {alert.state}{again}: {alert.summary}")


# -- the rules a condition is found by ------------------------------------------------------


def space_floor(total: int, *, min_bytes: int | None, min_percent: float | None) -> int:
    """The least free space a store may have: a number of bytes, or a share of its file
    system."""
    if min_percent is not None:
        return int(total * min_percent / 100)
    return min_bytes or 0


def stalled(oldest_waiting_since: datetime | None, *, now: datetime,
            after: timedelta) -> bool:
    """An item has waited for its copy on a target longer than ``after``."""
    return oldest_waiting_since is not None and now - oldest_waiting_since > after
