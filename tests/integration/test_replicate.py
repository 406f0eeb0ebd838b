"""Replication end to end, as a docking station uses it: a real station home, a registered
recorder with real clips, ``ingestd ingest``, then ``ingestd replicate`` / ``run`` / ``status`` /
``ledger verify --offsite`` against moto's S3 server (Object Lock buckets), and a directory
target on a real folder.

The command line is run in this process through ``ingestd.cli.main`` (exit codes and messages
exactly as a user gets them) and, where a process must be killed or must exit on its own, as the
installed console script in a subprocess. Faults come from a small HTTP proxy on 127.0.0.1
between ingestd and moto that answers 500 or drops connections on demand.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pytest
from botocore.exceptions import ClientError
from conftest import (
    INGESTD,
    ClipFile,
    build_recorder,
    cli_json,
    init_station,
    item_record,
    make_noise_clip,
    make_test_clip,
    run_cli,
    sha256_of,
    subprocess_env,
    wait_for,
)
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ingestd import config as config_mod
from ingestd.station import Station, system_clock
from tests.support import catalog
from tests.support.damage import flip_bit
from tests.support.flipping_proxy import FlippingProxy, RelayServer, never, object_puts
from tests.support.servers import S3Endpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PREFIX = "station-01"
SERIAL = "BWC-0001"
OFFICER = "Wang Fang"
RECORDED = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)  # when the first clip was recorded
ROUTINE = timedelta(days=365)
EVIDENCE = timedelta(days=365 * 30)
#: Long-term footage is locked about a century, but never past 2106-01-01: Ceph RGW keeps
#: retain-until dates in 32-bit seconds (they wrap after 2106-02-07T06:28:16Z).
LONG_TERM = timedelta(days=365 * 100)
LATEST_LOCK = datetime(2106, 1, 1, tzinfo=UTC)


# -- media (made once per session) ------------------------------------------------------------


def long_term_until(recorded: datetime) -> datetime:
    return min(recorded + LONG_TERM, LATEST_LOCK)


#: When these tests began: every lock they see was set after it.
TESTS_START = datetime.now(UTC).replace(microsecond=0)


def set_for(until: datetime, period: timedelta) -> bool:
    """Whether a lock runs ``period`` from the moment it was set (while these tests ran;
    targets round a date up to a whole second): a retention period never counts from the
    recorder's clock."""
    return TESTS_START + period <= until <= datetime.now(UTC) + period + timedelta(seconds=1)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[ClipFile]:
    """Three small real clips, recorded an hour apart."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is needed (Debian package ffmpeg; scripts/setup --test)")
    folder = tmp_path_factory.mktemp("replicate-clips")
    return [
        make_test_clip(folder / f"20260301_{10 + i:02d}0000_{i + 1:04d}.MP4",
                       seconds=1 + (i == 1), recorded=RECORDED + timedelta(hours=i))
        for i in range(3)
    ]


@pytest.fixture(scope="session")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """A real clip of about 9 MiB (lossless H.264 of noise does not compress): two parts of a
    multipart upload at the 5 MiB part size S3 allows."""
    clip = make_noise_clip(tmp_path_factory.mktemp("replicate-big") / "20260301_140000_0009.MP4",
                           seconds=3, tag="replicate-big", recorded=RECORDED + timedelta(hours=4))
    assert 5 * MiB < clip.size < 10 * MiB, clip.size
    return clip


# -- a station with ingested clips ---------------------------------------------------------------


@dataclass
class Home:
    home: Path
    recorder: Path
    clips: list[ClipFile]

    @property
    def shas(self) -> list[str]:
        return [c.sha256 for c in self.clips]

    def add_target(self, toml: str) -> None:
        with (self.home / "ingestd.toml").open("a", encoding="utf-8") as fh:
            fh.write("\n" + toml)

    def edit_config(self, old: str, new: str) -> None:
        path = self.home / "ingestd.toml"
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new), encoding="utf-8")

    def open(self) -> Station:
        return Station.open(config_mod.load(self.home / "ingestd.toml"))

    def history(self, sha: str, kind: str | None = None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = cli_json(self.home, "show", sha)["history"]
        return [e for e in entries if kind is None or e["kind"] == kind]

    def flags(self, sha: str) -> list[str]:
        return [f["flag"] for f in cli_json(self.home, "show", sha)["flags"]]

    def target_status(self, name: str = "offsite") -> dict[str, Any]:
        status: dict[str, Any] = cli_json(self.home, "status")["targets"][name]
        return status


def make_home(root: Path, clips: Sequence[ClipFile], *, config: str = "",
              recorder: Path | None = None) -> Home:
    """A station (with extra configuration) whose recorder is registered, built with
    ``clips`` under DCIM/100MEDIA (file times kept), and ingested with ``ingest``."""
    home = init_station(root / "home", config='\n[docks]\nwatch_root = "docks"\n' + config,
                        clock=system_clock, register={SERIAL: (OFFICER, "PS-1001")})
    recorder = build_recorder(recorder or root / "recorder" / SERIAL,
                              {f"DCIM/100MEDIA/{clip.path.name}": clip for clip in clips})
    report = cli_json(home, "ingest", recorder, "--serial", SERIAL)
    stored = {i["sha256"] for i in report["items"] if i["state"] == "stored"}
    assert stored == {c.sha256 for c in clips}, report
    return Home(home=home, recorder=recorder, clips=list(clips))


def s3_target(url: str, bucket: str, credentials: Path, *, name: str = "offsite",
              **extra: object) -> str:
    """A ``[[targets]]`` table. Retries are off unless asked (``max_attempts``): each request
    is sent once, and a fault the test injects is met at once."""
    fields: dict[str, object] = {
        "name": name, "type": "s3", "bucket": bucket, "endpoint_url": url, "prefix": PREFIX,
        "object_lock": True, "credentials_file": str(credentials), "max_attempts": 1, **extra,
    }
    lines = ["[[targets]]"]
    for key, value in fields.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def write_credentials(folder: Path, endpoint: S3Endpoint) -> Path:
    path = folder / f"s3-credentials-{uuid.uuid4().hex[:8]}"
    path.write_text(f"[default]\naws_access_key_id = {endpoint.access_key}\n"
                    f"aws_secret_access_key = {endpoint.secret_key}\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def new_bucket(client: S3Client, *, lock: bool = True) -> str:
    name = f"rx-{uuid.uuid4().hex[:16]}"
    if lock:
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        client.create_bucket(Bucket=name)
    return name


def item_key(sha: str) -> str:
    return f"{PREFIX}/sha256/{sha}"


def manifest_key(sha: str) -> str:
    return f"{PREFIX}/manifests/{sha}.json"


def versions(client: S3Client, bucket: str, key: str) -> list[dict[str, Any]]:
    answer = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [dict(v) for v in answer.get("Versions", []) if v["Key"] == key]


def download_sha(client: S3Client, bucket: str, key: str) -> str:
    return hashlib.sha256(client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


def canonical(value: Any) -> bytes:
    """The signed serialisation, written out independently of ingestd's own code."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def check_signed(document: dict[str, Any], body_key: str, public_hex: str) -> dict[str, Any]:
    """Verify ``document[body_key]`` against its Ed25519 ``signature`` with the station's
    public key, and that a changed body would not verify."""
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    body: dict[str, Any] = document[body_key]
    signature = bytes.fromhex(document["signature"])
    public.verify(signature, canonical(body))  # raises InvalidSignature
    with pytest.raises(InvalidSignature):
        public.verify(signature, canonical({**body, "station": "forged"}))
    return body


# -- a fault-injecting proxy ----------------------------------------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}
Rule = Callable[[str, str], str | None]  # (method, unquoted path) -> None | "500" | "drop"


