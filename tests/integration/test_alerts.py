"""Alerts end to end: each condition driven by what causes it (a late label, a recorder not
registered, damaged and skipped files, a recorder clock never set, a failed dock, a target
folder that is gone, a tampered ledger mirror, a store threshold above its free space), each
received by a real HTTP server and a real SMTP server (STARTTLS on a certificate made by
openssl, and a login), fired once, sent again only after ``alerting.repeat``, and resolved
once when it clears. A channel that fails does not keep the notice from the other and is
owed it; a daemon restarted sends nothing again; ``alerts test`` and ``alerts list``."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    ClipFile,
    FakeClock,
    build_recorder,
    cli_json,
    init_station,
    run_cli,
    start_ingestd,
    wait_for,
)

from ingestd.app.jobs import LEDGER_JOB, run_job, standard_jobs
from ingestd.config import Settings
from ingestd.domain.canonical import format_time
from ingestd.domain.models import Recorder
from ingestd.errors import RecorderNotRegistered
from ingestd.station import Station
from ingestd.usecases import registry
from ingestd.usecases.alerts import AlertReport, evaluate
from ingestd.usecases.casework import justify
from ingestd.usecases.ingest import DockContext, Ingestor
from ingestd.usecases.windows import check_windows
from tests.integration.test_replicate import (
    clips,  # noqa: F401 - the session's clips fixture
    make_home,
    new_bucket,
    s3_target,
    write_credentials,
)
from tests.support import catalog
from tests.support.receivers import (
    MailReceiver,
    WebhookReceiver,
    dead_url,
    free_port,
    mail_receiver,
    webhook_receiver,
)
from tests.support.servers import S3Endpoint
from tests.unit.usecase_helpers import MEDIA, Bench, bench, photo, photo_name

pytestmark = [pytest.mark.integration]

TOKEN = "tok-3f9c1d7e-never-logged"


@pytest.fixture(scope="module")
def hook() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def mail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailReceiver]:
    with mail_receiver(tmp_path_factory.mktemp("smtp")) as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _fresh(hook: WebhookReceiver, mail: MailReceiver) -> None:
    hook.clear()
    hook.fail_next = 0
    mail.clear()


def channels(tmp: Path, hook_url: str, mail: MailReceiver, *, mail_port: int | None = None,
             attempts: int = 2) -> str:
    """Two ``[[alerts]]`` channels: ``hook`` (with a bearer token) and ``mail``."""
    token = tmp / "alert-token"
    token.write_text(TOKEN + "\n")
    password = tmp / "smtp-password"
    password.write_text(mail.password + "\n")
    return (f'[[alerts]]\ntype = "webhook"\nname = "hook"\nurl = "{hook_url}"\n'
            f'token_file = "{token}"\nattempts = {attempts}\nbackoff = "0.01s"\n'
            f'timeout = "5s"\n'
            f'[[alerts]]\ntype = "smtp"\nname = "mail"\nhost = "{mail.host}"\n'
            f'port = {mail_port or mail.port}\nfrom = "ingestd@station.example"\n'
            f'to = ["evidence@example.org", "duty@example.org"]\nusername = "{mail.user}"\n'
            f'password_file = "{password}"\nca_bundle = "{mail.ca}"\n'
            f'attempts = {attempts}\nbackoff = "0.01s"\ntimeout = "5s"\n')


def alerting(**keys: str) -> str:
    return "[alerting]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


def tune(station: Station, **alerting_keys: Any) -> None:
    """Change ``[alerting]`` as an edited configuration would (the next evaluation reads it)."""
    settings = station.settings
    station.settings = msgspec.structs.replace(
        settings, alerting=msgspec.structs.replace(settings.alerting, **alerting_keys))


def states(hook: WebhookReceiver) -> list[tuple[str, str, bool]]:
    """(alert, state, repeat) of every POST received, in order."""
    return [(a["alert"], a["state"], a["details"]["repeat"]) for a in hook.alerts()]


def sent(report: AlertReport) -> set[tuple[str, str]]:
    return {(s.alert.key, str(s.alert.state)) for s in report.sent}


@pytest.fixture
def b(tmp_path: Path, hook: WebhookReceiver, mail: MailReceiver) -> Iterator[Bench]:
    """A station with both channels, whose store always has room (no low_free_space)."""
    config = alerting(free_space_min='"0%"', repeat='"4h"') + channels(tmp_path, hook.url,
                                                                        mail)
    with bench(tmp_path, config=config) as bench_:
        yield bench_


# -- what each channel receives ------------------------------------------------------------


def test_an_alert_fires_once_is_sent_again_after_its_interval_and_resolves_once(
        b: Bench, hook: WebhookReceiver, mail: MailReceiver) -> None:
    tune(b.station, free_space_min="100%", repeat=timedelta(hours=1))
    first = evaluate(b.station)
    assert sent(first) == {("low_free_space", "firing")} and first.ok

    (post,) = hook.posts
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Content-Type"] == "application/json"
    body = post.body
    assert set(body) == {"alert", "state", "summary", "station", "at", "details"}
    assert (body["alert"], body["state"], body["station"]) == (
        "low_free_space", "firing", "station-01")
    assert body["at"] == format_time(b.clock())
    assert body["details"]["free"] < body["details"]["total"] == body["details"]["floor"]
    assert body["details"]["severity"] == "warning" and body["details"]["repeat"] is False

    (m,) = mail.messages()
    assert m.tls and m.login == mail.user
    assert m.sender == "ingestd@station.example"
    assert m.rcpt == ["evidence@example.org", "duty@example.org"]
    assert m.message["To"] == "evidence@example.org, duty@example.org"
    assert m.message["Subject"].startswith("[ingestd station-01] WARNING: the store has ")
    assert m.message["X-Ingestd-Alert"] == "low_free_space"
    assert m.message.get_content_type() == "text/plain"
    assert "alert: low_free_space\nstate: firing\n" in m.body
    assert "station: station-01\n" in m.body

    # within the interval: nothing, however often it is evaluated
    for _ in range(3):
        b.clock.advance(minutes=15)
        assert evaluate(b.station).sent == []
    assert len(hook.posts) == 1 and len(mail.messages()) == 1

    # after it: once more, marked a repeat; then quiet again
    b.clock.advance(minutes=15)
    assert sent(evaluate(b.station)) == {("low_free_space", "firing")}
    assert states(hook) == [("low_free_space", "firing", False),
                            ("low_free_space", "firing", True)]
    b.clock.advance(minutes=5)
    assert evaluate(b.station).sent == []

    # it clears: resolved once
    tune(b.station, free_space_min="1B")
    assert sent(evaluate(b.station)) == {("low_free_space", "resolved")}
    assert states(hook)[-1] == ("low_free_space", "resolved", False)
    assert mail.messages()[-1].message["Subject"].startswith(
        "[ingestd station-01] RESOLVED: the store has ")
    assert "state: resolved\n" in mail.messages()[-1].body
    b.clock.advance(hours=5)
    assert evaluate(b.station).sent == []
    assert len(hook.posts) == 3 and len(mail.messages()) == 3


def test_a_free_space_threshold_in_bytes(b: Bench, hook: WebhookReceiver) -> None:
    free = b.station.store.disk().free
    tune(b.station, free_space_min=str(free + 2**30))
    assert sent(evaluate(b.station)) == {("low_free_space", "firing")}
    assert hook.alerts()[0]["details"]["floor"] == free + 2**30
    tune(b.station, free_space_min=str(max(0, free - 2**30)))
    assert sent(evaluate(b.station)) == {("low_free_space", "resolved")}


# -- each condition, from what causes it ---------------------------------------------------


def test_a_missed_window_fires_until_it_is_justified(b: Bench, hook: WebhookReceiver) -> None:
    report = b.dock(b.photos("rec", 2))
    shas = [i.sha256 for i in report.items]
    assert evaluate(b.station).sent == []
    b.clock.advance(hours=49)  # past the 48h label window, unlabelled
    assert len(check_windows(b.station).flagged) == 2
    assert sent(evaluate(b.station)) == {("missed_window", "firing")}
    (body,) = hook.alerts("missed_window")
    assert body["details"]["items"] == {"late_label": 2}
    assert sorted(body["details"]["examples"]) == sorted(shas)
    assert body["summary"] == "2 items missed a window and are not justified"

    justify(b.station, shas[:1], flag="late_label", reason="officer on leave", actor="sgt")
    b.clock.advance(minutes=5)
    assert evaluate(b.station).sent == []  # still one, within the repeat interval
    justify(b.station, shas[1:], flag="late_label", reason="officer on leave", actor="sgt")
    assert sent(evaluate(b.station)) == {("missed_window", "resolved")}
    assert states(hook) == [("missed_window", "firing", False),
                            ("missed_window", "resolved", False)]


def test_an_unregistered_recorder_fires_under_its_serial_until_registered(
        b: Bench, hook: WebhookReceiver, mail: MailReceiver) -> None:
    stranger = "BWC-9999"
    with pytest.raises(RecorderNotRegistered):
        b.dock(b.photos("stranger", 1), serial=stranger)
    assert sent(evaluate(b.station)) == {(f"unknown_recorder:{stranger}", "firing")}
    (body,) = hook.alerts()
    assert body["details"]["serial"] == stranger and body["details"]["state"] == "refused"
    assert "BWC-9999 is not registered" in body["summary"]
    assert mail.messages()[0].message["X-Ingestd-Alert"] == f"unknown_recorder:{stranger}"

    registry.register(b.station, Recorder(serial=stranger, officer="Li Na",
                                          officer_id="PS-2002"), actor="tester")
    assert sent(evaluate(b.station)) == {(f"unknown_recorder:{stranger}", "resolved")}


def test_what_a_recorder_s_last_dock_brought_fires_and_clears_at_a_clean_dock(
        b: Bench, hook: WebhookReceiver, mail: MailReceiver) -> None:
    odd = f"{MEDIA}/\x1b[2Jbad\u202e{photo_name(2)}"
    dirty = b.recorder("dirty", {
        f"{MEDIA}/{photo_name(1)}": photo(),
        odd: photo()[:-2],  # no end marker: not a whole picture
        f"{MEDIA}/19980101_120000.JPG": photo(),  # a clock never set
        f"{MEDIA}/notes.txt": b"not footage",
    })
    b.dock(dirty)
    keys = {f"damaged_media:{SERIAL}", f"recorder_clock:{SERIAL}", f"skipped_files:{SERIAL}"}
    assert sent(evaluate(b.station)) == {(k, "firing") for k in keys}

    damaged = hook.alerts(f"damaged_media:{SERIAL}")[0]
    (name,) = damaged["details"]["files"]
    shown = f"{MEDIA}/\\x1b[2Jbad\\u202e{photo_name(2)}"
    assert name == shown  # as the catalog shows a recorder's path
    assert hook.alerts(f"recorder_clock:{SERIAL}")[0]["details"]["flags"] == {"clock_unset": 1}
    assert hook.alerts(f"skipped_files:{SERIAL}")[0]["details"]["kinds"] == {"unmatched": 1}
    for m in mail.messages():
        # plain text a terminal shows as it is: no escape, no bidi override, one line a value
        assert not any(ch in m.body for ch in "\x1b\u202e\r")
        assert m.body.isascii() or all(ch.isprintable() or ch == "\n" for ch in m.body)
    body = mail.messages(f"damaged_media:{SERIAL}")[0].body
    assert f"  files:\n    - {shown}\n" in body

    b.clock.advance(minutes=10)
    b.dock(b.photos("clean", 1, first=5))
    assert sent(evaluate(b.station)) == {(k, "resolved") for k in keys}
    assert evaluate(b.station).sent == []


def test_a_recorder_s_own_files_named_by_ignore_raise_no_alert_but_are_recorded(
        tmp_path: Path, hook: WebhookReceiver, mail: MailReceiver) -> None:
    config = ('[ingest]\nignore = ["SYSTEM/*"]\n' + alerting(free_space_min='"0%"')
              + channels(tmp_path, hook.url, mail))
    with bench(tmp_path, config=config) as b:
        own = {"SYSTEM/DEVICE.TXT": b"serial=BWC-0001\n", "SYSTEM/fw.bin": b"\0" * 64}
        rec = b.photos("own", 2, extra=own)
        report = b.dock(rec)
        assert len(report.items) == 2
        assert sent(evaluate(b.station)) == set()
        # left on the recorder, and counted and signed for as what they are
        assert all((rec / path).read_bytes() == data for path, data in own.items())
        assert b.sessions()[0].skipped == {"ignored": 2}
        (entry,) = b.entries(["skipped"])
        assert entry.data["by_kind"] == {"ignored": 2} and entry.data["count"] == 2

        # a stray file beside them still fires, and counts only itself
        b.clock.advance(minutes=10)
        b.dock(b.photos("stray", 1, first=5, extra={**own, f"{MEDIA}/notes.txt": b"?"}))
        assert sent(evaluate(b.station)) == {(f"skipped_files:{SERIAL}", "firing")}
        (alert,) = hook.alerts(f"skipped_files:{SERIAL}")
        assert alert["details"]["kinds"] == {"unmatched": 1}
        assert alert["details"]["count"] == 1
        assert alert["summary"] == f"recorder {SERIAL}: 1 file left on it, not taken"


def test_a_dock_that_failed_is_a_recorder_fault(b: Bench, hook: WebhookReceiver) -> None:
    ingestor = Ingestor(b.station)
    ingestor.dock_failed(SERIAL, mountpoint=b.tmp / "sdx1", ctx=DockContext(actor="ingestd"),
                         reason="file system check failed")
    assert sent(evaluate(b.station)) == {(f"recorder_fault:{SERIAL}", "firing")}
    assert hook.alerts()[0]["summary"] == (
        f"recorder {SERIAL}: the dock failed: file system check failed")
    b.dock(b.photos("good", 1))
    assert sent(evaluate(b.station)) == {(f"recorder_fault:{SERIAL}", "resolved")}


def test_replication_failing_and_stalled_are_each_the_target_s_own(
        tmp_path: Path, hook: WebhookReceiver, mail: MailReceiver) -> None:
    config = alerting(free_space_min='"0%"', replication_stalled_after='"2h"') + channels(
        tmp_path, hook.url, mail)
    with bench(tmp_path, config=config, target=True) as b:
        assert b.nas is not None
        b.dock(b.photos("rec", 2))
        (replicate,) = [j for j in standard_jobs(b.station) if j.name == "replicate"]
        shutil.rmtree(b.nas)
        b.nas.write_text("the share did not mount")
        assert not run_job(b.station, replicate)
        assert sent(evaluate(b.station)) == {("replication_failing:nas", "firing")}
        body = hook.alerts("replication_failing:nas")[0]
        assert "is not a directory" in body["summary"]
        assert body["details"]["target"] == "nas"

        b.clock.advance(hours=3)
        assert sent(evaluate(b.station)) == {("replication_stalled:nas", "firing")}
        stalled = hook.alerts("replication_stalled:nas")[0]
        assert stalled["summary"].startswith("target nas: an item has waited 3h 0m")

        b.nas.unlink()
        b.nas.mkdir()
        assert run_job(b.station, replicate)
        assert sent(evaluate(b.station)) == {("replication_failing:nas", "resolved"),
                                             ("replication_stalled:nas", "resolved")}


def test_every_target_a_replication_could_not_use_fires_its_own_alert(
        tmp_path: Path, hook: WebhookReceiver, mail: MailReceiver) -> None:
    """Two targets that cannot be used at all (their shares did not mount): no copy of an
    item was even tried at either, and each is still named by its own alert."""
    vault = tmp_path / "vault"
    vault.mkdir()
    second = (f'[[targets]]\nname = "vault"\ntype = "directory"\npath = "{vault}"\n'
              'prefix = "station-01"\nsame_filesystem_ok = true\nrequired = true\n')
    config = second + alerting(free_space_min='"0%"') + channels(tmp_path, hook.url, mail)
    with bench(tmp_path, config=config, target=True) as b:
        assert b.nas is not None
        b.dock(b.photos("rec", 2))
        (replicate,) = [j for j in standard_jobs(b.station) if j.name == "replicate"]
        for share in (b.nas, vault):
            shutil.rmtree(share)
            share.write_text("the share did not mount")
        assert not run_job(b.station, replicate)
        assert sent(evaluate(b.station)) == {("replication_failing:nas", "firing"),
                                             ("replication_failing:vault", "firing")}
        for name, share, other in (("nas", b.nas, vault), ("vault", vault, b.nas)):
            (body,) = hook.alerts(f"replication_failing:{name}")
            assert body["summary"].startswith(f"target {name}: replication failed: "), body
            assert f"{share} is not a directory" in body["summary"]
            assert str(other) not in body["summary"], "each alert gives its own target's error"
            assert body["details"]["target"] == name
            assert body["details"]["failed"] == 0, "no copy was tried there"
            assert body["details"]["last_run"].startswith(
                "0 copies verified, 0 failed, 0 locks extended, 2 still waiting, 2 targets "
                "not usable (nas, vault): target 'nas': "), body["details"]["last_run"]

        # one share comes back: its alert resolves, the other's stays
        b.nas.unlink()
        b.nas.mkdir()
        assert not run_job(b.station, replicate)
        assert sent(evaluate(b.station)) == {("replication_failing:nas", "resolved")}
        vault.unlink()
        vault.mkdir()
        assert run_job(b.station, replicate)
        assert sent(evaluate(b.station)) == {("replication_failing:vault", "resolved")}


@pytest.mark.parametrize("detail", [
    "{not json", "[" * 100_000, '{"unusable": {"nas": NaN}}',
    '{"unusable": {"x": "' + "y" * 70_000 + '"}}'],
    ids=["not-json", "nested-deep", "nan", "too-long"])
def test_a_job_run_whose_detail_is_unreadable_is_still_shown_and_its_alert_fires(
        tmp_path: Path, hook: WebhookReceiver, mail: MailReceiver, detail: str) -> None:
    """Whoever can write the catalog can break a run's detail: the run is still shown, no
    check breaks, and the alert falls back on what the run's summary says."""
    config = alerting(free_space_min='"0%"') + channels(tmp_path, hook.url, mail)
    with bench(tmp_path, config=config, target=True) as b:
        assert b.nas is not None
        (replicate,) = [j for j in standard_jobs(b.station) if j.name == "replicate"]
        shutil.rmtree(b.nas)
        b.nas.write_text("the share did not mount")
        assert not run_job(b.station, replicate)
        with sqlite3.connect(b.home / "catalog.sqlite") as db:
            assert db.execute("UPDATE job_runs SET detail = ? WHERE job = 'replicate'",
                              (detail,)).rowcount == 1
        with b.station.catalog.read() as tx:
            (run,) = [j for j in tx.last_jobs(station=b.station.name) if j.job == "replicate"]
        assert run.ok is False and "is not a directory" in run.summary
        assert run.detail == {} and run.unusable_targets() is None

        assert sent(evaluate(b.station)) == {("replication_failing:nas", "firing")}
        (body,) = hook.alerts("replication_failing:nas")
        assert str(b.nas) in body["summary"]
        shown = run_cli(b.home, "status", "--json")
        assert shown.exit_code == 0, shown
        assert "NaN" not in shown.stdout
        (job,) = [j for j in shown.json()["jobs"] if j["job"] == "replicate"]
        assert job["ok"] is False and job["detail"] == {}


