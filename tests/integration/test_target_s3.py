"""S3Target against real S3 servers: moto in server mode, and Ceph RGW where it is installed.

Faults are injected by a small HTTP(S) proxy on 127.0.0.1 between the target and moto: it
answers 500 or drops the connection for the next N requests, tampers with requests, counts
what passes and records which access key signed each request.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import logging
import os
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError
from conftest import ClipFile, random_file
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ingestd.config import S3TargetSettings
from ingestd.errors import ObjectDamaged, ReplicaMismatch, TargetError, TargetUnreachable
from ingestd.integrity.hashing import BufferPool
from ingestd.targets import Lock, Target, s3
from ingestd.targets.s3 import S3Target
from tests.support.damage import flipped
from tests.support.flipping_proxy import FlippingProxy, RelayServer, never, object_puts
from tests.support.servers import S3Endpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
SMALL = 100_000
BIG = 12 * MiB  # three parts of 5 MiB (the smallest part S3 allows) with the threshold below


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClipFile]:
    folder = tmp_path_factory.mktemp("blobs")
    return {"small": random_file(folder / f"blob-{SMALL}", SMALL),
            "big": random_file(folder / f"blob-{BIG}", BIG)}


@pytest.fixture
def small(tmp_path: Path) -> ClipFile:
    """Fresh bytes for each test, so that tests sharing a bucket prefix cannot meet."""
    return random_file(tmp_path / f"blob-{SMALL}", SMALL)


@pytest.fixture(scope="module")
def moto_client(moto: S3Endpoint) -> S3Client:
    return moto.client()


def _credentials_file(folder: Path, endpoint: S3Endpoint, profile: str = "default") -> Path:
    path = folder / f"credentials-{uuid.uuid4().hex[:8]}"
    path.write_text(
        f"[{profile}]\naws_access_key_id = {endpoint.access_key}\n"
        f"aws_secret_access_key = {endpoint.secret_key}\n"
    )
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def moto_credentials(tmp_path_factory: pytest.TempPathFactory, moto: S3Endpoint) -> Path:
    return _credentials_file(tmp_path_factory.mktemp("creds"), moto)


def _bucket(client: S3Client, *, lock: bool) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    if lock:
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def lock_bucket(moto_client: S3Client) -> str:
    return _bucket(moto_client, lock=True)


@pytest.fixture
def plain_bucket(moto_client: S3Client) -> str:
    return _bucket(moto_client, lock=False)


def make_target(url: str, bucket: str, credentials: Path, **options: Any) -> S3Target:
    settings: dict[str, Any] = {
        "name": "offsite",
        "bucket": bucket,
        "endpoint_url": url,
        "prefix": "station-1",
        "object_lock": True,
        "credentials_file": credentials,
        "multipart_threshold": 5 * MiB,
        "multipart_chunksize": 5 * MiB,
        "max_concurrency": 2,
        "max_attempts": 1,  # each request once: the retry tests say how many they want
        "connect_timeout": 2.0,
        "read_timeout": 10.0,
    }
    settings.update(options)
    # not configuration keys: what the tests wait for, and what an older Ceph needs over HTTPS
    knobs = {k: settings.pop(k) for k in _KNOBS if k in settings}
    return S3Target(S3TargetSettings(**settings), **knobs)


_KNOBS = ("connect_timeout", "read_timeout", "request_checksums")


def days(n: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=n)


# -- a fault-injecting proxy --------------------------------------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}
Tamper = Callable[[str, str, dict[str, str], bytes], tuple[dict[str, str], bytes]]


class FaultProxy:
    """Relays HTTP(S) on 127.0.0.1 to an upstream S3 server, with faults on demand."""

    def __init__(self, upstream: str, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname and parts.port
        self._upstream = (parts.hostname, parts.port)
        self._guard = threading.Lock()
        self.fail_next = 0
        self.fail_mode = "500"  # or "drop": close the connection without an answer
        self.failed = 0
        self.requests: list[tuple[str, str]] = []
        self.access_keys: list[str] = []
        self.tamper: Tamper | None = None
        #: requests answered 200 without reaching the server (a server that ignores them)
        self.swallow: Callable[[str, str], bool] = lambda method, path: False
        self._relay_server = RelayServer(self._relay, tls=tls)
        self.url = self._relay_server.url

    def close(self) -> None:
        self._relay_server.close()

    def writes(self, needle: str) -> list[tuple[str, str]]:
        """PUT and POST requests whose path contains ``needle``."""
        return [(m, p) for m, p in self.requests if m in ("PUT", "POST") and needle in p]

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        signed = re.search(r"Credential=([^/]+)/", handler.headers.get("Authorization", ""))
        with self._guard:
            self.requests.append((method, path))
            if signed:
                self.access_keys.append(signed.group(1))
            fail = self.fail_next > 0
            if fail:
                self.fail_next -= 1
                self.failed += 1
        if fail and self.fail_mode == "drop":
            handler.close_connection = True
        elif fail:
            error = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
            _answer(handler, 500, error, {"Content-Type": "application/xml"})
        elif self.swallow(method, path):
            _answer(handler, 200, b"", {})
        else:
            self._forward(handler, body)

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        method, path = handler.command, handler.path
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        if self.tamper is not None:
            headers, body = self.tamper(method, path, headers, body)
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        if body or method in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            upstream.request(method, path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        passed = {
            key: value
            for key, value in answer.getheaders()
            if key.lower() not in _HOP_BY_HOP | {"content-length", "server", "date"}
        }
        if method == "HEAD":  # no body, but the size of the object it describes
            passed["Content-Length"] = answer.getheader("Content-Length") or "0"
        _answer(handler, answer.status, data, passed)


def _answer(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
) -> None:
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    if "Content-Length" not in headers:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


@pytest.fixture
def proxy(moto: S3Endpoint) -> Iterator[FaultProxy]:
    relay = FaultProxy(moto.url)
    yield relay
    relay.close()


# -- check() ----------------------------------------------------------------------------------


def test_target_satisfies_the_protocol(moto: S3Endpoint, moto_credentials: Path) -> None:
    target: Target = make_target(moto.url, "any", moto_credentials)
    assert target.name == "offsite"
    assert target.required is True


def test_check_accepts_a_bucket_with_object_lock(
    moto: S3Endpoint,
    moto_credentials: Path,
    moto_client: S3Client,
    lock_bucket: str,
    small: ClipFile,
) -> None:
    """What a passed check vouches for: copies sent now are kept under COMPLIANCE retention,
    as the server itself reports to another client."""
    target = make_target(moto.url, lock_bucket, moto_credentials)
    target.check()
    until = days(2)
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=until))
    head = moto_client.head_object(Bucket=lock_bucket, Key=remote.key)
    assert head.get("ObjectLockMode") == "COMPLIANCE", "not locked"
    assert head["ObjectLockRetainUntilDate"] >= until.replace(microsecond=0)
    assert remote.retain_until == head["ObjectLockRetainUntilDate"]


def test_check_refuses_object_lock_target_on_a_bucket_without_it(
    moto: S3Endpoint, moto_credentials: Path, plain_bucket: str
) -> None:
    target = make_target(moto.url, plain_bucket, moto_credentials)
    with pytest.raises(TargetError) as caught:
        target.check()
    message = str(caught.value)
    assert "Object Lock" in message and plain_bucket in message and "'offsite'" in message
    assert caught.value.exit_code == 9
    # without object_lock the same bucket is fine
    make_target(moto.url, plain_bucket, moto_credentials, object_lock=False).check()


def test_check_refuses_a_missing_bucket(moto: S3Endpoint, moto_credentials: Path) -> None:
    with pytest.raises(TargetError, match="missing or not accessible"):
        make_target(moto.url, "no-such-bucket-here", moto_credentials).check()


# -- uploads ----------------------------------------------------------------------------------


def test_small_upload_carries_hash_checksum_and_compliance_lock(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, lock_bucket: str,
    small: ClipFile
) -> None:
    target = make_target(moto.url, lock_bucket, moto_credentials)
    until = days(30)
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=until))

    key = f"station-1/sha256/{small.sha256}"
    assert remote.key == key and remote.size == small.size and remote.sha256 == small.sha256
    assert remote.retain_until is not None and remote.retain_until >= until
    assert remote.legal_hold is False and remote.version_id
    head = moto_client.head_object(Bucket=lock_bucket, Key=key, ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == small.sha256
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(small.sha256)).decode()
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ContentLength"] == small.size
    assert target.head_item(small.sha256) == remote
    assert target.rehash_item(small.sha256) == small.sha256


def test_multipart_upload_keeps_the_whole_file_hash(
    moto: S3Endpoint,
    moto_credentials: Path,
    moto_client: S3Client,
    lock_bucket: str,
    blobs: dict[str, ClipFile],
) -> None:
    big = blobs["big"]
    target = make_target(moto.url, lock_bucket, moto_credentials)
    remote = target.put_item(big.sha256, big.path, big.size, Lock(retain_until=days(10)))

    head = moto_client.head_object(Bucket=lock_bucket, Key=remote.key, ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"'), "three 5 MiB parts"
    assert head["Metadata"]["sha256"] == big.sha256
    # the server's multipart SHA-256 is composite, not the file's: it must not be taken for it
    assert head.get("ChecksumSHA256") != base64.b64encode(bytes.fromhex(big.sha256)).decode()
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert remote.sha256 == big.sha256 and remote.size == big.size
    assert target.rehash_item(big.sha256) == big.sha256
    assert moto_client.list_multipart_uploads(Bucket=lock_bucket).get("Uploads", []) == []


def test_object_without_lock_target(
    moto: S3Endpoint, moto_credentials: Path, plain_bucket: str, small: ClipFile
) -> None:
    target = make_target(moto.url, plain_bucket, moto_credentials, object_lock=False, prefix="")
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)))
    assert remote.key == f"sha256/{small.sha256}"
    assert remote.retain_until is None and remote.sha256 == small.sha256
    # set_lock on a target without Object Lock reports, truthfully, no protection
    assert target.set_lock(small.sha256, Lock(retain_until=days(5), legal_hold=True)) == remote


def test_server_side_encryption_is_requested(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, lock_bucket: str,
    small: ClipFile
) -> None:
    target = make_target(moto.url, lock_bucket, moto_credentials, sse="AES256")
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)))
    head = moto_client.head_object(Bucket=lock_bucket, Key=remote.key)
    assert head["ServerSideEncryption"] == "AES256"


def test_reput_of_a_good_object_uploads_nothing(
    moto_credentials: Path, moto_client: S3Client, lock_bucket: str, proxy: FaultProxy,
    small: ClipFile
) -> None:
    target = make_target(proxy.url, lock_bucket, moto_credentials)
    lock = Lock(retain_until=days(3))
    first = target.put_item(small.sha256, small.path, small.size, lock)
    assert len(proxy.writes(small.sha256)) == 1
    modified = moto_client.head_object(Bucket=lock_bucket, Key=first.key)["LastModified"]

    again = target.put_item(small.sha256, small.path, small.size, lock)

    assert proxy.writes(small.sha256) == proxy.writes(small.sha256)[:1], "no second upload"
    assert again.version_id == first.version_id
    assert moto_client.head_object(Bucket=lock_bucket, Key=first.key)["LastModified"] == modified
    versions = moto_client.list_object_versions(Bucket=lock_bucket, Prefix=first.key)
    assert len(versions["Versions"]) == 1


def test_reput_restarts_cleanly_after_a_killed_multipart_upload(
    moto: S3Endpoint,
    moto_credentials: Path,
    moto_client: S3Client,
    lock_bucket: str,
    blobs: dict[str, ClipFile],
) -> None:
    big = blobs["big"]
    key = f"station-1/sha256/{big.sha256}"
    # what a replication killed half-way leaves: an upload with one part and no object
    stale = moto_client.create_multipart_upload(Bucket=lock_bucket, Key=key)
    with big.path.open("rb") as handle:
        moto_client.upload_part(
            Bucket=lock_bucket,
            Key=key,
            UploadId=stale["UploadId"],
            PartNumber=1,
            Body=handle.read(5 * MiB),
        )
    target = make_target(moto.url, lock_bucket, moto_credentials)
    assert target.head_item(big.sha256) is None

    remote = target.put_item(big.sha256, big.path, big.size, Lock(retain_until=days(1)))

    assert remote.sha256 == big.sha256
    assert moto_client.list_multipart_uploads(Bucket=lock_bucket).get("Uploads", []) == []
    assert target.rehash_item(big.sha256) == big.sha256


def test_damaged_source_is_not_replicated(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, tmp_path: Path, small: ClipFile,
    proxy: FaultProxy
) -> None:
    damaged = tmp_path / "damaged"
    data = flipped(small.path.read_bytes(), 10)
    damaged.write_bytes(data)
    target = make_target(proxy.url, lock_bucket, moto_credentials)
    with pytest.raises(ObjectDamaged) as caught:
        target.put_item(small.sha256, damaged, small.size, Lock(retain_until=days(1)))
    found = hashlib.sha256(data).hexdigest()
    assert str(caught.value) == (
        f"{damaged} is {small.size} bytes with SHA-256 {found}, expected {small.size} bytes "
        f"with {small.sha256}: not replicating a damaged copy")
    assert proxy.writes(small.sha256) == [], "the bytes are checked before the PUT is sent"
    assert target.head_item(small.sha256) is None


@pytest.mark.parametrize("where", ["first part", "last part"])
def test_a_damaged_source_never_completes_a_multipart_upload(
    moto_credentials: Path, moto_client: S3Client, lock_bucket: str, tmp_path: Path,
    blobs: dict[str, ClipFile], proxy: FaultProxy, where: str
) -> None:
    """The file is hashed as its parts are read, in order: the damage is only known once the
    last part has been read, after earlier parts were sent. The upload must still never be
    completed, and nothing may be left that could pass for a copy."""
    big = blobs["big"]
    damaged = tmp_path / "damaged"
    data = flipped(big.path.read_bytes(), 10 if where == "first part" else big.size - 10)
    damaged.write_bytes(data)
    target = make_target(proxy.url, lock_bucket, moto_credentials)

    with pytest.raises(ObjectDamaged, match="not replicating a damaged copy") as caught:
        target.put_item(big.sha256, damaged, big.size, Lock(retain_until=days(1)))

    assert f"SHA-256 {hashlib.sha256(data).hexdigest()}" in str(caught.value)
    key = f"station-1/sha256/{big.sha256}"
    assert [r for r in proxy.requests if r[0] == "POST" and "uploadId=" in r[1]] == [], (
        "no CompleteMultipartUpload")
    assert target.head_item(big.sha256) is None
    assert moto_client.list_object_versions(Bucket=lock_bucket, Prefix=key).get(
        "Versions", []) == []
    assert moto_client.list_multipart_uploads(Bucket=lock_bucket).get("Uploads", []) == [], (
        "the upload is aborted")
    # the good bytes go through afterwards
    remote = target.put_item(big.sha256, big.path, big.size, Lock(retain_until=days(1)))
    assert remote.sha256 == big.sha256 and target.rehash_item(big.sha256) == big.sha256


@pytest.mark.parametrize("change", ["one byte short", "one byte more", "missing"])
def test_a_source_of_the_wrong_size_is_not_replicated(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, tmp_path: Path,
    blobs: dict[str, ClipFile], change: str
) -> None:
    big = blobs["big"]
    source = tmp_path / "source"
    data = big.path.read_bytes()
    if change == "one byte short":
        source.write_bytes(data[:-1])
    elif change == "one byte more":
        source.write_bytes(data + b"\0")
    target = make_target(moto.url, lock_bucket, moto_credentials)
    with pytest.raises(ObjectDamaged) as caught:
        target.put_item(big.sha256, source, big.size, Lock(retain_until=days(1)))
    message = str(caught.value)
    assert str(source) in message
    assert {"one byte short": f"ends after {big.size - 1} bytes",
            "one byte more": f"has more than {big.size} bytes",
            "missing": "cannot read"}[change] in message
    assert target.head_item(big.sha256) is None


# -- objects replaced or damaged behind our back -------------------------------------------------


def test_object_replaced_with_other_bytes_is_seen_and_repaired(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, plain_bucket: str,
    small: ClipFile
) -> None:
    target = make_target(moto.url, plain_bucket, moto_credentials, object_lock=False)
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=None))
    moto_client.put_object(Bucket=plain_bucket, Key=remote.key, Body=b"not the evidence")

    seen = target.head_item(small.sha256)
    assert seen is not None and seen.size != small.size and seen.sha256 is None
    assert target.rehash_item(small.sha256) != small.sha256

    repaired = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=None))
    assert repaired.sha256 == small.sha256 and repaired.size == small.size
    assert target.rehash_item(small.sha256) == small.sha256


def test_forged_metadata_is_caught_by_rehash(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, plain_bucket: str,
    small: ClipFile
) -> None:
    target = make_target(moto.url, plain_bucket, moto_credentials, object_lock=False)
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=None))
    forged = os.urandom(small.size)  # same size, and metadata claiming the evidence's hash
    moto_client.put_object(
        Bucket=plain_bucket, Key=remote.key, Body=forged, Metadata={"sha256": small.sha256}
    )

    seen = target.head_item(small.sha256)
    assert seen is not None and seen.sha256 == small.sha256, "metadata alone cannot tell"
    assert target.rehash_item(small.sha256) == hashlib.sha256(forged).hexdigest()


def test_forged_metadata_is_caught_by_a_full_object_checksum(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, plain_bucket: str,
    small: ClipFile
) -> None:
    target = make_target(moto.url, plain_bucket, moto_credentials, object_lock=False)
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=None))
    forged = os.urandom(small.size)
    # botocore computes the true SHA-256 of the forged bytes; the metadata lies
    moto_client.put_object(
        Bucket=plain_bucket,
        Key=remote.key,
        Body=forged,
        Metadata={"sha256": small.sha256},
        ChecksumAlgorithm="SHA256",
    )
    seen = target.head_item(small.sha256)
    assert seen is not None and seen.sha256 == hashlib.sha256(forged).hexdigest()
    # and put_item does not take it for a good copy: it uploads the evidence again
    repaired = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=None))
    assert repaired.sha256 == small.sha256
    assert target.rehash_item(small.sha256) == small.sha256


def _set_header(name: str, value: str, needle: str) -> Tamper:
    def tamper(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[dict[str, str], bytes]:
        if method == "PUT" and needle in path:
            headers = {k: v for k, v in headers.items() if k.lower() != name}
            headers[name] = value
        return headers, body

    return tamper


def _flip_a_byte(needle: str) -> Tamper:
    def tamper(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[dict[str, str], bytes]:
        if method == "PUT" and needle in path:
            body = flipped(body)
        return headers, body

    return tamper


def test_upload_verification_refuses_a_server_that_stored_other_metadata(
    moto_credentials: Path, lock_bucket: str, proxy: FaultProxy, small: ClipFile
) -> None:
    proxy.tamper = _set_header("x-amz-meta-sha256", "0" * 64, small.sha256)
    target = make_target(proxy.url, lock_bucket, moto_credentials)
    with pytest.raises(TargetError, match="replica mismatch") as caught:
        target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)))
    assert small.sha256 in str(caught.value) and lock_bucket in str(caught.value)
    assert len(proxy.writes(small.sha256)) == 1, "a mismatch is reported, not retried"


def test_bytes_damaged_in_transit_are_caught_by_readback(
    moto_credentials: Path, plain_bucket: str, proxy: FaultProxy, small: ClipFile
) -> None:
    """moto stores a body whose ChecksumSHA256 is wrong: only reading back tells."""
    proxy.tamper = _flip_a_byte(small.sha256)
    trusting = make_target(proxy.url, plain_bucket, moto_credentials, object_lock=False)
    remote = trusting.put_item(small.sha256, small.path, small.size, Lock(retain_until=None))
    assert remote.sha256 == small.sha256  # what the server says...
    assert trusting.rehash_item(small.sha256) != small.sha256  # ...is not what it holds

    careful = make_target(
        proxy.url, plain_bucket, moto_credentials, object_lock=False, readback=True, prefix="rb"
    )
    with pytest.raises(TargetError, match="replica mismatch: object reads back as"):
        careful.put_item(small.sha256, small.path, small.size, Lock(retain_until=None))


def test_every_request_body_is_signed_with_its_own_sha256_over_http(
    moto_credentials: Path, lock_bucket: str, proxy: FaultProxy, small: ClipFile,
    blobs: dict[str, ClipFile]
) -> None:
    """Over plain HTTP each PUT and each part carries the SHA-256 of its body in its
    signature, which a SigV4 server checks before accepting it: parts need no second
    checksum for the server to refuse one damaged in transit."""
    sent: list[tuple[str, str, bytes]] = []

    def record(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[dict[str, str], bytes]:
        if method == "PUT" and "/sha256/" in path and ("?" not in path or "partNumber=" in path):
            signed = {k.lower(): v for k, v in headers.items()}["x-amz-content-sha256"]
            sent.append((path, signed, body))
        return headers, body

    proxy.tamper = record
    target = make_target(proxy.url, lock_bucket, moto_credentials)
    for blob in (small, blobs["big"]):
        target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(1)))

    assert [p for p, _, _ in sent if "partNumber=" not in p] == [
        f"/{lock_bucket}/station-1/sha256/{small.sha256}"]
    assert len([p for p, _, _ in sent if "partNumber=" in p]) == 3
    for path, signed, body in sent:
        assert signed == hashlib.sha256(body).hexdigest(), path


# -- retries ----------------------------------------------------------------------------------


def test_transient_500s_are_retried_request_by_request(
    moto_credentials: Path, lock_bucket: str, proxy: FaultProxy, small: ClipFile
) -> None:
    target = make_target(proxy.url, lock_bucket, moto_credentials, max_attempts=4)
    proxy.fail_next = 3
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)))
    assert proxy.failed == 3 and remote.sha256 == small.sha256
    # the failed HEAD was sent again (max_attempts in all) until answered; then the upload
    first = proxy.requests[0]
    assert first[0] == "HEAD" and small.sha256 in first[1]
    assert proxy.requests[:4] == [first] * 4
    assert proxy.requests[4] == ("PUT", first[1])


def test_persistent_500s_give_target_error_then_recovery(
    moto_credentials: Path, lock_bucket: str, proxy: FaultProxy, small: ClipFile
) -> None:
    target = make_target(proxy.url, lock_bucket, moto_credentials, max_attempts=3)
    proxy.fail_next = 1000
    started = time.monotonic()
    with pytest.raises(TargetUnreachable) as caught:
        target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)))
    assert time.monotonic() - started < 5
    assert proxy.failed == 3, "max_attempts in all: no second layer of retries around them"
    message = str(caught.value)
    assert "'offsite'" in message and lock_bucket in message and small.sha256 in message
    assert "HTTP 500" in message
    assert "testing" not in message.replace("'offsite'", "")  # no access key or secret

    proxy.fail_next = 0  # the server is back
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)))
    assert remote.sha256 == small.sha256


def test_dropped_connections_are_retried(
    moto_credentials: Path, lock_bucket: str, proxy: FaultProxy, blobs: dict[str, ClipFile]
) -> None:
    big = blobs["big"]
    target = make_target(proxy.url, lock_bucket, moto_credentials, max_attempts=4)
    proxy.fail_mode = "drop"
    proxy.fail_next = 2
    remote = target.put_item(big.sha256, big.path, big.size, Lock(retain_until=days(1)))
    assert proxy.failed == 2 and remote.sha256 == big.sha256
    proxy.fail_next = 1
    assert target.rehash_item(big.sha256) == big.sha256


def test_unreachable_server_gives_target_error(
    moto_credentials: Path, lock_bucket: str, small: ClipFile
) -> None:
    with socket_closed_port() as port:
        target = make_target(f"http://127.0.0.1:{port}", lock_bucket, moto_credentials)
        started = time.monotonic()
        with pytest.raises(TargetError, match="cannot reach bucket"):
            target.check()
        with pytest.raises(TargetError, match="cannot replicate item"):
            target.put_item(small.sha256, small.path, small.size, Lock(retain_until=None))
        assert time.monotonic() - started < 10


class socket_closed_port:
    """A port on 127.0.0.1 that nothing listens on (bound, never listening)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port: int = self._sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