class FaultProxy:
    """Relays HTTP on 127.0.0.1 to moto; ``rule`` decides per request whether to answer 500
    or to close the connection without an answer instead."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname and parts.port
        self._upstream = (parts.hostname, parts.port)
        self._guard = threading.Lock()
        self.rule: Rule = lambda method, path: None
        self.seen: list[tuple[str, str, str]] = []  # method, path, what happened
        self._relay_server = RelayServer(self._relay)
        self.url = self._relay_server.url

    def close(self) -> None:
        self._relay_server.close()

    def puts(self, needle: str) -> list[tuple[str, str, str]]:
        return [s for s in self.seen if s[0] == "PUT" and needle in s[1]]

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, unquote(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._guard:
            fault = self.rule(method, path)
            self.seen.append((method, path, fault or "passed"))
        if fault == "drop":
            handler.close_connection = True
            return
        if fault == "500":
            error = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
            _answer(handler, 500, error, {"Content-Type": "application/xml"})
            return
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in _HOP_BY_HOP | {"content-length"}}
        if body or method in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            upstream.request(method, handler.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        passed = {k: v for k, v in answer.getheaders()
                  if k.lower() not in _HOP_BY_HOP | {"content-length", "server", "date"}}
        if method == "HEAD":
            passed["Content-Length"] = answer.getheader("Content-Length") or "0"
        _answer(handler, answer.status, data, passed)


def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes,
            headers: dict[str, str]) -> None:
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    if "Content-Length" not in headers:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(moto: S3Endpoint) -> S3Client:
    return moto.client()


@pytest.fixture(scope="module")
def credentials(moto: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_credentials(tmp_path_factory.mktemp("creds"), moto)


@pytest.fixture
def bucket(s3: S3Client) -> str:
    return new_bucket(s3)


@pytest.fixture
def proxy(moto: S3Endpoint) -> Iterator[FaultProxy]:
    relay = FaultProxy(moto.url)
    yield relay
    relay.close()


@pytest.fixture
def station(tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, bucket: str,
            credentials: Path) -> Home:
    """Three clips ingested; an Object Lock bucket on moto as the one required target."""
    home = make_home(tmp_path, clips)
    home.add_target(s3_target(moto.url, bucket, credentials))
    return home


# -- copies, locks, manifests, ledger events, status ----------------------------------------------


def test_replicate_copies_every_item_verified_locked_and_signed(
    station: Home, s3: S3Client, bucket: str
) -> None:
    before = station.target_status()
    assert before["queued"] == 3 and before["verified"] == 0 and before["failed"] == 0

    report = cli_json(station.home, "replicate")

    assert report["ok"] is True and report["failed"] == [] and report["pending"] == 0
    assert sorted(v["sha256"] for v in report["verified"]) == sorted(station.shas)
    assert {v["target"] for v in report["verified"]} == {"offsite"}
    key = cli_json(station.home, "keys", "show")
    for clip in station.clips:
        sha = clip.sha256
        head = s3.head_object(Bucket=bucket, Key=item_key(sha))
        assert head["ContentLength"] == clip.size
        assert head["Metadata"]["sha256"] == sha
        assert download_sha(s3, bucket, item_key(sha)) == sha
        # routine footage: COMPLIANCE for a year from when it was stored and locked
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert set_for(head["ObjectLockRetainUntilDate"], ROUTINE)
        assert head.get("ObjectLockLegalHoldStatus", "OFF") == "OFF"
        with pytest.raises(ClientError) as refused:
            s3.delete_object(Bucket=bucket, Key=item_key(sha), VersionId=head["VersionId"])
        assert refused.value.response["Error"]["Code"] == "AccessDenied"

        # the signed manifest next to it
        raw = s3.get_object(Bucket=bucket, Key=manifest_key(sha))["Body"].read()
        manifest = check_signed(json.loads(raw), "manifest", key["public_key"])
        assert manifest["item"] == sha and manifest["size"] == clip.size
        assert manifest["key_id"] == key["key_id"] and manifest["station"] == "station-01"
        assert manifest["recorder"] == SERIAL and manifest["officer"] == OFFICER
        assert manifest["label"] is None
        assert manifest["retention"] == {
            "class": "routine", "hold": False,
            "until": (datetime.fromisoformat(manifest["stored_at"]) + ROUTINE).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")}
        assert [(a["serial"], a["path"], a["size"]) for a in manifest["acquisitions"]] == [
            (SERIAL, f"DCIM/100MEDIA/{clip.path.name}", clip.size)]
        manifest_head = s3.head_object(Bucket=bucket, Key=manifest_key(sha))
        assert manifest_head["ObjectLockMode"] == "COMPLIANCE"

        # one signed ledger event per verified copy, naming what the server holds
        events = station.history(sha, "replicated")
        assert len(events) == 1
        data = events[0]["data"]
        assert data["target"] == "offsite" and data["key"] == item_key(sha)
        assert data["sha256"] == sha and data["size"] == clip.size
        assert data["version_id"] == head["VersionId"]
        assert events[0]["key_id"] == key["key_id"]

    after = station.target_status()
    assert after == {"verified": 3, "proven": 0, "in_flight": 0, "failed": 0, "queued": 0,
                     "oldest_waiting": None, "last_error": None}  # sent, not read back
    assert run_cli(station.home, "ledger", "verify").exit_code == 0


def test_items_go_oldest_deadline_first_and_a_second_run_uploads_nothing(
    station: Home, s3: S3Client, bucket: str
) -> None:
    a, b, c = station.shas
    deadlines = {c: "2026-11-20T00:00:00.000000Z", a: "2026-11-21T00:00:00.000000Z",
                 b: "2026-11-22T00:00:00.000000Z"}
    for sha, deadline in deadlines.items():
        catalog.forge_item(station.home, sha, replication_deadline=deadline)
    waiting = station.target_status()
    assert waiting["oldest_waiting"] == {"sha256": c, "deadline": deadlines[c]}

    first = cli_json(station.home, "replicate", "--limit", "1")
    assert [v["sha256"] for v in first["verified"]] == [c]
    assert first["pending"] == 2
    status = station.target_status()
    assert (status["verified"], status["queued"]) == (1, 2)
    assert status["oldest_waiting"] == {"sha256": a, "deadline": deadlines[a]}

    rest = cli_json(station.home, "replicate")
    assert [v["sha256"] for v in rest["verified"]] == [a, b]
    seqs = [station.history(sha, "replicated")[0]["seq"] for sha in (c, a, b)]
    assert seqs == sorted(seqs), "ledger order follows the deadlines"

    stamps = {sha: versions(s3, bucket, item_key(sha)) for sha in station.shas}
    again = cli_json(station.home, "replicate")
    assert again == {"ok": True, "verified": [], "failed": [], "locks_extended": [],
                     "pending": 0, "unusable": {}}
    for sha in station.shas:
        now = versions(s3, bucket, item_key(sha))
        assert len(now) == 1 and now == stamps[sha], "no new object version"
        assert len(station.history(sha, "replicated")) == 1


def test_multipart_upload_of_a_big_clip_keeps_the_whole_file_hash(
    tmp_path: Path, big_clip: ClipFile, moto: S3Endpoint, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    home = make_home(tmp_path, [big_clip])
    home.add_target(s3_target(moto.url, bucket, credentials, multipart_threshold="1MiB",
                              multipart_chunksize="5MiB", max_concurrency=2))

    report = cli_json(home.home, "replicate")

    assert [v["sha256"] for v in report["verified"]] == [big_clip.sha256]
    key = item_key(big_clip.sha256)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ETag"].endswith('-2"'), "two parts"
    assert head["ContentLength"] == big_clip.size
    assert head["Metadata"]["sha256"] == big_clip.sha256
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert set_for(head["ObjectLockRetainUntilDate"], ROUTINE)
    assert download_sha(s3, bucket, key) == big_clip.sha256
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_stored_object_that_no_longer_hashes_to_its_item_is_never_counted_as_replicated(
    tmp_path: Path, clips: list[ClipFile], big_clip: ClipFile, proxy: FaultProxy, s3: S3Client,
    bucket: str, credentials: Path
) -> None:
    """The local copy is hashed as it is read for the upload, not before: a flipped bit must
    still stop the copy, whether it is one PUT or a multipart upload whose first part has
    already gone when the hash is known."""
    small = clips[0]
    home = make_home(tmp_path, [small, big_clip])
    home.add_target(s3_target(proxy.url, bucket, credentials, multipart_threshold="1MiB",
                              multipart_chunksize="5MiB", max_concurrency=2))
    station = home.open()
    try:
        stored = {c.sha256: station.store.path_of(c.sha256) for c in (small, big_clip)}
    finally:
        station.close()
    assert all(oct(p.stat().st_mode & 0o777) == "0o440" for p in stored.values())
    flip_bit(stored[small.sha256], small.size // 2)
    flip_bit(stored[big_clip.sha256], 100)  # in the first of two parts

    failed = run_cli(home.home, "replicate", "--json")

    assert failed.exit_code == 1, failed
    report = failed.json()
    assert report["ok"] is False and report["verified"] == [] and report["pending"] == 2
    errors = {f["sha256"]: f["error"] for f in report["failed"]}
    assert set(errors) == {small.sha256, big_clip.sha256}
    for clip in (small, big_clip):
        found = sha256_of(stored[clip.sha256])
        assert errors[clip.sha256] == (
            f"{stored[clip.sha256]} is {clip.size} bytes with SHA-256 {found}, expected "
            f"{clip.size} bytes with {clip.sha256}: not replicating a damaged copy")
        # nothing off-site that could pass for a copy, and nothing recorded as one
        assert versions(s3, bucket, item_key(clip.sha256)) == []
        assert versions(s3, bucket, manifest_key(clip.sha256)) == []
        assert home.history(clip.sha256, "replicated") == []
        assert "fixity_failed" in home.flags(clip.sha256)
    assert not proxy.puts(item_key(small.sha256)), "the damaged small clip was never sent"
    assert [s for s in proxy.seen if s[0] == "POST" and "uploadId=" in s[1]] == [], (
        "the multipart upload was never completed")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    status = home.target_status()
    assert (status["verified"], status["failed"], status["queued"]) == (0, 2, 0)
    assert {r["state"] for r in catalog.replicas(home.home)} == {"failed"}
    assert run_cli(home.home, "ledger", "verify").exit_code == 0

    # the damage undone (say, the object restored from the recorder): copied and verified
    flip_bit(stored[small.sha256], small.size // 2)
    flip_bit(stored[big_clip.sha256], 100)
    recovered = cli_json(home.home, "replicate")
    assert sorted(v["sha256"] for v in recovered["verified"]) == sorted(stored)
    for sha in stored:
        assert download_sha(s3, bucket, item_key(sha)) == sha


def test_replication_killed_mid_upload_resumes_cleanly(
    tmp_path: Path, big_clip: ClipFile, moto: S3Endpoint, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    home = make_home(tmp_path, [big_clip])
    home.add_target(s3_target(moto.url, bucket, credentials, multipart_threshold="1MiB",
                              multipart_chunksize="5MiB", bandwidth_limit="1MiB"))
    key = item_key(big_clip.sha256)
    proc = subprocess.Popen([str(INGESTD), "--home", str(home.home), "replicate", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env())
    try:
        wait_for(lambda: proc.poll() is not None or [
            u for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            if u["Key"] == key], timeout=30, what="the multipart upload to start")
        assert proc.poll() is None, proc.communicate()
        assert [r["state"] for r in catalog.replicas(home.home)] == ["uploading"]
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert versions(s3, bucket, key) == [], "the killed upload was never completed"
    assert home.target_status()["in_flight"] == 1

    home.edit_config('bandwidth_limit = "1MiB"\n', "")
    report = cli_json(home.home, "replicate")

    assert [v["sha256"] for v in report["verified"]] == [big_clip.sha256]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "stale aborted"
    assert len(versions(s3, bucket, key)) == 1
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ETag"].endswith('-2"') and head["Metadata"]["sha256"] == big_clip.sha256
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert download_sha(s3, bucket, key) == big_clip.sha256
    assert len(home.history(big_clip.sha256, "replicated")) == 1
    status = home.target_status()
    assert (status["verified"], status["in_flight"], status["failed"]) == (1, 0, 0)
    verified = run_cli(home.home, "ledger", "verify", "--json")
    assert verified.exit_code == 0, verified.stdout


# -- a server that fails --------------------------------------------------------------------------


def _item_puts(proxy: FaultProxy, sha: str) -> list[tuple[str, str, str]]:
    return proxy.puts(f"/sha256/{sha}")


def test_a_server_answering_500_fails_the_item_flags_it_late_then_recovers(
    tmp_path: Path, clips: list[ClipFile], proxy: FaultProxy, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    home = make_home(tmp_path, clips, config='\n[windows]\nreplication = "1s"\n')
    home.add_target(s3_target(proxy.url, bucket, credentials, max_attempts=3))
    proxy.rule = lambda method, path: "500" if method == "PUT" and "/sha256/" in path else None
    deadlines = {sha: item_record(home.home, sha)["replication_deadline"] for sha in home.shas}
    # first in the queue's order: by deadline, then hash
    first = min(({"sha256": sha, "replication_deadline": deadline}
                 for sha, deadline in deadlines.items()),
                key=lambda r: (r["replication_deadline"], r["sha256"]))

    failed = run_cli(home.home, "replicate", "--json")

    assert failed.exit_code == 1, failed
    report = failed.json()
    assert report["ok"] is False and report["verified"] == []
    assert [f["sha256"] for f in report["failed"]] == [first["sha256"]]
    assert "HTTP 500" in report["failed"][0]["error"]
    tries = _item_puts(proxy, first["sha256"])
    assert len(tries) == 3 and {t[2] for t in tries} == {"500"}, "max_attempts, each refused"
    others = [s for s in home.shas if s != first["sha256"]]
    assert not any(_item_puts(proxy, s) for s in others), "the target was left for this run"
    status = home.target_status()
    assert (status["verified"], status["failed"], status["queued"]) == (0, 1, 2)
    assert status["oldest_waiting"] == {"sha256": first["sha256"],
                                        "deadline": first["replication_deadline"]}
    assert "HTTP 500" in status["last_error"]["error"]
    assert bucket in status["last_error"]["error"] and "testing" not in status["last_error"][
        "error"].replace("'offsite'", "")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0

    # the replication window (1 s after storage) passes
    latest = max(datetime.fromisoformat(d) for d in deadlines.values())
    wait_for(lambda: datetime.now(UTC) > latest, timeout=5,
             what="the replication window to pass")
    flagged = cli_json(home.home, "check-windows")["flagged"]
    assert sorted(f["sha256"] for f in flagged if f["flag"] == "late_replication") == sorted(
        home.shas)
    overdue = {e["sha256"]: e["flags"] for e in cli_json(home.home, "overdue")}
    assert all("late_replication" in overdue[s] for s in home.shas)

    proxy.rule = lambda method, path: None  # the server is healthy again
    recovered = cli_json(home.home, "replicate")

    assert sorted(v["sha256"] for v in recovered["verified"]) == sorted(home.shas)
    assert home.target_status() == {"verified": 3, "proven": 0, "in_flight": 0, "failed": 0,
                                    "queued": 0, "oldest_waiting": None, "last_error": None}
    for sha in home.shas:
        assert download_sha(s3, bucket, item_key(sha)) == sha
        assert "late_replication" in home.flags(sha), "a missed deadline stays flagged"
    assert cli_json(home.home, "check-windows")["flagged"] == []


def _asked(proxy: FaultProxy, key: str) -> list[str]:
    """The requests made of one key's object (any version of it), in order, as METHOD and
    what happened (a request of its lock, ``PUT ?retention``, is left out)."""
    asked = []
    for method, path, fault in proxy.seen:
        where, _, query = path.partition("?")
        if where.endswith("/" + key) and (not query or query.startswith("versionId=")):
            asked.append(f"{method} {fault}")
    return asked


class HoldingProxy(FaultProxy):
    """As FaultProxy; besides, a request ``hold`` names waits (up to ``patience`` seconds) to
    be relayed until a request ``releases`` names has arrived."""

    def __init__(self, upstream: str, *, hold: Callable[[str, str], bool],
                 releases: Callable[[str, str], bool], patience: float = 20.0) -> None:
        super().__init__(upstream)
        self._hold, self._releases, self._patience = hold, releases, patience
        self.released = threading.Event()
        self.held_in_vain = False

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, unquote(handler.path)
        if self._releases(method, path):
            self.released.set()
        if self._hold(method, path) and not self.released.wait(self._patience):
            self.held_in_vain = True
        super()._relay(handler)


@pytest.fixture(scope="module")
def early_big_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """About 9 MiB: two parts of a multipart upload at 5 MiB parts."""
    clip = make_noise_clip(tmp_path_factory.mktemp("replicate-early") / "20260301_010000_0008.MP4",
                           seconds=3, tag="replicate-early", recorded=RECORDED - timedelta(hours=1))
    assert 5 * MiB < clip.size < 10 * MiB, clip.size
    return clip


def _on(key: str) -> Callable[[str, str], bool]:
    """A request (PUT or POST) for the object at ``key``."""
    return lambda method, path: urlsplit(path).path.endswith("/" + key)


def test_the_rest_wait_for_the_first_item_only_until_the_target_stores_its_first_part(
    tmp_path: Path, clips: list[ClipFile], early_big_clip: ClipFile, moto: S3Endpoint,
    s3: S3Client, bucket: str, credentials: Path
) -> None:
    """The first item in line goes alone until the target has taken a write (a target that
    takes none is found with one item: the test above). A large first item's other parts do
    not hold the rest back: here its second part is held at the proxy until another item's
    copy arrives, which must come without it."""
    small = clips[:2]
    home = make_home(tmp_path, [early_big_clip])  # stored first: its deadline comes first
    later = build_recorder(tmp_path / "recorder-2" / SERIAL,
                           {f"DCIM/100MEDIA/{clip.path.name}": clip for clip in small})
    cli_json(home.home, "ingest", later, "--serial", SERIAL)
    home.clips.extend(small)
    big = item_key(early_big_clip.sha256)
    is_big, smalls = _on(big), [_on(item_key(c.sha256)) for c in small]
    proxy = HoldingProxy(
        moto.url, hold=lambda m, p: m == "PUT" and is_big(m, p) and "partNumber=2" in p,
        releases=lambda m, p: m == "PUT" and any(on(m, p) for on in smalls))
    try:
        home.add_target(s3_target(proxy.url, bucket, credentials, multipart_threshold="1MiB",
                                  multipart_chunksize="5MiB"))
        assert min(home.shas, key=lambda sha: item_record(home.home, sha)[
            "replication_deadline"]) == early_big_clip.sha256, "the large clip is first in line"

        done = run_cli(home.home, "replicate", "--json")

        assert done.exit_code == 0, done
        assert sorted(v["sha256"] for v in done.json()["verified"]) == sorted(home.shas)
        assert not proxy.held_in_vain, (
            "no other item was sent while the first item's second part waited")
        order = [(m, p) for m, p, _ in proxy.seen]
        first_part = next(i for i, (m, p) in enumerate(order)
                          if m == "PUT" and is_big(m, p) and "partNumber=1" in p)
        other = next(i for i, (m, p) in enumerate(order)
                     if m == "PUT" and any(on(m, p) for on in smalls))
        completed = next(i for i, (m, p) in enumerate(order)
                         if m == "POST" and is_big(m, p) and "uploadId=" in p)
        assert first_part < other < completed, order
        assert not any(any(on(m, p) for on in smalls) for m, p in order[:first_part]), (
            "nothing else was sent before the first item's first part")
    finally:
        proxy.close()
    for clip in (early_big_clip, *small):
        assert download_sha(s3, bucket, item_key(clip.sha256)) == clip.sha256
    assert [h["data"]["target"] for h in home.history(early_big_clip.sha256, "replicated")] == [
        "offsite"]
    assert run_cli(home.home, "ledger", "verify").exit_code == 0


def test_each_target_that_takes_no_writes_is_found_with_one_item_alone(
    tmp_path: Path, clips: list[ClipFile], proxy: FaultProxy, s3: S3Client, bucket: str,
    credentials: Path, moto: S3Endpoint
) -> None:
    """Two targets; the second refuses every write. One item finds that out alone: the
    others go to the first target only, and are not sent to the second."""
    home = make_home(tmp_path, clips)
    second = new_bucket(s3)
    home.add_target(s3_target(moto.url, bucket, credentials))
    home.add_target(s3_target(proxy.url, second, credentials, name="second"))
    proxy.rule = lambda method, path: "500" if method == "PUT" and "/sha256/" in path else None

    failed = run_cli(home.home, "replicate", "--json")

    assert failed.exit_code == 1, failed
    report = failed.json()
    assert sorted((v["sha256"], v["target"]) for v in report["verified"]) == sorted(
        (sha, "offsite") for sha in home.shas)
    tried = [sha for sha in home.shas if proxy.puts(item_key(sha))]
    assert len(tried) == 1, "the second target was left for this run after one item"
    assert [(f["sha256"], f["target"]) for f in report["failed"]] == [(tried[0], "second")]
    assert "HTTP 500" in report["failed"][0]["error"]
    assert s3.list_objects_v2(Bucket=second).get("KeyCount", 0) == 0
    for sha in home.shas:
        assert download_sha(s3, bucket, item_key(sha)) == sha


def test_a_first_copy_is_sent_without_asking_and_a_later_attempt_finds_what_is_there(
    tmp_path: Path, clips: list[ClipFile], proxy: FaultProxy, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    """A copy never begun at a place is sent at once (no HEAD first: one round trip less per
    object); any later attempt, under the same name or another at the same place, asks first
    and takes a good copy it finds rather than sending the bytes again."""
    home = make_home(tmp_path, clips[:2])
    one, two = home.shas
    catalog.forge_item(home.home, one, replication_deadline="2026-11-20T00:00:00.000000Z")
    catalog.forge_item(home.home, two, replication_deadline="2026-11-21T00:00:00.000000Z")
    home.add_target(s3_target(proxy.url, bucket, credentials))
    # `one` goes first; the copy of `two` reaches the server, but the check after it fails:
    # the run records the attempt as failed with the object in the bucket
    proxy.rule = lambda method, path: "500" if (
        method == "HEAD" and path.partition("?")[0].endswith(item_key(two))) else None

    first = run_cli(home.home, "replicate", "--json")

    assert first.exit_code == 1, first
    assert [v["sha256"] for v in first.json()["verified"]] == [one]
    assert [f["sha256"] for f in first.json()["failed"]] == [two]
    assert _asked(proxy, item_key(one)) == ["PUT passed", "HEAD passed"], "sent, then checked"
    assert _asked(proxy, manifest_key(one)) == ["PUT passed", "HEAD passed"]
    assert _asked(proxy, item_key(two)) == ["PUT passed", "HEAD 500"]
    proved = [p for m, p, _ in proxy.seen if "object-lock" in p]
    assert len(proved) == 1, f"the bucket is proven once per command, not {len(proved)} times"
    assert len(versions(s3, bucket, item_key(two))) == 1

    proxy.seen.clear()
    proxy.rule = lambda method, path: None
    second = cli_json(home.home, "replicate")

    assert [v["sha256"] for v in second["verified"]] == [two]
    assert _asked(proxy, item_key(two))[0] == "HEAD passed", "asked first"
    assert "PUT passed" not in _asked(proxy, item_key(two)), "found good, not sent again"
    assert len(versions(s3, bucket, item_key(two))) == 1
    assert download_sha(s3, bucket, item_key(two)) == two

    # the same bucket under a new name: the copies begun there are found, not sent again
    home.edit_config('name = "offsite"', 'name = "renamed"')
    proxy.seen.clear()
    renamed = cli_json(home.home, "replicate")

    assert sorted(v["sha256"] for v in renamed["verified"]) == sorted(home.shas)
    assert not [s for s in proxy.seen
                if s[0] == "PUT" and "/sha256/" in s[1] and "?" not in s[1]], "nothing sent again"
    for sha in home.shas:
        assert _asked(proxy, item_key(sha))[0] == "HEAD passed"
        assert len(versions(s3, bucket, item_key(sha))) == 1


def test_a_server_that_disappears_mid_run_then_comes_back(
    tmp_path: Path, clips: list[ClipFile], proxy: FaultProxy, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    """Through the Replicator API, as the daemon's replication job calls it. One item at a time
    here, so that exactly one is in flight when the server goes (with replication_parallel = N,
    up to N in flight fail together; none after them is tried)."""
    from ingestd.usecases.replicate import Replicator

    home = make_home(tmp_path, clips, config='\n[windows]\nreplication = "1s"\n'
                     '[scheduler]\nreplication_parallel = 1\n')
    home.add_target(s3_target(proxy.url, bucket, credentials, max_attempts=3))
    seen: list[str] = []

    def gone_after_the_first_item(method: str, path: str) -> str | None:
        found = re.search(r"/sha256/([0-9a-f]{64})", path)
        if found and found.group(1) not in seen:
            seen.append(found.group(1))
        return "drop" if len(seen) > 1 else None  # from the second item on: nobody answers

    proxy.rule = gone_after_the_first_item
    station = home.open()
    try:
        replicator = Replicator(station)
        replicator.check()
        report = replicator.run()
    finally:
        station.close()

    assert not report.ok
    assert [v["sha256"] for v in report.verified] == seen[:1]
    assert [f["sha256"] for f in report.failed] == seen[1:2]
    assert "cannot replicate item" in report.failed[0]["error"]
    assert report.pending == 2
    dropped = [s for s in proxy.seen if s[2] == "drop" and seen[1] in s[1]]
    assert len(dropped) == 3, "max_attempts tries before giving up"
    status = home.target_status()
    assert (status["verified"], status["failed"], status["queued"]) == (1, 1, 1)
    assert seen[1] in status["last_error"]["error"]
    [replica] = catalog.replicas(home.home, seen[1])
    assert replica["state"] == "failed" and replica["attempts"] == 1 and replica["last_error"]

    # meanwhile `replicate` by hand refuses at once: the target cannot serve
    refused = run_cli(home.home, "replicate")
    assert refused.exit_code == 9 and "cannot reach bucket" in refused.stderr

    latest = max(datetime.fromisoformat(item_record(home.home, sha)["replication_deadline"])
                 for sha in home.shas)
    wait_for(lambda: datetime.now(UTC) > latest, timeout=5,
             what="the replication window to pass")
    flagged = {f["sha256"] for f in cli_json(home.home, "check-windows")["flagged"]
               if f["flag"] == "late_replication"}
    assert flagged == set(home.shas) - set(seen[:1]), "only the copies still missing are late"

    proxy.rule = lambda method, path: None
    recovered = cli_json(home.home, "replicate")
    assert sorted(v["sha256"] for v in recovered["verified"]) == sorted(
        set(home.shas) - set(seen[:1]))
    assert {(r["state"], r["last_error"]) for r in catalog.replicas(home.home)} == {
        ("verified", "")}
    assert home.target_status()["failed"] == 0


# -- copies changed behind ingestd's back --------------------------------------------------------


def test_an_object_planted_at_the_key_is_not_taken_for_the_copy(
    station: Home, s3: S3Client, bucket: str
) -> None:
    sha = station.shas[0]
    planted = s3.put_object(Bucket=bucket, Key=item_key(sha), Body=b"not the evidence")

    report = cli_json(station.home, "replicate")

    assert sha in {v["sha256"] for v in report["verified"]}
    assert download_sha(s3, bucket, item_key(sha)) == sha, "a good copy was put on top"
    event = station.history(sha, "replicated")[0]["data"]
    current = s3.head_object(Bucket=bucket, Key=item_key(sha))
    assert event["version_id"] == current["VersionId"] != planted["VersionId"]
    assert {v["VersionId"] for v in versions(s3, bucket, item_key(sha))} == {
        planted["VersionId"], current["VersionId"]}, "the planted version is kept to investigate"


def test_a_verified_copy_replaced_behind_our_back_is_caught_and_copied_again(
    station: Home, s3: S3Client, bucket: str
) -> None:
    cli_json(station.home, "replicate")
    sha = station.shas[0]
    s3.put_object(Bucket=bucket, Key=item_key(sha), Body=b"not the evidence")

    audit = run_cli(station.home, "audit", "--all", "--offsite", "--decode", "0", "--json")

    assert audit.exit_code == 1
    failures = json.loads(audit.stdout)["failures"]
    assert [f["sha256"] for f in failures] == [sha]
    assert "off-site copy on offsite" in failures[0]["problem"]
    assert "replica_mismatch" in station.flags(sha)
    report = cli_json(station.home, "replicate")
    assert report["verified"] == [{"sha256": sha, "target": "offsite"}]
    assert download_sha(s3, bucket, item_key(sha)) == sha
    again = run_cli(station.home, "audit", "--all", "--offsite", "--decode", "0", "--json")
    assert again.exit_code == 0, again.stdout


def test_a_copy_begun_but_never_checked_is_looked_for_under_a_new_name(
    tmp_path: Path, clips: list[ClipFile], proxy: FaultProxy, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    """A copy that reached the bucket but was never checked has no place recorded: the next
    attempt, even under another target name, asks first and takes it rather than locking a
    second copy of the same bytes."""
    home = make_home(tmp_path, clips[:1])
    (sha,) = home.shas
    home.add_target(s3_target(proxy.url, bucket, credentials))
    proxy.rule = lambda method, path: "500" if (
        method == "HEAD" and path.partition("?")[0].endswith(item_key(sha))) else None
    assert run_cli(home.home, "replicate", "--json").exit_code == 1
    assert len(versions(s3, bucket, item_key(sha))) == 1, "the copy reached the bucket"

    proxy.rule = lambda method, path: None
    proxy.seen.clear()
    home.edit_config('name = "offsite"', 'name = "renamed"')
    report = cli_json(home.home, "replicate")

    assert [v["sha256"] for v in report["verified"]] == [sha]
    assert _asked(proxy, item_key(sha))[0] == "HEAD passed", "asked first"
    assert "PUT passed" not in _asked(proxy, item_key(sha))
    assert len(versions(s3, bucket, item_key(sha))) == 1, "no second locked copy"


def test_forged_metadata_at_the_key_is_caught_by_readback(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    home = make_home(tmp_path, clips)
    home.add_target(s3_target(moto.url, bucket, credentials, readback=True))
    clip = home.clips[0]
    s3.put_object(Bucket=bucket, Key=item_key(clip.sha256), Body=os.urandom(clip.size),
                  Metadata={"sha256": clip.sha256})

    report = cli_json(home.home, "replicate")

    assert clip.sha256 in {v["sha256"] for v in report["verified"]}
    assert download_sha(s3, bucket, item_key(clip.sha256)) == clip.sha256


def test_forged_metadata_at_the_key_is_caught_by_the_offsite_audit(
    tmp_path: Path, clips: list[ClipFile], proxy: FaultProxy, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    home = make_home(tmp_path, clips[:1])
    home.add_target(s3_target(proxy.url, bucket, credentials))
    clip = home.clips[0]
    # a first attempt that never reached the bucket: the next one asks what is there
    proxy.rule = lambda method, path: "500" if method == "PUT" else None
    assert run_cli(home.home, "replicate", "--json").exit_code == 1
    proxy.rule = lambda method, path: None
    s3.put_object(Bucket=bucket, Key=item_key(clip.sha256), Body=os.urandom(clip.size),
                  Metadata={"sha256": clip.sha256})
    cli_json(home.home, "replicate")  # without readback the forged object passes the head check
    assert download_sha(s3, bucket, item_key(clip.sha256)) != clip.sha256

    audit = run_cli(home.home, "audit", "--all", "--offsite", "--decode", "0", "--json")

    assert audit.exit_code == 1
    assert "replica_mismatch" in home.flags(clip.sha256)
    cli_json(home.home, "replicate")
    assert download_sha(s3, bucket, item_key(clip.sha256)) == clip.sha256


def test_forged_metadata_planted_before_the_first_copy_is_covered_by_it(
    station: Home, s3: S3Client, bucket: str
) -> None:
    """A copy never begun is sent without asking: an object planted at its key beforehand,
    claiming the item's hash, is never taken for it, and stays beneath for investigation."""
    clip = station.clips[0]
    planted = s3.put_object(Bucket=bucket, Key=item_key(clip.sha256),
                            Body=os.urandom(clip.size), Metadata={"sha256": clip.sha256})

    report = cli_json(station.home, "replicate")

    assert clip.sha256 in {v["sha256"] for v in report["verified"]}
    assert download_sha(s3, bucket, item_key(clip.sha256)) == clip.sha256
    kept = {v["VersionId"] for v in versions(s3, bucket, item_key(clip.sha256))}
    assert planted["VersionId"] in kept and len(kept) == 2