def test_a_failed_ledger_check_fires_until_the_check_passes(
        b: Bench, hook: WebhookReceiver) -> None:
    b.dock(b.photos("rec", 1))
    (ledger_job,) = [j for j in standard_jobs(b.station) if j.name == LEDGER_JOB]
    assert run_job(b.station, ledger_job)
    assert evaluate(b.station).sent == []

    mirror = b.station.settings.ledger_mirror_path
    kept = mirror.read_bytes()
    lines = kept.decode().splitlines(keepends=True)
    entry = json.loads(lines[-1])
    entry["actor"] = "someone else"
    mirror.write_text("".join(lines[:-1]) + json.dumps(entry) + "\n")
    assert not run_job(b.station, ledger_job)
    assert sent(evaluate(b.station)) == {(f"check_failed:{LEDGER_JOB}", "firing")}
    body = hook.alerts()[0]
    assert body["details"]["severity"] == "critical"
    assert body["details"]["job"] == LEDGER_JOB

    mirror.write_bytes(kept)
    assert run_job(b.station, ledger_job)
    assert sent(evaluate(b.station)) == {(f"check_failed:{LEDGER_JOB}", "resolved")}


def test_a_target_failing_its_worm_check_is_a_critical_alert(
        tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint,  # noqa: F811
        hook: WebhookReceiver, mail: MailReceiver) -> None:
    # moto lets a COMPLIANCE date be shortened: `targets check` catches it
    # (its clips were recorded long ago: late, which is not this test's matter)
    home = make_home(tmp_path, clips[:1], config=alerting(
        free_space_min='"0%"', disabled='["missed_window"]') + channels(tmp_path, hook.url, mail))
    home.add_target(s3_target(moto.url, new_bucket(moto.client()),
                              write_credentials(tmp_path, moto)))
    assert len(cli_json(home.home, "replicate")["verified"]) == 1
    assert run_cli(home.home, "targets", "check").exit_code == 1

    report = cli_json(home.home, "alerts", "check")
    assert [(s["alert"], s["state"]) for s in report["sent"]] == [
        ("worm_failed:offsite", "firing")]
    (body,) = hook.alerts()
    assert body["details"]["severity"] == "critical"
    assert body["details"]["target"] == "offsite" and body["details"]["ledger_seq"] > 0
    assert "FAILED its WORM check" in body["summary"]
    (m,) = mail.messages()
    assert m.message["Subject"].startswith("[ingestd station-01] CRITICAL: target offsite ")
    assert cli_json(home.home, "alerts", "check")["sent"] == []

    # the standing a passing check leaves (what `targets check` writes when WORM holds;
    # moto never passes) clears it
    station = home.open()
    try:
        with station.catalog.write() as tx:
            (standing,) = tx.worm_standings()
            tx.worm_checked("offsite", location=standing.location, passed=True,
                            at=standing.checked_at, ledger_seq=standing.ledger_seq)
    finally:
        station.close()
    report = cli_json(home.home, "alerts", "check")
    assert [(s["alert"], s["state"]) for s in report["sent"]] == [
        ("worm_failed:offsite", "resolved")]