# -- Object Lock --------------------------------------------------------------------------------


def test_compliance_retention_refuses_deleting_the_version(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, lock_bucket: str,
    small: ClipFile
) -> None:
    target = make_target(moto.url, lock_bucket, moto_credentials)
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)))
    assert remote.version_id
    with pytest.raises(ClientError) as caught:
        moto_client.delete_object(Bucket=lock_bucket, Key=remote.key, VersionId=remote.version_id)
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    assert target.rehash_item(small.sha256) == small.sha256


def test_legal_hold_refuses_deleting_and_can_be_released(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, lock_bucket: str,
    small: ClipFile
) -> None:
    target = make_target(moto.url, lock_bucket, moto_credentials)
    held = target.put_item(
        small.sha256, small.path, small.size, Lock(retain_until=None, legal_hold=True)
    )
    assert held.legal_hold is True and held.retain_until is None
    with pytest.raises(ClientError):
        moto_client.delete_object(Bucket=lock_bucket, Key=held.key, VersionId=held.version_id or "")

    released = target.set_lock(small.sha256, Lock(retain_until=None, legal_hold=False))
    assert released.legal_hold is False
    head = moto_client.head_object(Bucket=lock_bucket, Key=held.key)
    assert head.get("ObjectLockLegalHoldStatus") == "OFF"