# -- retention classes and holds raise the off-site lock ------------------------------------------


def test_a_case_label_extends_the_offsite_retention(
    station: Home, s3: S3Client, bucket: str
) -> None:
    cli_json(station.home, "replicate")
    labelled, untouched = station.clips[0], station.clips[1]

    done = cli_json(station.home, "label", labelled.sha256[:12], "--case", "2026-XZ-0042",
              "--party", "Li Lei")["labelled"][0]
    assert done["retention_class"] == "evidence"
    report = cli_json(station.home, "replicate")

    assert report["verified"] == []
    assert [e["sha256"] for e in report["locks_extended"]] == [labelled.sha256]
    head = s3.head_object(Bucket=bucket, Key=item_key(labelled.sha256))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert set_for(head["ObjectLockRetainUntilDate"], EVIDENCE)
    assert len(versions(s3, bucket, item_key(labelled.sha256))) == 1, "locked, not re-uploaded"
    other = s3.head_object(Bucket=bucket, Key=item_key(untouched.sha256))
    assert set_for(other["ObjectLockRetainUntilDate"], ROUTINE)
    retention = station.history(labelled.sha256, "retention")
    assert len(retention) == 1 and retention[0]["data"]["class"] == "evidence"
    assert cli_json(station.home, "replicate")["locks_extended"] == [], "done once"