def test_alert_state_is_kept_in_a_postgresql_catalog_too(
        tmp_path: Path, postgres_url: str, hook: WebhookReceiver, mail: MailReceiver) -> None:
    from tests.integration.test_catalog_postgres import pg_station

    home = pg_station(tmp_path / "pg", postgres_url)
    with (home / "ingestd.toml").open("a", encoding="utf-8") as fh:
        fh.write("\n" + alerting(free_space_min='"100%"') + channels(tmp_path, hook.url, mail))
    first = cli_json(home, "alerts", "check")
    assert [(s["alert"], s["state"]) for s in first["sent"]] == [("low_free_space", "firing")]
    assert cli_json(home, "alerts", "check")["sent"] == []
    assert [a["alert"] for a in cli_json(home, "alerts", "list")["alerts"]] == [
        "low_free_space"]
    assert len(hook.alerts()) == 1 and len(mail.messages()) == 1


def test_a_disabled_condition_is_not_alerted(b: Bench, hook: WebhookReceiver) -> None:
    tune(b.station, free_space_min="100%", disabled=("low_free_space",))
    assert evaluate(b.station).sent == [] and hook.posts == []


# -- failing channels ----------------------------------------------------------------------


def test_a_webhook_is_retried_with_backoff_within_a_send(
        b: Bench, hook: WebhookReceiver) -> None:
    hook.fail_next = 1  # one 503, then taken (attempts = 2)
    tune(b.station, free_space_min="100%")
    report = evaluate(b.station)
    assert report.ok and hook.tries == 2 and len(hook.posts) == 1


