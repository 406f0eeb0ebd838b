"""A key or password written into an endpoint URL never reaches a message, a log line, the
catalog or the signed ledger, where it could never be removed."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import msgspec
import pytest
from conftest import (
    SERIAL,
    Clips,
    build_recorder,
    open_station,
    run_cli,
    write_config,
)

from ingestd.config import S3TargetSettings
from ingestd.errors import TargetError
from ingestd.targets.s3 import S3Target
from ingestd.usecases.replicate import Replicator
from tests.support import catalog

pytestmark = pytest.mark.integration

KEY, SECRET, SIGNATURE = "AKIAEXAMPLEKEY", "SuperSecret99", "Sig0123456789abcdef"
NEVER_SHOWN = (KEY, SECRET, SIGNATURE)


def closed_port() -> int:
    """A loopback port nothing listens on: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def leaky_target(host: str = "127.0.0.1", *, query: bool = False) -> S3Target:
    # Built past the configuration's check (which a copy, too, passes through), to prove the
    # defence behind it.
    url = f"http://{KEY}:{SECRET}@{host}:{closed_port()}"
    if query:
        url += f"/?X-Amz-Signature={SIGNATURE}"
    settings = S3TargetSettings(name="offsite", bucket="evidence", max_attempts=1)
    msgspec.structs.force_setattr(settings, "endpoint_url", url)
    return S3Target(settings, connect_timeout=1, read_timeout=1)


@pytest.fixture(autouse=True)
def _some_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in NEVER_SHOWN:
            assert secret not in text, f"{secret} shown in {text!r}"


def test_a_failing_target_never_shows_the_secret_of_its_url(
        home: Path, tmp_path: Path, clips: Clips, caplog: pytest.LogCaptureFixture) -> None:
    rec = build_recorder(tmp_path / "rec", {"DCIM/A.MP4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0

    station = open_station(home)
    try:
        target = leaky_target()
        with caplog.at_level(logging.DEBUG, logger="ingestd"):
            with pytest.raises(TargetError) as caught:
                target.check()
            report = Replicator(station, targets=[target]).run()
            checkpoint = Replicator(station, targets=[target]).checkpoint()
    finally:
        station.close()
    message = caught.value.message
    assert "127.0.0.1" in message and "***" in message  # still says where it went
    assert "EndpointConnectionError" in message  # botocore's own text, which quotes the URL
    assert report.failed and checkpoint["errors"]
    assert_no_secret(message, str(report.as_dict()), str(checkpoint), caplog.text)
    assert catalog.replicas(home) == []  # a target never reached leaves no replica row
    assert_no_secret(*(str(e) for e in catalog.ledger_entries(home)))
    assert_no_secret((home / "ledger.jsonl").read_text(encoding="utf-8"))
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_the_plain_http_warning_does_not_show_the_secret(
        caplog: pytest.LogCaptureFixture) -> None:
    target = leaky_target(host="192.0.2.1", query=True)  # TEST-NET: not loopback, never answers
    with caplog.at_level(logging.WARNING, logger="ingestd"), pytest.raises(TargetError):
        target.check()
    assert "plain HTTP" in caplog.text and "192.0.2.1" in caplog.text
    assert_no_secret(caplog.text)


def test_a_secret_in_the_configured_url_stops_every_command_unechoed(home: Path) -> None:
    config = (home / "ingestd.toml").read_text(encoding="utf-8")
    write_config(home, config + f"""
[[targets]]
name = "offsite"
type = "s3"
bucket = "evidence"
endpoint_url = "https://{KEY}:{SECRET}@rgw.example.org"
""")
    before = (home / "ledger.jsonl").read_text(encoding="utf-8")
    for args in (["status"], ["replicate", "--json"], ["checkpoint"]):
        result = run_cli(home, *args)
        assert result.exit_code == 3, (args, result.stderr)
        assert "targets.0.endpoint_url: must not hold a user name or password" in (
            result.stderr + result.stdout)
        assert_no_secret(result.stdout, result.stderr)
    assert (home / "ledger.jsonl").read_text(encoding="utf-8") == before
