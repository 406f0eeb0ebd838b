"""The alert rules (``domain/alerts``): what is sent when, under which key, and in what form;
and the ``[alerting]`` / ``[[alerts]]`` settings."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from msgspec import structs

from ingestd import config
from ingestd.domain.alerts import (
    Alert,
    AlertState,
    Condition,
    Finding,
    Notice,
    Severity,
    Step,
    mail_text,
    payload,
    plan,
    space_floor,
    stalled,
    subject,
)
from ingestd.errors import ConfigError

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
REPEAT = 4 * HOUR


def nas_down() -> Finding:
    return Finding.of(Condition.REPLICATION_FAILING, "nas", summary="target nas: 2 failed")


def s3_down() -> Finding:
    return Finding.of(Condition.REPLICATION_FAILING, "offsite", summary="target offsite: 1")


def run(findings: list[Finding], known: list[Alert], at: datetime,
        **kw: object) -> tuple[list[Step], list[Alert]]:
    """One evaluation: its steps, and the alerts kept after it (every channel took it)."""
    steps = plan(findings, known, now=at, repeat=REPEAT, **kw)  # type: ignore[arg-type]
    kept = {a.key: a for a in known}
    kept.update({s.alert.key: s.alert for s in steps})
    return steps, list(kept.values())


def notices(steps: list[Step]) -> list[tuple[str, AlertState, bool]]:
    return sorted((s.alert.key, s.alert.state, s.notice.repeat) for s in steps if s.notice)


def test_an_alert_fires_once_repeats_after_its_interval_and_resolves_once() -> None:
    steps, known = run([nas_down()], [], T0)
    assert notices(steps) == [("replication_failing:nas", AlertState.FIRING, False)]
    for minutes in (1, 60, 239):
        steps, known = run([nas_down()], known, T0 + timedelta(minutes=minutes))
        assert notices(steps) == []
    steps, known = run([nas_down()], known, T0 + REPEAT)
    assert notices(steps) == [("replication_failing:nas", AlertState.FIRING, True)]
    steps, known = run([nas_down()], known, T0 + REPEAT + HOUR)
    assert notices(steps) == []  # counted from the repeat, not from the first
    steps, known = run([], known, T0 + REPEAT + 2 * HOUR)
    assert notices(steps) == [("replication_failing:nas", AlertState.RESOLVED, False)]
    (done,) = known
    assert done.since == T0 and done.resolved_at == T0 + REPEAT + 2 * HOUR
    steps, known = run([], known, T0 + 10 * REPEAT)
    assert notices(steps) == []
    # back again: a new alert, since now
    steps, known = run([nas_down()], known, T0 + 11 * REPEAT)
    assert notices(steps) == [("replication_failing:nas", AlertState.FIRING, False)]
    (again,) = known
    assert again.firing and again.since == T0 + 11 * REPEAT and again.resolved_at is None


def test_one_target_clearing_does_not_clear_another() -> None:
    _, known = run([nas_down(), s3_down()], [], T0)
    steps, known = run([s3_down()], known, T0 + HOUR)
    assert notices(steps) == [("replication_failing:nas", AlertState.RESOLVED, False)]
    assert {a.key: a.state for a in known} == {
        "replication_failing:nas": AlertState.RESOLVED,
        "replication_failing:offsite": AlertState.FIRING}


def test_a_channel_that_failed_is_owed_the_notice_and_only_it() -> None:
    steps, _ = run([nas_down()], [], T0)
    missed = structs.replace(steps[0].alert, owed=frozenset({"mail"}))
    steps, _ = run([nas_down()], [missed], T0 + timedelta(minutes=5))
    (step,) = steps
    assert step.notice is not None and step.notice.channels == frozenset({"mail"})
    assert step.notice.wants("mail") and not step.notice.wants("hook")
    assert not step.notice.wants("log")  # the log had it
    assert not step.notice.repeat
    # a resolved notice owed is owed too
    gone = structs.replace(missed, state=AlertState.RESOLVED, resolved_at=T0 + HOUR)
    steps, _ = run([], [gone], T0 + 2 * HOUR)
    (step,) = steps
    assert step.notice is not None and step.notice.channels == frozenset({"mail"})
    assert step.alert.state == AlertState.RESOLVED


def test_a_condition_that_could_not_be_looked_at_clears_nothing() -> None:
    _, known = run([nas_down(), Finding.of(Condition.LOW_FREE_SPACE, summary="low")], [], T0)
    steps, known = run([], known, T0 + HOUR, unknown={"low_free_space",
                                                      "replication_failing:nas"})
    assert notices(steps) == [] and all(a.firing for a in known)


def test_what_a_webhook_receives_and_a_mail_says_keeps_typed_text_harmless() -> None:
    name = "DCIM/\x1b]0;owned\x07clip\u202e4pm.mp4\nX-Injected: yes"
    finding = Finding.of(Condition.DAMAGED_MEDIA, "BWC\r\n1", summary=f"damaged: {name}",
                         files=[name], count=1)
    (step,) = plan([finding], [], now=T0, repeat=REPEAT)
    assert step.notice is not None
    doc = payload(step.notice, station="st-1")
    assert set(doc) == {"alert", "state", "summary", "station", "at", "details"}
    assert doc["alert"] == "damaged_media:BWC\r\n1" and doc["state"] == "firing"
    assert doc["at"] == "2026-03-01T08:00:00.000000Z"
    assert doc["details"]["files"] == [name] and doc["details"]["severity"] == "warning"
    encoded = json.dumps(doc)
    assert json.loads(encoded) == doc and "\x1b" not in encoded and "\n" not in encoded

    body = mail_text(step.notice, station="st-1")
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", body)
    assert "\nX-Injected" not in body
    lines = body.splitlines()
    assert lines[0] == "alert: damaged_media:BWC\\r\\n1"
    assert "  files:" in lines and any(line.startswith("    - DCIM/\\x1b]0;owned\\x07")
                                       for line in lines)
    head = subject(step.notice, station="st-1")
    assert "\n" not in head and "\r" not in head and head.startswith("[ingestd st-1] WARNING: ")


def test_a_critical_alert_says_so_and_a_resolved_one_says_resolved() -> None:
    worm = Finding.of(Condition.WORM_FAILED, "offsite", severity=Severity.CRITICAL,
                      summary="target offsite FAILED its WORM check")
    (step,) = plan([worm], [], now=T0, repeat=REPEAT)
    assert step.notice is not None
    assert subject(step.notice, station="s").startswith("[ingestd s] CRITICAL: ")
    (done,) = plan([], [step.alert], now=T0 + HOUR, repeat=REPEAT)
    assert done.notice is not None
    assert subject(done.notice, station="s").startswith("[ingestd s] RESOLVED: ")
    assert payload(done.notice, station="s")["state"] == "resolved"


def test_space_floor_and_stalled() -> None:
    assert space_floor(1000, min_bytes=None, min_percent=5.0) == 50
    assert space_floor(1000, min_bytes=300, min_percent=None) == 300
    assert stalled(T0, now=T0 + 7 * HOUR, after=6 * HOUR)
    assert not stalled(T0, now=T0 + 6 * HOUR, after=6 * HOUR)
    assert not stalled(None, now=T0, after=HOUR)


def _load(body: str) -> config.Settings:
    return config.from_mapping(tomllib.loads(body), home=Path("/srv/ingestd"))


def test_alert_settings_and_their_defaults() -> None:
    s = _load("")
    assert s.alerting.interval == timedelta(minutes=5) and s.alerting.repeat == 4 * HOUR
    assert s.alerting.free_space_percent == 5.0 and s.alerting.free_space_bytes is None
    assert s.alerts == ()
    s = _load('[alerting]\nfree_space_min = "20GiB"\n')
    assert s.alerting.free_space_bytes == 20 * 2**30 and s.alerting.free_space_percent is None
    s = _load('[[alerts]]\ntype = "smtp"\nhost = "mx.example.org"\nfrom = "a@b.example"\n'
              'to = ["c@d.example"]\n[[alerts]]\ntype = "webhook"\nurl = "https://h.example/x"\n')
    assert [c.channel for c in s.alerts] == ["smtp", "webhook"]
    smtp = s.alerts[0]
    assert isinstance(smtp, config.SmtpChannelSettings)
    assert smtp.sender == "a@b.example" and smtp.port == 587 and smtp.starttls


@pytest.mark.parametrize(("body", "said"), [
    ('[[alerts]]\ntype = "webhook"\nurl = "https://ops:hunter2@h.example/x"\n',
     "alerts.0.url: must not hold a user name or password"),
    ('[[alerts]]\ntype = "webhook"\nurl = "ftp://h.example/x"\n', "alerts.0.url: not an http"),
    ('[[alerts]]\ntype = "webhook"\nurl = "https://h.example/x"\nbucket = "b"\n',
     "alerts.0.bucket: unknown key for a webhook channel"),
    ('[[alerts]]\ntype = "pager"\n', "alerts.0.type: type must be one of 'webhook', 'smtp'"),
    ('[[alerts]]\ntype = "webhook"\nurl = "https://a.example/"\n'
     '[[alerts]]\ntype = "webhook"\nurl = "https://b.example/"\n',
     "channel names must be unique"),
    ('[[alerts]]\ntype = "webhook"\nname = "log"\nurl = "https://a.example/"\n',
     "channel names must be unique and not \"log\""),
    ('[[alerts]]\ntype = "smtp"\nhost = "mx"\nfrom = "a@b"\nto = ["c@d"]\n'
     'password_file = "/etc/pw"\n', "password_file needs username"),
    ('[alerting]\nfree_space_min = "lots"\n', "alerting.free_space_min: not a size"),
    ('[alerting]\ndisabled = ["everything"]\n', "alerting.disabled: not a condition: 'everything'"),
])
def test_bad_alert_settings_are_refused_naming_the_key(body: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(body)
    assert said in caught.value.message
    assert "hunter2" not in caught.value.message


def test_the_example_channels_load() -> None:
    """The commented [[alerts]] tables of config/ingestd.toml, uncommented, are valid."""
    example = Path(__file__).resolve().parents[2] / "config" / "ingestd.toml"
    text = example.read_text(encoding="utf-8")
    block = text[text.index("# [[alerts]]"):]
    lines = [line[2:] for line in block.splitlines()
             if line.startswith("# ") and re.match(r"# (\[\[alerts\]\]|[a-z_]+ = )", line)]
    s = _load("\n".join(lines) + "\n")
    assert [(c.type, c.channel) for c in s.alerts] == [("webhook", "ops"), ("smtp", "mail")]


def test_a_notice_to_all_channels_wants_every_one() -> None:
    (step,) = plan([nas_down()], [], now=T0, repeat=REPEAT)
    assert isinstance(step.notice, Notice) and step.notice.channels is None
    assert step.notice.wants("log") and step.notice.wants("hook")