def test_a_webhook_redirect_is_not_followed(b: Bench, hook: WebhookReceiver) -> None:
    hook.redirect = True  # the bearer token goes to the configured URL only
    tune(b.station, free_space_min="100%")
    (one,) = evaluate(b.station).sent
    assert one.failed["hook"].endswith("failed after 1 try: HTTP 307 Temporary Redirect")
    assert hook.tries == 1 and hook.posts == []


def test_a_mail_server_whose_certificate_is_not_trusted_gets_nothing(
        tmp_path: Path, mail: MailReceiver) -> None:
    home = init_station(tmp_path / "h", config=(
        f'[[alerts]]\ntype = "smtp"\nhost = "{mail.host}"\nport = {mail.port}\n'
        'from = "a@station.example"\nto = ["b@example.org"]\nattempts = 1\n'))
    result = run_cli(home, "alerts", "test", "--json")
    assert result.exit_code == 1
    (failed,) = [c for c in result.json()["channels"] if not c["ok"]]
    assert failed["channel"] == "smtp" and "CERTIFICATE_VERIFY_FAILED" in failed["error"]
    assert mail.messages() == []


def test_a_channel_that_fails_keeps_nothing_from_the_others_and_is_owed_the_notice(
        tmp_path: Path, hook: WebhookReceiver, mail: MailReceiver,
        caplog: pytest.LogCaptureFixture) -> None:
    config = alerting(free_space_min='"100%"') + channels(tmp_path, dead_url(), mail)
    with bench(tmp_path, config=config) as b:
        caplog.set_level("WARNING", logger="ingestd")
        report = evaluate(b.station)
        assert not report.ok
        (one,) = report.sent
        assert set(one.failed) == {"hook"} and "failed after 2 tries" in one.failed["hook"]
        assert len(mail.messages()) == 1  # the mail went all the same
        undelivered = [r for r in caplog.records if getattr(r, "event", "") ==
                       "alert_undelivered"]
        assert undelivered and "hook" in undelivered[0].getMessage()
        assert TOKEN not in caplog.text

        listed = cli_json(b.home, "alerts", "list")["alerts"]
        assert [(a["alert"], a["undelivered"]) for a in listed] == [
            ("low_free_space", ["hook"])]

        # the webhook comes back: the next evaluation sends it what it missed, and only it
        b.station.settings = _with_hook_url(b.station.settings, hook.url)
        b.clock.advance(minutes=5)
        report = evaluate(b.station)
        assert report.ok and sent(report) == {("low_free_space", "firing")}
        assert states(hook) == [("low_free_space", "firing", False)]
        assert len(mail.messages()) == 1
        b.clock.advance(minutes=5)
        assert evaluate(b.station).sent == []


