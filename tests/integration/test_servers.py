"""Smoke tests of the test-service harness (tests/support/servers.py).

Each server is exercised through boto3 / SQLAlchemy the way ingestd uses it: Object Lock
(COMPLIANCE retention, legal hold), multipart uploads, user metadata, and a PostgreSQL catalog on
a unix socket. The fixtures here are local to this file on purpose; the project's conftest.py
wraps the same context managers for the other tests.

A service that is not installed skips its tests locally, and fails them when ``CI`` is set, so
that a CI machine missing a package cannot pass quietly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.support import servers
from tests.support.servers import (
    S3Endpoint,
    ServiceUnavailable,
    ceph_rgw,
    moto_server,
    postgres,
    processes_mentioning,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

MiB = 1 << 20

_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------
# fixtures (session-scoped: each server starts once for this file)


def _unavailable(exc: ServiceUnavailable) -> NoReturn:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"service missing on CI: {exc}", pytrace=False)
    pytest.skip(str(exc))


@contextlib.contextmanager
def _service(cm: contextlib.AbstractContextManager[_T]) -> Iterator[_T]:
    """Enter a server's context manager; skip (or on CI fail) if it is not installed."""
    with contextlib.ExitStack() as stack:
        try:
            value = stack.enter_context(cm)
        except ServiceUnavailable as exc:
            _unavailable(exc)
        yield value


def _assert_gone(path: Path) -> None:
    """After a server's context exits: its files are removed and no process mentions them."""
    deadline = time.monotonic() + 5  # pg_ctl returns as the postmaster exits; allow reaping
    while (left := processes_mentioning(str(path))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes still running: {left}"
    assert not path.exists() or list(path.iterdir()) == [], f"files left in {path}"


def _socket_dir(url: str) -> Path:
    return Path(parse_qs(urlsplit(url).query)["host"][0])


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Endpoint]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def ceph_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    workdir = tmp_path_factory.mktemp("ceph")
    with _service(ceph_rgw(workdir)) as endpoint:
        yield endpoint
    _assert_gone(workdir)


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("pg")
    with _service(postgres(workdir)) as url:
        yield url
    _assert_gone(_socket_dir(url))
    _assert_gone(workdir)


@pytest.fixture(params=["moto", "ceph"])
def s3(request: pytest.FixtureRequest) -> S3Endpoint:
    endpoint: S3Endpoint = request.getfixturevalue(f"{request.param}_s3")
    return endpoint


def _lock_bucket(client: S3Client) -> str:
    bucket = f"lock-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return bucket


def _until(days: int = 1) -> dt.datetime:
    # Whole seconds: S3 keeps retain-until dates to the second.
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0)


def _error_code(exc: pytest.ExceptionInfo[ClientError]) -> str | None:
    return exc.value.response.get("Error", {}).get("Code")


_SMALL_PARTS = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)


# --------------------------------------------------------------------------------------------
# S3: moto and Ceph


def test_lock_bucket_is_versioned_with_object_lock(s3: S3Endpoint) -> None:
    client = s3.client()
    bucket = _lock_bucket(client)

    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    config = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert config["ObjectLockEnabled"] == "Enabled"


def test_compliance_retention_refuses_deleting_the_version(s3: S3Endpoint) -> None:
    client = s3.client()
    bucket = _lock_bucket(client)
    body = os.urandom(64 * 1024)
    until = _until()

    put = client.put_object(
        Bucket=bucket,
        Key="clip.mp4",
        Body=body,
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    version = put["VersionId"]

    head = client.head_object(Bucket=bucket, Key="clip.mp4", VersionId=version)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=bucket, Key="clip.mp4", VersionId=version)
    assert _error_code(refused) == "AccessDenied"
    # COMPLIANCE cannot be bypassed, not even with the governance bypass header.
    with pytest.raises(ClientError) as refused:
        client.delete_object(
            Bucket=bucket, Key="clip.mp4", VersionId=version, BypassGovernanceRetention=True
        )
    assert _error_code(refused) == "AccessDenied"
    # A plain delete only hides the object behind a delete marker; the version stays intact.
    assert client.delete_object(Bucket=bucket, Key="clip.mp4")["DeleteMarker"] is True
    got = client.get_object(Bucket=bucket, Key="clip.mp4", VersionId=version)["Body"].read()
    assert got == body