def test_hold_sets_legal_hold_and_a_long_term_label_locks_for_decades(
    station: Home, s3: S3Client, bucket: str
) -> None:
    cli_json(station.home, "replicate")
    held, disputed = station.clips[1], station.clips[2]

    cli_json(station.home, "hold", held.sha256, "--reason", "court order 17")
    cli_json(station.home, "label", disputed.sha256, "--case", "2026-XZ-0043", "--party", "Han Mei",
       "--category", "dispute")
    report = cli_json(station.home, "replicate")

    assert sorted(e["sha256"] for e in report["locks_extended"]) == sorted(
        [held.sha256, disputed.sha256])
    head = s3.head_object(Bucket=bucket, Key=item_key(held.sha256))
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    assert set_for(head["ObjectLockRetainUntilDate"], ROUTINE)
    held_until = head["ObjectLockRetainUntilDate"]
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key=item_key(held.sha256), VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    long_term = s3.head_object(Bucket=bucket, Key=item_key(disputed.sha256))
    assert long_term["ObjectLockMode"] == "COMPLIANCE"
    assert long_term["ObjectLockRetainUntilDate"] == long_term_until(disputed.recorded)
    assert long_term["ObjectLockRetainUntilDate"] > disputed.recorded + timedelta(days=365 * 75)
    # locked once: later runs neither touch it again nor add ledger entries about it
    assert cli_json(station.home, "replicate")["locks_extended"] == []
    assert len(station.history(disputed.sha256, "retention")) == 1

    cli_json(station.home, "release", held.sha256, "--reason", "case closed")
    released = cli_json(station.home, "replicate")
    assert [e["sha256"] for e in released["locks_extended"]] == [held.sha256]
    head = s3.head_object(Bucket=bucket, Key=item_key(held.sha256))
    assert head.get("ObjectLockLegalHoldStatus", "OFF") == "OFF"
    assert head["ObjectLockRetainUntilDate"] >= held_until, "retention stays"