def test_set_lock_extends_and_never_shortens(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, lock_bucket: str,
    small: ClipFile
) -> None:
    target = make_target(moto.url, lock_bucket, moto_credentials)
    first = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(20)))
    assert first.retain_until is not None

    # moto itself would let a COMPLIANCE date be shortened: the target must not ask
    shorter = target.set_lock(small.sha256, Lock(retain_until=days(5)))
    assert shorter.retain_until == first.retain_until
    head = moto_client.head_object(Bucket=lock_bucket, Key=first.key)
    assert head["ObjectLockRetainUntilDate"] == first.retain_until

    wanted = days(400) + timedelta(microseconds=1234)
    longer = target.set_lock(small.sha256, Lock(retain_until=wanted, legal_hold=True))
    assert longer.retain_until is not None and longer.retain_until >= wanted
    assert longer.retain_until - wanted < timedelta(seconds=1)
    assert longer.legal_hold is True and longer.version_id == first.version_id

    # a re-put with an older lock keeps the longer one too
    again = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)))
    assert again.retain_until == longer.retain_until


def test_set_lock_on_a_missing_item_fails(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, small: ClipFile
) -> None:
    target = make_target(moto.url, lock_bucket, moto_credentials)
    with pytest.raises(TargetError, match="no such object"):
        target.set_lock(small.sha256, Lock(retain_until=days(1)))
    with pytest.raises(TargetError, match="no such object"):
        target.rehash_item(small.sha256)