@pytest.mark.parametrize(
    "s3",
    [
        pytest.param(
            "moto",
            marks=pytest.mark.xfail(
                strict=True,
                raises=pytest.fail.Exception,  # "DID NOT RAISE"
                reason="moto accepts shortening a COMPLIANCE retention",
            ),
        ),
        "ceph",
    ],
    indirect=True,
)
def test_compliance_retention_can_be_extended_but_not_shortened(s3: S3Endpoint) -> None:
    client = s3.client()
    bucket = _lock_bucket(client)
    until = _until()
    version = client.put_object(
        Bucket=bucket,
        Key="k",
        Body=b"x",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )["VersionId"]

    later = until + dt.timedelta(days=1)
    client.put_object_retention(
        Bucket=bucket,
        Key="k",
        VersionId=version,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later},
    )
    head = client.head_object(Bucket=bucket, Key="k", VersionId=version)
    assert head["ObjectLockRetainUntilDate"] == later

    with pytest.raises(ClientError) as refused:
        client.put_object_retention(
            Bucket=bucket,
            Key="k",
            VersionId=version,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
        )
    assert _error_code(refused) == "AccessDenied"
    head = client.head_object(Bucket=bucket, Key="k", VersionId=version)
    assert head["ObjectLockRetainUntilDate"] == later