def _with_hook_url(settings: Settings, url: str) -> Settings:
    fixed = tuple(msgspec.structs.replace(c, url=url) if c.type == "webhook" else c
                  for c in settings.alerts)
    return msgspec.structs.replace(settings, alerts=fixed)


# -- the command line ----------------------------------------------------------------------


def test_alerts_test_reaches_both_channels_and_names_one_that_fails(
        tmp_path: Path, hook: WebhookReceiver, mail: MailReceiver) -> None:
    home = init_station(tmp_path / "ok", config=channels(tmp_path, hook.url, mail))
    result = run_cli(home, "alerts", "test", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"ok": True, "channels": [
        {"channel": "log", "ok": True, "error": None},
        {"channel": "hook", "ok": True, "error": None},
        {"channel": "mail", "ok": True, "error": None}]}
    (body,) = hook.alerts()
    assert (body["alert"], body["state"], body["details"]["test"]) == ("test", "firing", True)
    (m,) = mail.messages()
    assert m.message["X-Ingestd-Alert"] == "test" and m.tls

    hook.clear()
    mail.clear()
    dead = init_station(tmp_path / "dead", config=channels(
        tmp_path, hook.url, mail, mail_port=free_port(), attempts=1))
    result = run_cli(dead, "alerts", "test")
    assert result.exit_code == 1
    out = " ".join(result.stdout.split())
    assert "channel hook: delivered" in out
    assert "channel mail: FAILED: mail through 127.0.0.1:" in out
    assert len(hook.alerts()) == 1 and mail.messages() == []