def test_a_server_that_ignores_object_lock_is_not_trusted(
    moto_credentials: Path, lock_bucket: str, proxy: FaultProxy, small: ClipFile
) -> None:
    """Lock headers dropped and retention requests answered 200 but not applied."""

    def drop_lock_headers(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[dict[str, str], bytes]:
        kept = {k: v for k, v in headers.items() if not k.lower().startswith("x-amz-object-lock")}
        return kept, body

    proxy.tamper = drop_lock_headers
    proxy.swallow = lambda method, path: method == "PUT" and "?retention" in path
    target = make_target(proxy.url, lock_bucket, moto_credentials)
    with pytest.raises(TargetError, match="retention not applied") as caught:
        target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)))
    assert small.sha256 in str(caught.value)


# -- manifests and checkpoints -----------------------------------------------------------------


def test_manifest_is_stored_locked_and_not_rewritten_when_unchanged(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, lock_bucket: str,
    small: ClipFile
) -> None:
    target = make_target(moto.url, lock_bucket, moto_credentials)
    manifest = b'{"item": "%s"}' % small.sha256.encode()
    target.put_manifest(small.sha256, manifest, Lock(retain_until=days(2), legal_hold=True))
    target.put_manifest(small.sha256, manifest, Lock(retain_until=days(2), legal_hold=True))

    key = f"station-1/manifests/{small.sha256}.json"
    head = moto_client.head_object(Bucket=lock_bucket, Key=key)
    assert head["Metadata"]["sha256"] == hashlib.sha256(manifest).hexdigest()
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    assert len(moto_client.list_object_versions(Bucket=lock_bucket, Prefix=key)["Versions"]) == 1

    target.put_manifest(small.sha256, manifest + b"\n", Lock(retain_until=days(2)))
    body = moto_client.get_object(Bucket=lock_bucket, Key=key)["Body"].read()
    assert body == manifest + b"\n"
    assert len(moto_client.list_object_versions(Bucket=lock_bucket, Prefix=key)["Versions"]) == 2