def test_legal_hold_refuses_delete_until_released(s3: S3Endpoint) -> None:
    client = s3.client()
    bucket = _lock_bucket(client)
    version = client.put_object(
        Bucket=bucket, Key="held", Body=b"evidence", ObjectLockLegalHoldStatus="ON"
    )["VersionId"]

    head = client.head_object(Bucket=bucket, Key="held", VersionId=version)
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    hold = client.get_object_legal_hold(Bucket=bucket, Key="held", VersionId=version)
    assert hold["LegalHold"]["Status"] == "ON"
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=bucket, Key="held", VersionId=version)
    assert _error_code(refused) == "AccessDenied"
    assert client.get_object(Bucket=bucket, Key="held", VersionId=version)["Body"].read() == (
        b"evidence"
    )

    # It was the hold that refused: released, the version (with no retention) can be deleted.
    client.put_object_legal_hold(
        Bucket=bucket, Key="held", VersionId=version, LegalHold={"Status": "OFF"}
    )
    client.delete_object(Bucket=bucket, Key="held", VersionId=version)
    with pytest.raises(ClientError) as gone:
        client.head_object(Bucket=bucket, Key="held", VersionId=version)
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_multipart_upload_of_12_mib_then_locked(s3: S3Endpoint) -> None:
    client = s3.client()
    bucket = _lock_bucket(client)
    data = os.urandom(12 * MiB)
    digest = hashlib.sha256(data).hexdigest()

    client.upload_fileobj(
        io.BytesIO(data),
        bucket,
        "big.mp4",
        Config=_SMALL_PARTS,
        ExtraArgs={"Metadata": {"sha256": digest}, "ContentType": "video/mp4"},
    )

    head = client.head_object(Bucket=bucket, Key="big.mp4")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # it really went up in three parts
    assert head["Metadata"] == {"sha256": digest}
    assert head["ContentType"] == "video/mp4"
    body = client.get_object(Bucket=bucket, Key="big.mp4")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest

    # Retention put on the completed version holds (see the xfail test below for why the
    # lock cannot go with the upload itself on these servers).
    version = head["VersionId"]
    until = _until()
    client.put_object_retention(
        Bucket=bucket,
        Key="big.mp4",
        VersionId=version,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
    )
    head = client.head_object(Bucket=bucket, Key="big.mp4", VersionId=version)
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("COMPLIANCE", until)
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=bucket, Key="big.mp4", VersionId=version)
    assert _error_code(refused) == "AccessDenied"


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="moto 5.2 and Ceph 16.2 (Debian 12) ignore the Object "
    "Lock headers of CreateMultipartUpload: the completed object is unlocked",
)
def test_lock_headers_on_a_multipart_upload_lock_the_object(s3: S3Endpoint) -> None:
    client = s3.client()
    bucket = _lock_bucket(client)
    until = _until()

    client.upload_fileobj(
        io.BytesIO(os.urandom(6 * MiB)),
        bucket,
        "big",
        Config=_SMALL_PARTS,
        ExtraArgs={"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until},
    )

    head = client.head_object(Bucket=bucket, Key="big")
    if not head["ETag"].strip('"').endswith("-2"):
        pytest.fail(f"not a two-part upload: ETag {head['ETag']}")  # not the expected failure
    assert head.get("ObjectLockMode") == "COMPLIANCE"


def test_user_metadata_round_trips(s3: S3Endpoint) -> None:
    client = s3.client()
    bucket = _lock_bucket(client)
    metadata = {
        "sha256": hashlib.sha256(b"clip").hexdigest(),
        "recorder-serial": "BWC-000123",
        "recorded-at": "2026-01-02T03:04:05Z",
        "officer": "Badge 4711",
    }

    client.put_object(
        Bucket=bucket,
        Key="clip",
        Body=b"clip",
        Metadata=metadata,
        ContentType="video/mp4",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=_until(),
    )

    head = client.head_object(Bucket=bucket, Key="clip")
    assert head["Metadata"] == metadata
    assert head["ContentType"] == "video/mp4"
    assert head["ContentLength"] == 4
    got = client.get_object(Bucket=bucket, Key="clip")
    assert got["Metadata"] == metadata
    assert got["Body"].read() == b"clip"


# --------------------------------------------------------------------------------------------
# PostgreSQL


def test_postgres_create_insert_select(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    table = sa.Table(
        f"items_{uuid.uuid4().hex[:8]}",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    recorded = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    try:
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(
                table.insert(), [{"sha256": "ab" * 32, "size": 3 << 30, "recorded_at": recorded}]
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.sha256, table.c.size, table.c.recorded_at))
            assert [tuple(r) for r in rows] == [("ab" * 32, 3 << 30, recorded)]
            where = conn.execute(
                sa.text(
                    "select current_database(), inet_server_addr(), "
                    "current_setting('server_version_num')"
                )
            ).one()
        assert where[0] == "ingestd_test"
        assert where[1] is None  # connected over the unix socket, not TCP
        assert int(where[2]) >= 150000
    finally:
        engine.dispose()


def test_postgres_has_no_tcp_listener(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            listen = conn.execute(sa.text("show listen_addresses")).scalar_one()
        assert listen == ""
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# the harness itself: missing programs, teardown


def test_missing_ceph_is_reported_not_hung(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(ServiceUnavailable, match="ceph-mon.*radosgw") as missing:
        with ceph_rgw(tmp_path / "work"):
            pass
    assert "apt-get install --no-install-recommends radosgw ceph-common ceph-mon ceph-osd" in (
        str(missing.value)
    )
    assert not (tmp_path / "work").exists()


def test_missing_postgres_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(servers, "POSTGRES_BIN_GLOB", str(tmp_path / "none" / "*" / "bin"))
    with pytest.raises(ServiceUnavailable, match="initdb"):
        with postgres(tmp_path / "work"):
            pass
    assert not (tmp_path / "work").exists()


def test_ceph_is_stopped_and_removed_when_the_body_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with _service(ceph_rgw(tmp_path)) as endpoint:
            running = processes_mentioning(str(tmp_path))
            assert len(running) == 3, running  # monitor, OSD, gateway
            raise RuntimeError("boom")
    _assert_gone(tmp_path)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(endpoint.url, timeout=5)


def test_postgres_is_stopped_and_removed_when_the_body_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with _service(postgres(tmp_path)) as url:
            assert processes_mentioning(str(_socket_dir(url)))
            raise RuntimeError("boom")
    _assert_gone(_socket_dir(url))
    _assert_gone(tmp_path)


def test_moto_stops_listening_on_exit(moto_s3: S3Endpoint) -> None:
    bucket = f"kept-{uuid.uuid4().hex[:12]}"
    moto_s3.client().create_bucket(Bucket=bucket)

    with moto_server() as endpoint:
        # Same process, same moto state: the session's server is not wiped by a second one.
        names = [b["Name"] for b in endpoint.client().list_buckets()["Buckets"]]
        assert bucket in names
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(endpoint.url, timeout=5)
    moto_s3.client().head_bucket(Bucket=bucket)