def test_a_token_file_of_two_lines_is_refused_and_never_shown(
        tmp_path: Path, hook: WebhookReceiver, mail: MailReceiver) -> None:
    home = init_station(tmp_path / "h", config=channels(tmp_path, hook.url, mail, attempts=1))
    (tmp_path / "alert-token").write_text(TOKEN + "\nX-Injected: 1\n")
    result = run_cli(home, "alerts", "test", "--json")
    assert result.exit_code == 1
    (failed,) = [c for c in result.json()["channels"] if not c["ok"]]
    assert failed["channel"] == "hook" and "more than one token" in failed["error"]
    assert TOKEN not in result.stdout + result.stderr
    assert hook.alerts() == []  # nothing sent with a header the file smuggled in


def test_mail_is_never_sent_without_starttls_when_asked_for(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    class Keep:
        got: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any,  # noqa: N802
                              envelope: Any) -> str:
            self.got.append(envelope)
            return "250 OK"

    port = free_port()
    plain = Controller(Keep(), hostname="127.0.0.1", port=port)  # offers no STARTTLS
    plain.start()
    try:
        home = init_station(tmp_path / "h", config=(
            f'[[alerts]]\ntype = "smtp"\nhost = "127.0.0.1"\nport = {port}\n'
            'from = "a@station.example"\nto = ["b@example.org"]\nattempts = 1\n'))
        result = run_cli(home, "alerts", "test", "--json")
    finally:
        plain.stop()
    assert result.exit_code == 1
    (failed,) = [c for c in result.json()["channels"] if not c["ok"]]
    assert failed["channel"] == "smtp" and "does not offer STARTTLS" in failed["error"]
    assert Keep.got == []