def test_checkpoints_round_trip_and_are_never_overwritten(
    moto: S3Endpoint, moto_credentials: Path, plain_bucket: str
) -> None:
    target = make_target(moto.url, plain_bucket, moto_credentials, object_lock=False)
    assert target.list_checkpoints() == []
    target.put_checkpoint("000002.json", b'{"seq": 2}')
    target.put_checkpoint("000001.json", b'{"seq": 1}')
    target.put_checkpoint("000001.json", b'{"seq": 1}')  # the same again: fine
    assert target.list_checkpoints() == ["000001.json", "000002.json"]
    assert target.get_checkpoint("000002.json") == b'{"seq": 2}'
    with pytest.raises(TargetError, match="refusing to overwrite"):
        target.put_checkpoint("000001.json", b'{"seq": 1, "forged": true}')
    assert target.get_checkpoint("000001.json") == b'{"seq": 1}'
    with pytest.raises(TargetError, match="no such checkpoint"):
        target.get_checkpoint("000003.json")
    with pytest.raises(ValueError):
        target.put_checkpoint("../escape", b"x")


def test_damaged_checkpoint_is_reported(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, plain_bucket: str
) -> None:
    target = make_target(moto.url, plain_bucket, moto_credentials, object_lock=False)
    target.put_checkpoint("000001.json", b'{"seq": 1}')
    moto_client.put_object(
        Bucket=plain_bucket,
        Key="station-1/checkpoints/000001.json",
        Body=b'{"seq": 9}',
        Metadata={"sha256": hashlib.sha256(b'{"seq": 1}').hexdigest()},
    )
    with pytest.raises(TargetError, match="does not hash"):
        target.get_checkpoint("000001.json")


# -- credentials, TLS, bandwidth --------------------------------------------------------------


def test_credentials_file_and_profile_are_honoured(
    moto: S3Endpoint,
    tmp_path: Path,
    plain_bucket: str,
    proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-environment")
    creds = tmp_path / "credentials"
    creds.write_text(
        "[default]\naws_access_key_id = AKIADEFAULTPROFILE\naws_secret_access_key = s1\n"
        "[offsite]\naws_access_key_id = AKIAOFFSITEPROFILE\naws_secret_access_key = s2\n"
    )
    creds.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="ingestd.targets.s3"):
        make_target(proxy.url, plain_bucket, creds, object_lock=False).check()
    assert "accessible to group or others" in caplog.text
    make_target(proxy.url, plain_bucket, creds, object_lock=False, profile="offsite").check()
    assert proxy.access_keys == ["AKIADEFAULTPROFILE", "AKIAOFFSITEPROFILE"]

    with pytest.raises(TargetError, match="has no profile 'absent'") as caught:
        make_target(proxy.url, plain_bucket, creds, profile="absent")
    assert "s1" not in str(caught.value) and "s2" not in str(caught.value)
    with pytest.raises(TargetError, match="cannot read credentials file"):
        make_target(proxy.url, plain_bucket, tmp_path / "missing")


@dataclass(frozen=True)
class Tls:
    ca: Path
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A private CA and a certificate for 127.0.0.1 signed by it."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ingestd test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = folder / "ca.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = folder / "server.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return Tls(ca=ca_pem, server=context)