def test_a_lock_the_server_will_not_extend_is_reported_and_retried(
    tmp_path: Path, clips: list[ClipFile], proxy: FaultProxy, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    home = make_home(tmp_path, clips)
    home.add_target(s3_target(proxy.url, bucket, credentials))
    cli_json(home.home, "replicate")
    labelled = home.clips[0]
    cli_json(home.home, "label", labelled.sha256, "--case", "2026-XZ-0042", "--party", "Li Lei")
    proxy.rule = lambda method, path: "500" if method == "PUT" and "?retention" in path else None

    failed = run_cli(home.home, "replicate", "--json")

    assert failed.exit_code == 1, "a copy kept shorter than its retention is not a success"
    report = failed.json()
    assert report["locks_extended"] == []
    assert [(f["sha256"], f["target"]) for f in report["failed"]] == [
        (labelled.sha256, "offsite")]
    head = s3.head_object(Bucket=bucket, Key=item_key(labelled.sha256))
    assert set_for(head["ObjectLockRetainUntilDate"], ROUTINE)
    status = home.target_status()
    assert status["verified"] == 3, "the copy itself is good"
    assert labelled.sha256 in status["last_error"]["error"]
    assert home.history(labelled.sha256, "retention") == []

    proxy.rule = lambda method, path: None
    retried = cli_json(home.home, "replicate")

    assert [e["sha256"] for e in retried["locks_extended"]] == [labelled.sha256]
    head = s3.head_object(Bucket=bucket, Key=item_key(labelled.sha256))
    assert set_for(head["ObjectLockRetainUntilDate"], EVIDENCE)
    assert home.target_status()["last_error"] is None
    assert len(home.history(labelled.sha256, "retention")) == 1


# -- a bucket without Object Lock -----------------------------------------------------------------


def test_object_lock_target_on_a_bucket_without_it_is_refused(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, s3: S3Client, credentials: Path
) -> None:
    plain = new_bucket(s3, lock=False)
    home = make_home(tmp_path, clips)
    home.add_target(s3_target(moto.url, plain, credentials))

    refused = run_cli(home.home, "replicate")
    assert refused.exit_code == 9
    message = " ".join(refused.stderr.split())
    assert "object_lock is required" in message and "no Object Lock" in message
    assert "'offsite'" in message and plain in message

    daemon = subprocess.run([str(INGESTD), "--home", str(home.home), "run"], env=subprocess_env(),
                            capture_output=True, text=True, timeout=30, check=False)
    assert daemon.returncode == 9, daemon.stderr
    assert "no Object Lock" in " ".join(daemon.stderr.split())

    assert s3.list_objects_v2(Bucket=plain).get("KeyCount", 0) == 0, "nothing was sent"
    assert catalog.replicas(home.home) == []

    # the same bucket serves a target that does not ask for Object Lock
    home.edit_config("object_lock = true", "object_lock = false")
    assert len(cli_json(home.home, "replicate")["verified"]) == 3


def test_run_once_is_refused_on_a_bucket_without_object_lock(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, s3: S3Client, credentials: Path
) -> None:
    plain = new_bucket(s3, lock=False)
    home = make_home(tmp_path, clips)
    home.add_target(s3_target(moto.url, plain, credentials))

    once = run_cli(home.home, "run", "--once")

    assert once.exit_code == 9 and "no Object Lock" in " ".join(once.stderr.split())
    assert catalog.replicas(home.home) == []


# -- signed checkpoints and the off-site check of the ledger --------------------------------------


def _checkpoint_and_verify(home: Home, s3: S3Client, bucket: str) -> dict[str, Any]:
    cli_json(home.home, "replicate")
    sent = cli_json(home.home, "checkpoint")
    assert sent["sent"] == ["offsite"] and sent["errors"] == []
    ledger = cli_json(home.home, "ledger", "verify", "--offsite")
    assert ledger["ok"] is True and ledger["problems"] == []
    # the ledger's last entry records the checkpoint of the head before it
    [recorded] = catalog.ledger_entries(home.home, "checkpointed")
    assert recorded["seq"] == ledger["head_seq"] == sent["seq"] + 1
    assert catalog.ledger_entry(home.home, sent["seq"])["entry_hash"] == sent["head_hash"]
    key = cli_json(home.home, "keys", "show")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/checkpoints/")["Contents"]
    assert [o["Key"] for o in listed] == [f"{PREFIX}/checkpoints/{sent['name']}"]
    raw = s3.get_object(Bucket=bucket, Key=listed[0]["Key"])["Body"].read()
    body = check_signed(json.loads(raw), "checkpoint", key["public_key"])
    assert body["seq"] == sent["seq"] and body["head_hash"] == sent["head_hash"]
    assert body["station"] == "station-01" and body["key_id"] == key["key_id"]
    again = cli_json(home.home, "checkpoint")
    assert again["sent"] == [] and again["unchanged"] == ["offsite"], "nothing new to vouch for"
    return body


def _problems(home: Home) -> tuple[int, list[str]]:
    result = run_cli(home.home, "ledger", "verify", "--offsite", "--json")
    return result.exit_code, [p["kind"] for p in result.json()["problems"]]


def _rewrite_mirror(home: Home) -> None:
    """Make the JSON-lines mirror agree with the (tampered) catalog, as a careful forger would."""
    lines = [json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n"
             for e in catalog.ledger_entries(home.home)]
    (home.home / "ledger.jsonl").write_text("".join(lines), encoding="utf-8")


def test_a_truncated_local_ledger_is_caught_by_the_offsite_checkpoint(
    station: Home, s3: S3Client, bucket: str
) -> None:
    body = _checkpoint_and_verify(station, s3, bucket)

    # drop the last two entries the checkpoint covers (two `replicated` events), and the
    # `checkpointed` entry after them, from the catalog and the mirror
    assert catalog.delete_entries(station.home, after=body["seq"] - 2) == 3
    # and the replica rows they backed, or `ledger verify` finds those unbacked
    assert catalog.delete_replicas(station.home, backed_after=body["seq"] - 2) == 2
    _rewrite_mirror(station)
    assert run_cli(station.home, "ledger", "verify").exit_code == 0, "consistent locally"

    code, kinds = _problems(station)
    assert code == 1 and kinds == ["ledger_truncated"]


def test_a_rewritten_local_ledger_is_caught_by_the_offsite_checkpoint(
    station: Home, s3: S3Client, bucket: str
) -> None:
    from ingestd.integrity.ledger import from_json, seal
    from ingestd.integrity.signing import StationKey

    _checkpoint_and_verify(station, s3, bucket)

    # an insider rewrites history: the recorder's registration names another officer id, and
    # every entry from there on is sealed again with a key of their own, made "trusted"
    rogue = StationKey.generate()
    catalog.insert_key(station.home, rogue)
    entries = [from_json(e) for e in catalog.ledger_entries(station.home)]
    start = next(e.seq for e in entries if e.kind == "registry")
    prev = entries[start - 2].entry_hash
    forged = []
    for entry in entries[start - 1:]:
        data = dict(entry.data)
        if entry.seq == start:
            data["officer_id"] = "PS-9999"
        forged.append(seal(seq=entry.seq, at=entry.at, station=entry.station, actor=entry.actor,
                           kind=entry.kind, item=entry.item, data=data, prev_hash=prev,
                           key=rogue))
        prev = forged[-1].entry_hash
    catalog.write_entries(station.home, forged)
    _rewrite_mirror(station)
    # The rogue key is only in the catalog: the chain does not vouch for it. And the ledger's
    # own record of the checkpoint it published vouches for the head before the rewrite.
    local = run_cli(station.home, "ledger", "verify", "--json")
    assert local.exit_code == 1
    assert {p["kind"] for p in local.json()["problems"]} == {
        "unknown_key", "unbacked_row", "checkpoint_record_invalid"}

    code, kinds = _problems(station)
    assert code == 1 and "ledger_rewritten" in kinds


def test_stations_sharing_a_catalog_replicate_only_their_own_items(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    """A fleet puts many stations on one catalog (PostgreSQL in production; one SQLite file
    here, which runs the same queries): each station holds only its own items in its store."""
    shared = tmp_path / "fleet.sqlite"
    homes: dict[str, Path] = {}
    for name, clip in (("station-a", clips[0]), ("station-b", clips[1])):
        home = tmp_path / name
        home.mkdir()
        (home / "ingestd.toml").write_text(
            f'station = "{name}"\ncatalog = "sqlite:///{shared}"\n', encoding="utf-8")
        assert run_cli(home, "init").exit_code == 0
        if name == "station-a":
            assert run_cli(home, "devices", "add", SERIAL, "--officer", OFFICER,
                       "--officer-id", "PS-1001").exit_code == 0
        media = tmp_path / f"recorder-{name}" / "DCIM" / "100MEDIA"
        media.mkdir(parents=True)
        shutil.copy2(clip.path, media / clip.path.name)
        cli_json(home, "ingest", media.parent.parent, "--serial", SERIAL)
        with (home / "ingestd.toml").open("a", encoding="utf-8") as fh:
            fh.write("\n" + s3_target(moto.url, bucket, credentials, prefix=name))
        homes[name] = home

    a = cli_json(homes["station-a"], "replicate")

    assert a["ok"] is True and a["failed"] == [] and a["pending"] == 0
    assert [v["sha256"] for v in a["verified"]] == [clips[0].sha256]
    b_item = cli_json(homes["station-b"], "show", clips[1].sha256)
    assert [f["flag"] for f in b_item["flags"] if f["flag"] != "late_ingest"] == [], (
        "another station's item is not ours to copy, nor damaged")
    assert catalog.replicas(homes["station-a"], clips[1].sha256) == [], (
        "station-a left station-b's item alone")
    b = cli_json(homes["station-b"], "replicate")
    assert [v["sha256"] for v in b["verified"]] == [clips[1].sha256]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="station-")["Contents"]}
    assert {f"station-a/sha256/{clips[0].sha256}",
            f"station-b/sha256/{clips[1].sha256}"} <= keys
    assert not any(k.startswith("station-a/sha256/" + clips[1].sha256) for k in keys)
    # one target name, a prefix each: neither station's run unsettles the other's copies
    assert cli_json(homes["station-a"], "replicate")["verified"] == []
    rows = sorted(((r["item"], r["state"], r["location"])
                   for r in catalog.replicas(homes["station-b"])), key=lambda r: r[2])
    assert rows == [(clips[0].sha256, "verified", f"s3:{moto.url}/{bucket}/station-a"),
                    (clips[1].sha256, "verified", f"s3:{moto.url}/{bucket}/station-b")]