def test_alerts_list_shows_what_fires_since_when_and_last_sent(
        b: Bench, hook: WebhookReceiver) -> None:
    assert cli_json(b.home, "alerts", "list") == {"alerts": []}
    tune(b.station, free_space_min="100%", repeat=timedelta(hours=1))
    evaluate(b.station)
    since = b.clock()
    b.clock.advance(hours=2)
    evaluate(b.station)
    (shown,) = cli_json(b.home, "alerts", "list")["alerts"]
    assert shown["alert"] == "low_free_space" and shown["state"] == "firing"
    assert shown["since"] == format_time(since)
    assert shown["last_sent"] == format_time(b.clock())
    assert shown["summary"].startswith("the store has ")
    table = run_cli(b.home, "alerts", "list").stdout
    assert "low_free_space" in table and "since" in table and "last sent" in table

    tune(b.station, free_space_min="0%")
    evaluate(b.station)
    assert cli_json(b.home, "alerts", "list") == {"alerts": []}
    (old,) = cli_json(b.home, "alerts", "list", "--all")["alerts"]
    assert old["state"] == "resolved"


# -- the daemon ----------------------------------------------------------------------------


def test_a_daemon_restart_sends_nothing_again_and_a_dock_is_evaluated_at_once(
        tmp_path: Path, hook: WebhookReceiver, mail: MailReceiver) -> None:
    config = (alerting(free_space_min='"100%"', interval='"1h"')
              + '[docks]\nsettle = "0s"\n' + channels(tmp_path, hook.url, mail))
    home = init_station(tmp_path / "home", config=config,
                        register={SERIAL: (OFFICER, OFFICER_ID)}, clock=FakeClock())

    def alert_runs() -> list[dict[str, Any]]:
        return [r for r in catalog.job_runs(home, "alerts") if r["finished_at"]]

    first = start_ingestd(home, "run")
    try:
        wait_for(lambda: hook.alerts("low_free_space"), what="the first alert")
        # a recorder no one registered is docked: alerted at once, not at the next hour
        build_recorder(home / "docks" / "BWC-7777", {f"{MEDIA}/{photo_name(1)}": photo()})
        wait_for(lambda: hook.alerts("unknown_recorder:BWC-7777"), what="the dock's alert")
    finally:
        _stop(first)
    runs = len(alert_runs())
    assert [a["alert"] for a in hook.alerts()] == ["low_free_space",
                                                   "unknown_recorder:BWC-7777"]

    second = start_ingestd(home, "run")
    try:
        wait_for(lambda: len(alert_runs()) > runs, what="an alerts run after the restart")
    finally:
        _stop(second)
    assert [a["alert"] for a in hook.alerts()] == ["low_free_space",
                                                   "unknown_recorder:BWC-7777"]
    assert len(mail.messages()) == 2
    firing = {a["alert"] for a in cli_json(home, "alerts", "list")["alerts"]}
    assert firing == {"low_free_space", "unknown_recorder:BWC-7777"}


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    assert TOKEN not in out + err and "s3cret" not in out + err


def test_a_copy_found_damaged_in_the_store_is_the_audit_s_alert_not_the_recorder_s(
        b: Bench, hook: WebhookReceiver) -> None:
    report = b.dock(b.photos("rec", 1))
    stored = b.object(report.items[0].sha256)
    data = bytearray(stored.read_bytes())
    data[-1] ^= 1  # the end marker damaged: no longer the bytes stored, nor a whole picture
    stored.chmod(0o644)
    stored.write_bytes(bytes(data))
    (audit,) = [j for j in standard_jobs(b.station) if j.name == "audit"]
    assert not run_job(b.station, audit)
    assert sent(evaluate(b.station)) == {("check_failed:audit", "firing")}
    (body,) = hook.alerts()
    assert body["details"]["severity"] == "critical" and body["details"]["job"] == "audit"
    assert "failed their fixity check" in body["summary"]