def test_tls_with_a_private_ca(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, tls: Tls, small: ClipFile
) -> None:
    relay = FaultProxy(moto.url, tls=tls.server)
    try:
        trusted = make_target(relay.url, lock_bucket, moto_credentials, ca_bundle=tls.ca)
        trusted.check()
        remote = trusted.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)))
        assert remote.sha256 == small.sha256
        assert trusted.rehash_item(small.sha256) == small.sha256

        # the system's CAs do not know ours: refused before any request reaches the server
        untrusted = make_target(relay.url, lock_bucket, moto_credentials)
        before = len(relay.requests)
        with pytest.raises(TargetError, match="SSL|certificate"):
            untrusted.check()
        assert len(relay.requests) == before
    finally:
        relay.close()
    with pytest.raises(TargetError, match="CA bundle"):
        make_target(moto.url, lock_bucket, moto_credentials, ca_bundle=Path("/nonexistent.pem"))


def test_bandwidth_limit_slows_the_upload(
    moto: S3Endpoint, moto_credentials: Path, plain_bucket: str, tmp_path: Path
) -> None:
    blob = random_file(tmp_path / "blob-2MiB", 2 * MiB)
    limited = make_target(
        moto.url, plain_bucket, moto_credentials, object_lock=False, bandwidth_limit=2 * MiB
    )
    started = time.monotonic()
    limited.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=None))
    elapsed = time.monotonic() - started
    # s3transfer lets a first burst through; the rest must wait for the bucket to refill
    assert elapsed >= 0.5, f"2 MiB at 2 MiB/s took only {elapsed:.2f} s"


# -- Ceph RADOS Gateway --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ceph_setup(
    ceph: S3Endpoint, tmp_path_factory: pytest.TempPathFactory
) -> tuple[S3Endpoint, Path, str]:
    credentials = _credentials_file(tmp_path_factory.mktemp("ceph-creds"), ceph)
    bucket = _bucket(ceph.client(), lock=True)
    return ceph, credentials, bucket


@pytest.mark.slow
def test_ceph_check_and_refusal_without_object_lock(
    ceph_setup: tuple[S3Endpoint, Path, str],
) -> None:
    ceph, credentials, bucket = ceph_setup
    make_target(ceph.url, bucket, credentials).check()
    plain = _bucket(ceph.client(), lock=False)
    with pytest.raises(TargetError, match="Object Lock"):
        make_target(ceph.url, plain, credentials).check()


@pytest.mark.slow
def test_ceph_uploads_verify_and_rehash(
    ceph_setup: tuple[S3Endpoint, Path, str], blobs: dict[str, ClipFile], small: ClipFile
) -> None:
    ceph, credentials, bucket = ceph_setup
    target = make_target(ceph.url, bucket, credentials)
    client = ceph.client()
    for blob in (small, blobs["big"]):
        remote = target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(1)))
        assert remote.sha256 == blob.sha256 and remote.size == blob.size
        assert remote.retain_until is not None
        head = client.head_object(Bucket=bucket, Key=remote.key)
        assert head["Metadata"]["sha256"] == blob.sha256
        assert target.rehash_item(blob.sha256) == blob.sha256
        again = target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(1)))
        assert again.version_id == remote.version_id
    target.put_manifest(small.sha256, b"{}", Lock(retain_until=days(1)))
    head = client.head_object(Bucket=bucket, Key=f"station-1/manifests/{small.sha256}.json")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    target.put_checkpoint(f"{small.sha256[:12]}.json", b'{"seq": 1}')
    assert f"{small.sha256[:12]}.json" in target.list_checkpoints()
    assert target.get_checkpoint(f"{small.sha256[:12]}.json") == b'{"seq": 1}'


@pytest.mark.slow
def test_ceph_refuses_a_part_damaged_in_transit(
    ceph_setup: tuple[S3Endpoint, Path, str], blobs: dict[str, ClipFile]
) -> None:
    """What lets a part go without a checksum of its own over plain HTTP: Ceph checks the
    signed SHA-256 of every part and refuses one that does not match."""
    ceph, credentials, bucket = ceph_setup
    big = blobs["big"]
    relay = FaultProxy(ceph.url)
    try:
        relay.tamper = _flip_a_byte("partNumber=2")
        target = make_target(relay.url, bucket, credentials, prefix="transit")
        with pytest.raises(TargetError, match="XAmzContentSHA256Mismatch") as caught:
            target.put_item(big.sha256, big.path, big.size, Lock(retain_until=days(1)))
        assert big.sha256 in str(caught.value)
        assert target.head_item(big.sha256) is None
        uploads = ceph.client().list_multipart_uploads(Bucket=bucket, Prefix="transit/")
        assert uploads.get("Uploads", []) == [], "the upload is aborted"
    finally:
        relay.close()


@pytest.mark.slow
def test_ceph_compliance_retention_refuses_deleting_the_version(
    ceph_setup: tuple[S3Endpoint, Path, str], small: ClipFile
) -> None:
    ceph, credentials, bucket = ceph_setup
    remote = make_target(ceph.url, bucket, credentials).put_item(
        small.sha256, small.path, small.size, Lock(retain_until=days(1))
    )
    assert remote.version_id
    with pytest.raises(ClientError) as caught:
        ceph.client().delete_object(Bucket=bucket, Key=remote.key, VersionId=remote.version_id)
    assert caught.value.response["Error"]["Code"] == "AccessDenied"


@pytest.mark.slow
def test_ceph_legal_hold_refuses_deleting_the_version(
    ceph_setup: tuple[S3Endpoint, Path, str], small: ClipFile
) -> None:
    ceph, credentials, bucket = ceph_setup
    target = make_target(ceph.url, bucket, credentials)
    held = target.put_item(
        small.sha256, small.path, small.size, Lock(retain_until=None, legal_hold=True)
    )
    assert held.legal_hold is True and held.version_id
    with pytest.raises(ClientError) as caught:
        ceph.client().delete_object(Bucket=bucket, Key=held.key, VersionId=held.version_id)
    assert caught.value.response["Error"]["Code"] == "AccessDenied"


@pytest.mark.slow
def test_ceph_set_lock_extends_and_never_shortens(
    ceph_setup: tuple[S3Endpoint, Path, str], small: ClipFile
) -> None:
    ceph, credentials, bucket = ceph_setup
    target = make_target(ceph.url, bucket, credentials)
    first = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(3)))
    assert first.retain_until is not None
    assert target.set_lock(small.sha256, Lock(retain_until=days(1))).retain_until == (
        first.retain_until
    )
    longer = target.set_lock(small.sha256, Lock(retain_until=days(30)))
    assert longer.retain_until is not None and longer.retain_until > first.retain_until
    head = ceph.client().head_object(Bucket=bucket, Key=first.key)
    assert head["ObjectLockRetainUntilDate"] == longer.retain_until