# -- wipe after off-site verification -------------------------------------------------------------

#: moto lets a COMPLIANCE date be shortened, so the daily WORM check of a moto bucket fails
#: (``test_worm_check``) and its copies would let nothing go: these tests of the wipe itself
#: run ``run --once`` without that job.
NO_WORM_JOB = '[scheduler]\nworm_check = "0s"\n'


def test_a_copy_found_bad_while_the_recorder_is_wiped_keeps_the_recorder_file(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, bucket: str, credentials: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # The files to wipe are drawn up first; an audit finds an off-site copy bad before one of
    # them is deleted. The wipe decides again with the catalog in hand and keeps that file.
    from ingestd.docks import wipe

    home = make_home(tmp_path, clips, config='wipe = "after-offsite-verify"\n' + NO_WORM_JOB,
                     recorder=tmp_path / "home" / "docks" / SERIAL)
    home.add_target(s3_target(moto.url, bucket, credentials, readback=True))
    media = home.recorder / "DCIM" / "100MEDIA"
    assert len(cli_json(home.home, "replicate")["verified"]) == 3
    bad = clips[1]
    real_set_aside = wipe.set_aside

    def audit_meanwhile(dir_fd: int, name: bytes) -> bytes:
        if name == bad.path.name.encode():
            catalog.forge_replicas(home.home, bad.sha256, state="mismatch")
        return real_set_aside(dir_fd, name)

    monkeypatch.setattr(wipe, "set_aside", audit_meanwhile)
    assert run_cli(home.home, "run", "--once").exit_code == 0
    left = sorted(p.name for p in media.iterdir())
    assert left == [bad.path.name], left
    assert sha256_of(media / bad.path.name) == bad.sha256
    assert home.history(bad.sha256, "wiped") == []
    assert all(len(home.history(c.sha256, "wiped")) == 1 for c in clips if c is not bad)


def test_a_proof_written_into_the_catalog_by_hand_is_found(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, bucket: str, credentials: Path
) -> None:
    # Eviction and wipe trust `proven_at`: an insider who sets it on copies never read back
    # would let the local copies go. The ledger says which copies were read back, and where.
    home = _proof_home(tmp_path, clips, moto.url, bucket, credentials)
    assert len(cli_json(home.home, "replicate")["verified"]) == 3
    assert catalog.forge_replicas(home.home, proven_at="2026-01-01T00:00:00.000000Z") == 3
    forged = run_cli(home.home, "ledger", "verify", "--json")
    assert forged.exit_code == 1
    found = [p for p in forged.json()["problems"] if p["kind"] == "row_differs"]
    assert len(found) == 3 and all("read back" in p["detail"] for p in found), found

    # a real proof: the audit reads every copy back and says so in its entries
    assert catalog.forge_replicas(home.home, proven_at=None) == 3
    audit = run_cli(home.home, "audit", "--all", "--offsite", "--decode", "0")
    assert audit.exit_code == 0, audit
    assert home.target_status()["proven"] == 3
    assert run_cli(home.home, "ledger", "verify").exit_code == 0


def test_redock_wipes_only_files_verified_offsite(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, bucket: str, credentials: Path
) -> None:
    home_dir = tmp_path / "home"
    home = make_home(tmp_path, clips, config='wipe = "after-offsite-verify"\n' + NO_WORM_JOB,
                     recorder=home_dir / "docks" / SERIAL)
    # read back at upload: only a copy whose bytes were hashed lets a recorder file go
    home.add_target(s3_target(moto.url, bucket, credentials, readback=True))
    media = home.recorder / "DCIM" / "100MEDIA"
    by_sha = {c.sha256: media / c.path.name for c in clips}

    copied = [v["sha256"] for v in cli_json(home.home, "replicate", "--limit", "2")["verified"]]
    assert len(copied) == 2
    waiting = next(s for s in home.shas if s not in copied)

    redock = run_cli(home.home, "run", "--once")  # the scan (and its wipe) comes before the jobs
    assert redock.exit_code == 0, redock

    assert [p.exists() for p in (by_sha[s] for s in copied)] == [False, False]
    assert by_sha[waiting].exists() and sha256_of(by_sha[waiting]) == waiting
    for sha in copied:
        wiped = home.history(sha, "wiped")
        assert len(wiped) == 1 and wiped[0]["data"]["policy"] == "after-offsite-verify"
    assert home.history(waiting, "wiped") == []

    # that run's replication job copied the last one: the next dock wipes it too
    assert home.target_status()["verified"] == 3
    assert run_cli(home.home, "run", "--once").exit_code == 0
    assert not by_sha[waiting].exists()
    assert len(home.history(waiting, "wiped")) == 1
    assert run_cli(home.home, "ledger", "verify").exit_code == 0


# -- a directory target on a real folder ----------------------------------------------------------


def test_directory_target_replicates_verifies_and_reports(
    tmp_path: Path, clips: list[ClipFile]
) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    home = make_home(tmp_path, clips)
    home.add_target(f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                    f'prefix = "{PREFIX}"\nsame_filesystem_ok = true\n')
    assert home.target_status("nas")["queued"] == 3

    report = cli_json(home.home, "replicate")

    assert sorted(v["sha256"] for v in report["verified"]) == sorted(home.shas)
    key = cli_json(home.home, "keys", "show")
    for clip in clips:
        copy = nas / PREFIX / "sha256" / clip.sha256
        assert sha256_of(copy) == clip.sha256 and copy.stat().st_size == clip.size
        assert copy.stat().st_mode & 0o222 == 0, "read-only"
        verdict = cli_json(home.home, "verify", copy)["results"][0]
        assert verdict["match"] is True and verdict["item"]["recorder"] == SERIAL
        manifest = json.loads((nas / PREFIX / "manifests" / f"{clip.sha256}.json").read_bytes())
        assert check_signed(manifest, "manifest", key["public_key"])["item"] == clip.sha256
        lock = json.loads((nas / PREFIX / "locks" / "sha256" / f"{clip.sha256}.json").read_text())
        assert set_for(datetime.fromisoformat(lock["retain_until"]), ROUTINE)
        assert home.history(clip.sha256, "replicated")[0]["data"]["target"] == "nas"
    assert home.target_status("nas") == {"verified": 3, "proven": 3, "in_flight": 0,
                                         "failed": 0, "queued": 0, "oldest_waiting": None,
                                         "last_error": None}  # a directory reads back
    mtimes = {p: p.stat().st_mtime_ns for p in (nas / PREFIX / "sha256").iterdir()}
    assert cli_json(home.home, "replicate")["verified"] == []
    assert {p: p.stat().st_mtime_ns for p in (nas / PREFIX / "sha256").iterdir()} == mtimes

    assert cli_json(home.home, "checkpoint")["sent"] == ["nas"]
    assert cli_json(home.home, "ledger", "verify", "--offsite")["ok"] is True
    # a share that is not mounted is an error, never a silent copy to the local disk
    shutil.rmtree(nas)
    gone = run_cli(home.home, "replicate")
    assert gone.exit_code == 9 and "not a directory" in " ".join(gone.stderr.split())


# -- a copy counts as safe only once its bytes were read back, where it was made -------------------


def stored_sha(endpoint: S3Endpoint, bucket: str, key: str) -> str:
    """The SHA-256 of the bytes the server holds, whatever checksum it stored with them (it
    keeps the one it was sent, and boto3 would refuse to hand over bytes that differ)."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session(
        aws_access_key_id=endpoint.access_key, aws_secret_access_key=endpoint.secret_key,
        region_name=endpoint.region,
    ).client("s3", endpoint_url=endpoint.url, config=Config(
        s3={"addressing_style": "path"}, response_checksum_validation="when_required"))
    return hashlib.sha256(client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


def _proof_home(tmp_path: Path, clips: Sequence[ClipFile], url: str, bucket: str,
                credentials: Path, **target: object) -> Home:
    """Clips ingested from a recorder in the dock folder; wipe after off-site verification,
    local copies evicted as soon as they are safe off-site (moto's failing WORM check not on
    schedule: see ``NO_WORM_JOB``)."""
    home = make_home(tmp_path, clips, recorder=tmp_path / "home" / "docks" / SERIAL,
                     config='wipe = "after-offsite-verify"\n\n[retention]\nlocal_keep = "0s"\n'
                            + NO_WORM_JOB)
    home.add_target(s3_target(url, bucket, credentials, **target))
    return home


def test_the_scheduled_offsite_audit_proves_every_copy_sent_unread_whatever_its_sample(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, bucket: str, credentials: Path
) -> None:
    # readback = false (the default): copies are sent, not proven, and let nothing go; the
    # daemon's off-site audit reads back all of them, not a sample of one, and then they do.
    home = _proof_home(tmp_path, clips, moto.url, bucket, credentials)
    home.edit_config(NO_WORM_JOB, NO_WORM_JOB + "audit_offsite_sample = 1\n")
    assert len(cli_json(home.home, "replicate")["verified"]) == 3
    assert home.target_status()["proven"] == 0
    assert cli_json(home.home, "retention")["evicted"] == []
    once = run_cli(home.home, "run", "--once")  # the jobs, as the daemon runs them
    assert once.exit_code == 0, once
    assert "job audit-offsite: 3 items re-read" in once.stderr, once.stderr
    assert home.target_status()["proven"] == 3
    evicted = cli_json(home.home, "retention")["evicted"]
    assert sorted(e["sha256"] for e in evicted) == sorted(home.shas)
    for clip in clips:
        read = [e["data"]["offsite"] for e in home.history(clip.sha256, "audited")
                if "offsite" in e["data"]]
        assert read == [{"offsite": "ok"}]


def test_copies_a_server_stored_damaged_never_let_the_local_copy_or_the_recorder_file_go(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    with FlippingProxy(moto.url) as proxy:
        home = _proof_home(tmp_path, clips, proxy.url, bucket, credentials)
        media = home.recorder / "DCIM" / "100MEDIA"
        # every object the server stores has one byte other than it was sent
        proxy.flip_request = object_puts("/sha256/")

        sent = cli_json(home.home, "replicate")
        assert sorted(v["sha256"] for v in sent["verified"]) == sorted(home.shas)  # as sent
        assert len(proxy.flipped()) == 3
        assert home.target_status()["proven"] == 0

        # the server's word alone lets nothing go: not the local copy, not the recorder's
        assert cli_json(home.home, "retention")["evicted"] == []
        # a redock, then the jobs: the off-site audit among them reads the copies back
        once = run_cli(home.home, "run", "--once")
        assert once.exit_code == 1 and "job audit-offsite failed" in once.stderr, once
        assert sorted(p.name for p in media.iterdir()) == sorted(c.path.name for c in clips)
        assert all(i["local"] for i in cli_json(home.home, "items")["items"])
        for clip in clips:
            [entry] = home.history(clip.sha256, "replicated")
            assert entry["data"]["read_back"] is False
            assert stored_sha(moto, bucket, item_key(clip.sha256)) != clip.sha256

        # reading back (the daemon's off-site audit, above) found every copy bad; each bad
        # version is remembered
        for clip in clips:
            assert "replica_mismatch" in home.flags(clip.sha256)
        bad = {r["item"]: r for r in catalog.replicas(home.home)}
        for clip in clips:
            [version] = versions(s3, bucket, item_key(clip.sha256))
            assert bad[clip.sha256]["state"] == "mismatch"
            assert bad[clip.sha256]["bad_versions"] == version["VersionId"]

        # the network heals: new objects, read back, and only then the local copies go
        proxy.flip_request = never
        fixed = cli_json(home.home, "replicate")
        assert sorted(v["sha256"] for v in fixed["verified"]) == sorted(home.shas)
        for clip in clips:
            entry = home.history(clip.sha256, "replicated")[-1]
            assert entry["data"]["read_back"] is True
            assert len(versions(s3, bucket, item_key(clip.sha256))) == 2  # the bad one kept
            assert download_sha(s3, bucket, item_key(clip.sha256)) == clip.sha256
        assert home.target_status()["proven"] == 3
        evicted = cli_json(home.home, "retention")["evicted"]
        assert sorted(e["sha256"] for e in evicted) == sorted(home.shas)
        assert cli_json(home.home, "ledger", "verify")["ok"] is True


@contextlib.contextmanager
def _found_bad(tmp_path: Path, clip: ClipFile, moto: S3Endpoint, bucket: str,
               credentials: Path) -> Iterator[tuple[Home, FaultProxy]]:
    """One clip whose only off-site copy the server stored damaged, and an audit that found
    it so; uploads go through a fault proxy the test steers."""
    with FlippingProxy(moto.url) as flipping:
        fault = FaultProxy(flipping.url)
        try:
            home = _proof_home(tmp_path, [clip], fault.url, bucket, credentials)
            flipping.flip_request = object_puts("/sha256/")
            cli_json(home.home, "replicate")
            flipping.flip_request = never
            assert run_cli(home.home, "audit", "--all", "--offsite", "--json").exit_code == 1
            yield home, fault
        finally:
            fault.close()


def test_a_repair_that_failed_or_was_killed_does_not_make_the_bad_object_good(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    clip = clips[0]
    with _found_bad(tmp_path, clip, moto, bucket, credentials) as (home, fault):
        # the repair fails: the server answers 500 to every upload of the item
        fault.rule = lambda method, path: ("500" if method == "PUT" and "/sha256/" in path
                                           else None)
        failed = run_cli(home.home, "replicate", "--json")
        assert failed.exit_code == 1 and failed.json()["failed"]
        fault.rule = lambda method, path: None
        # ...and a second one is killed half-way (what a crash leaves in the catalog)
        catalog.forge_replicas(home.home, state="uploading")

        repaired = cli_json(home.home, "replicate")
    assert [v["sha256"] for v in repaired["verified"]] == [clip.sha256]
    assert len(versions(s3, bucket, item_key(clip.sha256))) == 2, "a new object was written"
    assert download_sha(s3, bucket, item_key(clip.sha256)) == clip.sha256
    assert home.history(clip.sha256, "replicated")[-1]["data"]["read_back"] is True
    [row] = catalog.replicas(home.home)
    assert row["rewrite"] == 0 and row["proven_at"] is not None


def test_an_audit_during_an_outage_marks_nothing_bad_and_locks_still_follow_the_label(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, s3: S3Client, bucket: str,
    credentials: Path, proxy: FaultProxy
) -> None:
    clip = clips[0]
    home = _proof_home(tmp_path, [clip], proxy.url, bucket, credentials)
    cli_json(home.home, "replicate")

    proxy.rule = lambda method, path: "500"  # the server is down
    audit = run_cli(home.home, "audit", "--all", "--offsite", "--decode", "0", "--json")
    proxy.rule = lambda method, path: None

    assert audit.exit_code == 1, "an audit that could not read the copy back says so"
    [failure] = audit.json()["failures"]
    assert "not checked" in failure["problem"] and "mismatch" not in failure["problem"]
    assert "replica_mismatch" not in home.flags(clip.sha256)
    [row] = catalog.replicas(home.home)
    assert row["state"] == "verified" and row["rewrite"] == 0

    # a later audit reads it back and proves it; a case label then locks it for 30 years
    assert cli_json(home.home, "audit", "--all", "--offsite", "--decode", "0")["ok"] is True
    assert catalog.replicas(home.home)[0]["proven_at"] is not None
    cli_json(home.home, "label", clip.sha256, "--case", "2026-0042", "--party", "Li Wei")
    report = cli_json(home.home, "replicate")
    assert [e["sha256"] for e in report["locks_extended"]] == [clip.sha256]
    head = s3.head_object(Bucket=bucket, Key=item_key(clip.sha256))
    assert head["ObjectLockRetainUntilDate"] >= clip.recorded + EVIDENCE


def test_a_target_pointed_at_another_bucket_under_the_same_name_starts_again(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    home = _proof_home(tmp_path, clips[:2], moto.url, bucket, credentials, readback=True)
    assert len(cli_json(home.home, "replicate", "--limit", "1")["verified"]) == 1
    other = new_bucket(s3)
    home.edit_config(f'bucket = "{bucket}"', f'bucket = "{other}"')

    # the copy in the old bucket says nothing of the new one: nothing leaves the store
    assert cli_json(home.home, "retention")["evicted"] == []
    report = cli_json(home.home, "replicate")

    assert sorted(v["sha256"] for v in report["verified"]) == sorted(home.shas)
    for clip in clips[:2]:
        assert download_sha(s3, other, item_key(clip.sha256)) == clip.sha256
        assert home.history(clip.sha256, "replicated")[-1]["data"]["location"] == (
            f"s3:{moto.url}/{other}/{PREFIX}")
    assert sorted(e["sha256"] for e in cli_json(home.home, "retention")["evicted"]) == sorted(
        home.shas)


@contextlib.contextmanager
def mounted(mountpoint: Path, *source: str) -> Iterator[Path]:
    """``mount SOURCE... MOUNTPOINT`` for the block (a tmpfs of its own, or a bind mount)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting needs root")
    subprocess.run(["mount", *source, str(mountpoint)], check=True, capture_output=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)


TMPFS = ("-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs")


@pytest.mark.root
def test_a_nas_that_did_not_mount_gets_no_copies_and_lets_nothing_go(
    tmp_path: Path, clips: list[ClipFile]
) -> None:
    share, nas = tmp_path / "share", tmp_path / "nas"  # the NAS's export; its mount point
    share.mkdir()
    nas.mkdir()
    home = make_home(tmp_path, clips, recorder=tmp_path / "home" / "docks" / SERIAL,
                     config='wipe = "after-offsite-verify"\n\n[retention]\nlocal_keep = "0s"\n')
    home.add_target(f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                    f'prefix = "{PREFIX}"\n')
    media = home.recorder / "DCIM" / "100MEDIA"
    with mounted(share, *TMPFS):
        with mounted(nas, "--bind", str(share)):
            first = {v["sha256"]
                     for v in cli_json(home.home, "replicate", "--limit", "2")["verified"]}
        assert len(first) == 2
        [waiting] = [s for s in home.shas if s not in first]

        # the share did not mount: its mount point is an empty folder on the local disk
        down = run_cli(home.home, "replicate")
        assert down.exit_code == 9, down
        assert "same file system as the local store" in " ".join(down.stderr.split())
        # another share mounted there: it is not the share first used
        with mounted(nas, *TMPFS):
            other = run_cli(home.home, "replicate")
            assert other.exit_code == 9, other
            assert "no identity file" in " ".join(other.stderr.split())
            assert list(nas.iterdir()) == []
        # nor does the daemon start on it, nor a checkpoint land there; the waiting clip
        # stays in the store and on the recorder
        assert run_cli(home.home, "run", "--once").exit_code == 9
        assert run_cli(home.home, "checkpoint").exit_code != 0
        station = home.open()  # the daemon's checkpoint job, on a share gone since its start
        try:
            from ingestd.usecases.replicate import Replicator

            assert Replicator(station).checkpoint()["errors"]
        finally:
            station.close()
        assert list(nas.iterdir()) == [], "nothing was copied to the local disk"
        assert cli_json(home.home, "show", waiting)["item"]["local"]
        assert next(c.path.name for c in clips if c.sha256 == waiting) in {
            p.name for p in media.iterdir()}

        # the share back: the last clip goes there
        with mounted(nas, "--bind", str(share)):
            assert [v["sha256"] for v in cli_json(home.home, "replicate")["verified"]] == [waiting]
            assert sha256_of(nas / PREFIX / "sha256" / waiting) == waiting


def test_a_copy_found_bad_keeps_its_lock_in_step_with_the_label_while_its_repair_fails(
    tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint, s3: S3Client, bucket: str,
    credentials: Path
) -> None:
    clip = clips[0]
    with _found_bad(tmp_path, clip, moto, bucket, credentials) as (home, fault):
        [bad] = versions(s3, bucket, item_key(clip.sha256))

        cli_json(home.home, "label", clip.sha256, "--case", "2026-0042", "--party", "Li Wei")
        # uploads of the item are refused; everything else reaches the server
        fault.rule = lambda method, path: ("500" if method == "PUT" and "/sha256/" in path
                                           and "?" not in path else None)
        report = run_cli(home.home, "replicate", "--json")
    assert report.exit_code == 1 and report.json()["failed"]
    # the bad version is evidence of what happened: it stays locked as long as the case
    assert [e["sha256"] for e in report.json()["locks_extended"]] == [clip.sha256]
    head = s3.head_object(Bucket=bucket, Key=item_key(clip.sha256), VersionId=bad["VersionId"])
    assert head["ObjectLockRetainUntilDate"] >= clip.recorded + EVIDENCE
    [row] = catalog.replicas(home.home)
    assert row["rewrite"] == 1 and row["state"] != "verified"