def test_rehash_reads_back_an_object_of_many_parts(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, moto_client: S3Client,
    tmp_path: Path
) -> None:
    # A ranged download of more than ten parts into a hashing sink used to stall for ever:
    # rehash (audits, readback) must read any size back, whatever the part size.
    target = make_target(moto.url, lock_bucket, moto_credentials,
                         multipart_chunksize=1 * MiB, multipart_threshold=64 * MiB)
    blob = random_file(tmp_path / "blob-12MiB", 12 * MiB)
    target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(1)))
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(target.rehash_item(blob.sha256)),
                              daemon=True)
    worker.start()
    worker.join(60)
    assert result == [blob.sha256], "rehash did not finish within 60 s"


# -- memory -------------------------------------------------------------------------------------


def test_uploads_at_once_share_the_upload_buffers_within_their_budget(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many items and parts travel at once, their bytes in memory are the pool's:
    with room for two 5 MiB parts, four uploads of three parts (and two whole small items)
    wait their turn, never hold more, and every copy is still the item's."""
    budget = 4 * s3.UPLOAD_PIECE  # two parts of 5 MiB (two pieces each)
    pool = BufferPool(budget, keep=4)
    monkeypatch.setattr(s3, "UPLOAD_BUFFERS", pool)
    files = [random_file(tmp_path / f"big-{i}", BIG) for i in range(4)]
    files += [random_file(tmp_path / f"small-{i}", 3 * MiB) for i in range(2)]
    target = make_target(moto.url, lock_bucket, moto_credentials, max_concurrency=4,
                         prefix="pooled")
    with ThreadPoolExecutor(max_workers=len(files)) as uploads:
        remotes = list(uploads.map(
            lambda f: target.put_item(f.sha256, f.path, f.size, Lock(retain_until=days(1))),
            files))
    assert pool.peak == budget, "the uploads used the pool, and filled it"
    for blob, remote in zip(files, remotes, strict=True):
        assert remote.sha256 == blob.sha256 == target.rehash_item(blob.sha256)


@pytest.mark.parametrize("failure", ["damaged first part", "damaged last part", "part refused",
                                     "small item damaged"])
def test_an_upload_that_fails_gives_back_every_buffer(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, lock_bucket: str,
    tmp_path: Path, blobs: dict[str, ClipFile], small: ClipFile,
    monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Whatever ends an upload, its buffers go back to the pool (a leak would starve every
    later upload), and the upload is aborted."""
    pool = BufferPool(4 * s3.UPLOAD_PIECE, keep=4)
    monkeypatch.setattr(s3, "UPLOAD_BUFFERS", pool)
    blob = small if failure == "small item damaged" else blobs["big"]
    source = tmp_path / "source"
    data = blob.path.read_bytes()
    source.write_bytes(flipped(data, blob.size - 10) if failure == "damaged last part"
                       else data if failure == "part refused" else flipped(data, 10))
    target = make_target(moto.url, lock_bucket, moto_credentials, prefix=f"fail-{uuid.uuid4()}")

    def refuse_part_two(params: dict[str, Any], **kwargs: Any) -> None:
        if params["PartNumber"] == 2:
            raise ConnectionError("part 2 refused")

    if failure == "part refused":
        target._client.meta.events.register("before-parameter-build.s3.UploadPart",
                                            refuse_part_two)
    with pytest.raises((ObjectDamaged, TargetUnreachable)):
        target.put_item(blob.sha256, source, blob.size, Lock(retain_until=days(1)))
    assert pool.peak > 0 and pool.held == 0, "every buffer taken was given back"
    assert target.head_item(blob.sha256) is None
    assert moto_client.list_multipart_uploads(Bucket=lock_bucket).get("Uploads", []) == []


@pytest.mark.parametrize("first", [True, False], ids=["first copy", "later attempt"])
def test_the_version_just_written_is_the_one_checked_and_locked(
    moto: S3Endpoint, moto_credentials: Path, moto_client: S3Client, lock_bucket: str,
    small: ClipFile, first: bool
) -> None:
    """Another writer at the key between the upload and its check (claiming the item's hash,
    at its size) cannot lend its object for the copy: the version checked, locked and
    reported is the one this upload made."""
    target = make_target(moto.url, lock_bucket, moto_credentials)
    key = target.item_key(small.sha256)
    ours: list[str] = []

    def another_writer(parsed: dict[str, Any], **_: Any) -> None:
        ours.append(parsed["VersionId"])
        moto_client.put_object(Bucket=lock_bucket, Key=key, Body=os.urandom(small.size),
                               Metadata={"sha256": small.sha256})

    target._client.meta.events.register("after-call.s3.PutObject", another_writer)
    remote = target.put_item(small.sha256, small.path, small.size, Lock(retain_until=days(1)),
                             first=first)

    assert remote.version_id == ours[0]
    body = moto_client.get_object(Bucket=lock_bucket, Key=key, VersionId=ours[0])["Body"]
    assert hashlib.sha256(body.read()).hexdigest() == small.sha256
    head = moto_client.head_object(Bucket=lock_bucket, Key=key, VersionId=ours[0])
    assert head.get("ObjectLockMode") == "COMPLIANCE"


# -- the body reaches the server as sent, and a copy is proven by its bytes -------------------


def test_over_https_every_put_and_every_part_carries_the_content_md5_of_its_body(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, small: ClipFile,
    blobs: dict[str, ClipFile], tls: Tls
) -> None:
    """Ceph RGW checks Content-MD5 (not x-amz-checksum-*), and over HTTPS no signature covers
    a body: every body carries its MD5."""
    with FlippingProxy(moto.url, tls=tls.server) as relay:
        target = make_target(relay.url, lock_bucket, moto_credentials, ca_bundle=tls.ca,
                             request_checksums="when_required")
        for blob in (small, blobs["big"]):
            target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(1)))
        target.put_manifest(small.sha256, b"{}", Lock(retain_until=days(1)))
    is_object = object_puts("/station-1/")
    bodies = [s for s in relay.requests("PUT") if is_object(s.method, s.path)]
    assert len([s for s in bodies if "partNumber=" in s.path]) == 3
    assert len(bodies) == 5  # one object, three parts, one manifest
    for seen in bodies:
        headers = {k.lower(): v for k, v in seen.headers.items()}
        assert headers.get("x-amz-content-sha256") == "UNSIGNED-PAYLOAD", seen.path
        md5 = headers.get("content-md5")
        assert md5 == base64.b64encode(hashlib.md5(seen.body).digest()).decode(), seen.path


def test_over_http_every_put_and_every_part_is_covered_by_its_signed_sha256(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, small: ClipFile,
    blobs: dict[str, ClipFile]
) -> None:
    """Over plain HTTP the signature covers each body's SHA-256, which the server checks
    (``test_ceph_refuses_a_part_damaged_in_transit``): an MD5 as well would only cost CPU."""
    with FlippingProxy(moto.url) as relay:
        target = make_target(relay.url, lock_bucket, moto_credentials)
        for blob in (small, blobs["big"]):
            target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(1)))
        target.put_manifest(small.sha256, b"{}", Lock(retain_until=days(1)))
    is_object = object_puts("/station-1/")
    bodies = [s for s in relay.requests("PUT") if is_object(s.method, s.path)]
    assert len(bodies) == 5  # one object, three parts, one manifest
    for seen in bodies:
        headers = {k.lower(): v for k, v in seen.headers.items()}
        assert headers["x-amz-content-sha256"] == hashlib.sha256(seen.body).hexdigest()
        assert "content-md5" not in headers, seen.path


def test_a_read_back_of_an_object_of_more_than_ten_parts_finishes_in_ranges(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, tmp_path: Path
) -> None:
    blob = random_file(tmp_path / "blob-56MiB", 56 * MiB)  # twelve parts of 5 MiB
    with FlippingProxy(moto.url) as relay:
        target = make_target(relay.url, lock_bucket, moto_credentials, readback=True,
                             max_concurrency=4)
        result: list[Any] = []
        worker = threading.Thread(
            target=lambda: result.append(
                target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(1)))),
            daemon=True)
        worker.start()
        worker.join(120)
        assert result, "the upload with its read-back did not finish within 120 s"
    [remote] = result
    assert remote.read_back is True and remote.sha256 == blob.sha256
    assert len([s for s in relay.requests("PUT") if "partNumber=" in s.path]) == 12
    reads = [s for s in relay.requests("GET", f"/sha256/{blob.sha256}") if "?uploads" not in s.path]
    assert len(reads) == 7, "read back a range at a time (8 MiB), never the whole at once"
    assert all(s.headers.get("Range", "").startswith("bytes=") for s in reads)


def test_a_read_back_that_does_not_hash_to_the_item_is_a_mismatch_and_not_retried(
    moto: S3Endpoint, moto_credentials: Path, plain_bucket: str, small: ClipFile
) -> None:
    with FlippingProxy(moto.url) as relay:
        relay.flip_request = object_puts(small.sha256)
        target = make_target(relay.url, plain_bucket, moto_credentials, object_lock=False,
                             readback=True)
        with pytest.raises(ReplicaMismatch, match="reads back as"):
            target.put_item(small.sha256, small.path, small.size, Lock(retain_until=None))
        assert len(relay.requests("PUT", small.sha256)) == 1
        # ...and a copy found bad is written again and read back, whatever its metadata says
        relay.flip_request = never
        fixed = make_target(relay.url, plain_bucket, moto_credentials, object_lock=False)
        again = fixed.put_item(small.sha256, small.path, small.size, Lock(retain_until=None),
                               rewrite=True)
    assert again.read_back is True and fixed.rehash_item(small.sha256) == small.sha256


def test_an_unreachable_server_is_not_a_mismatch(
    moto_credentials: Path, small: ClipFile
) -> None:
    with socket_closed_port() as port:
        target = make_target(f"http://127.0.0.1:{port}", "any", moto_credentials)
        with pytest.raises(TargetUnreachable):
            target.rehash_item(small.sha256)
        with pytest.raises(TargetUnreachable):
            target.put_item(small.sha256, small.path, small.size, Lock(retain_until=None))


@pytest.mark.slow
def test_ceph_over_https_refuses_a_body_damaged_on_the_way(
    ceph_setup: tuple[S3Endpoint, Path, str], tls: Tls, small: ClipFile, blobs: dict[str, ClipFile]
) -> None:
    """Ceph ignores x-amz-checksum-* but checks Content-MD5, before any signed payload
    hash: each PUT and part carries one, so a flipped byte is refused by it even where no
    payload is signed (botocore's choice over HTTPS, which varies by release)."""
    ceph, credentials, bucket = ceph_setup
    with FlippingProxy(ceph.url, tls=tls.server) as relay:
        # (this Ceph release refuses aws-chunked trailing checksums over HTTPS)
        target = make_target(relay.url, bucket, credentials, ca_bundle=tls.ca, prefix="md5",
                             request_checksums="when_required")
        for blob, where in ((small, small.sha256), (blobs["big"], "partNumber=2")):
            relay.flip_request = object_puts(where)
            with pytest.raises(TargetError, match="BadDigest|InvalidDigest") as caught:
                target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(1)))
            assert not isinstance(caught.value, ReplicaMismatch)
            assert relay.flipped(), "a body was damaged on the way"
            assert target.head_item(blob.sha256) is None, "nothing damaged was stored"
            relay.flip_request = never
            good = target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(1)))
            assert target.rehash_item(blob.sha256) == blob.sha256 == good.sha256


def test_parts_smaller_than_s3_takes_are_raised_so_the_upload_completes(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, moto_client: S3Client,
    tmp_path: Path
) -> None:
    # multipart_chunksize = 1 MiB is a valid setting, but S3 refuses parts under 5 MiB (but
    # the last) only at the upload's end, once every byte was sent: parts are raised to 5 MiB.
    target = make_target(moto.url, lock_bucket, moto_credentials,
                         multipart_chunksize=1 * MiB, multipart_threshold=5 * MiB)
    blob = random_file(tmp_path / "blob-12MiB", 12 * MiB)
    placed = target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(1)))
    head = moto_client.head_object(Bucket=lock_bucket, Key=placed.key, PartNumber=1)
    assert head["ContentLength"] == 5 * MiB  # the first part: 5 MiB, not 1
    assert head["PartsCount"] == 3
    assert target.rehash_item(blob.sha256) == blob.sha256


def test_an_empty_item_is_stored_locked_and_reads_back(
    moto: S3Endpoint, moto_credentials: Path, lock_bucket: str, moto_client: S3Client,
    tmp_path: Path
) -> None:
    # A recorder's zero-byte file is evidence too (flagged empty_file): it travels like any.
    target = make_target(moto.url, lock_bucket, moto_credentials)
    empty = random_file(tmp_path / "empty", 0)
    before = s3.UPLOAD_BUFFERS.held
    placed = target.put_item(empty.sha256, empty.path, 0, Lock(retain_until=days(1)))
    head = moto_client.head_object(Bucket=lock_bucket, Key=placed.key)
    assert head["ContentLength"] == 0
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert target.rehash_item(empty.sha256) == hashlib.sha256(b"").hexdigest()
    assert s3.UPLOAD_BUFFERS.held == before
