"""An S3-compatible bucket as an off-site target (AWS S3, Ceph RGW, MinIO and the like), via boto3.

Layout under ``prefix``: ``sha256/<hash>`` (item bytes), ``manifests/<hash>.json``,
``checkpoints/<name>``, ``archives/<station>/<case>-<package>.tar`` (case archives). Every
object carries the SHA-256 of its own bytes as user metadata
(``x-amz-meta-sha256``): multipart SHA-256 checksums are composite (a hash of the part hashes),
and neither moto nor Ceph RGW rejects a wrong ``ChecksumSHA256``, so the server's checksum alone
proves nothing. The local copy is hashed as it is read for the upload, and the upload cannot
finish unless it hashes to the item (``_VerifyingReader``). It is read, a part at a time, into
buffers of one pool for the whole process (``UPLOAD_BUFFERS``), straight from the disk with
``O_DIRECT`` where the file system takes it (no page-cache copy), and each part is sent from
there: however many items and parts travel at once, replication holds no more of their bytes
in memory than the pool's budget. After every upload the object is
read back with ``head_object`` and its size, metadata hash (and, where the server reports one,
its full-object checksum) and Object Lock state are compared with what was meant; anything else
is a ``TargetError``, never a success (``ReplicaMismatch`` when the copy is wrong,
``TargetUnreachable`` when the server could not be asked). A body damaged on the way is refused,
not stored: over plain HTTP each PUT and part is signed with its SHA-256, which the server
checks; over HTTPS, where botocore signs no payload, each carries its ``Content-MD5``, which
Ceph RGW checks (it ignores ``x-amz-checksum-*``).

Metadata can be forged by whoever can write the bucket, so only reading the bytes back proves
them: ``rehash_item`` (audits), and ``put_item`` with ``readback`` or ``rewrite`` (the answer's
``read_back`` says so). Reading back is plain ranged GETs of one version, in bounded memory.

One retry policy, botocore's own (standard mode): each HTTP request, every part of a multipart
upload included, is tried at most ``max_attempts`` times in all, with exponential backoff and
jitter, when the connection fails (a certificate refused included) or times out, the server
throttles, or it answers 500, 502, 503 or 504. What still fails is a ``TargetUnreachable``
naming the operation, and the next replication or audit tries again from what the server then
holds (a failed multipart upload is aborted, a stale one before the next try). A GET whose body
breaks off while it is read is not retried: that read-back or audit is ``TargetUnreachable``
too, never a mismatch.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import dataclasses
import errno
import hashlib
import ipaddress
import logging
import mmap
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ProfileNotFound,
)
from s3transfer.utils import signal_not_transferring, signal_transferring

from ingestd.domain import policy
from ingestd.domain.policy import WormAttempt, WormProbe
from ingestd.domain.text import redact_url, redact_urls
from ingestd.errors import (
    IngestdError,
    ObjectDamaged,
    ReplicaMismatch,
    TargetError,
    TargetUnreachable,
)
from ingestd.integrity.hashing import ALIGN, BufferPool, hash_file, set_direct
from ingestd.targets import (
    CheckpointVersion,
    Lock,
    LockSample,
    RemoteObject,
    Sink,
    is_checkpoint_name,
    require_archive_name,
    require_checkpoint_name,
    require_sha256,
    s3_location,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        HeadObjectOutputTypeDef,
        PutObjectLegalHoldRequestTypeDef,
        PutObjectRetentionRequestTypeDef,
    )

    from ingestd.config import S3TargetSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 1024 * 1024
_META_SHA256 = "sha256"  # sent as x-amz-meta-sha256
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})
_NO_LOCK_CODES = frozenset({"ObjectLockConfigurationNotFoundError", "InvalidRequest"})

ChecksumPolicy = Literal["when_supported", "when_required"]


class S3Target:
    """One bucket (and key prefix) on an S3-compatible server, as its ``[[targets]]`` table
    says (``S3TargetSettings``; ``targets.factory`` gives it with its paths taken from home).

    ``credentials_file`` is an AWS shared-credentials style file read for ``profile`` (default
    ``default``); when given it wins over the environment, so a daemon uses exactly the keys its
    configuration names. Without it boto3's usual chain applies (``profile``, environment,
    ``~/.aws``, instance roles). ``ca_bundle`` verifies the server's TLS certificate against a
    private CA. ``readback`` streams every uploaded item back and hashes it before reporting
    success: the only check that does not rely on the server having verified what it stored
    (moto and Ceph do not), at the price of downloading each item once.

    Not configuration: the connect and read timeouts, and ``request_checksums``, where
    ``"when_required"`` stops botocore from sending aws-chunked trailing checksums, which older
    Ceph RGW and MinIO releases reject over HTTPS.
    """

    def __init__(
        self,
        settings: S3TargetSettings,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        request_checksums: ChecksumPolicy = "when_supported",
    ) -> None:
        name, bucket, endpoint_url = settings.name, settings.bucket, settings.endpoint_url
        if not bucket:
            raise ValueError(f"target {name!r}: no bucket")
        if settings.multipart_threshold < 1 or settings.multipart_chunksize < 1:
            raise ValueError("multipart_threshold and multipart_chunksize must be positive")
        if settings.max_concurrency < 1 or settings.max_attempts < 1:
            raise ValueError("max_concurrency and max_attempts must be >= 1")
        if settings.bandwidth_limit is not None and settings.bandwidth_limit < 1:
            raise ValueError("bandwidth_limit must be positive (bytes per second) or None")
        if settings.kms_key_id and settings.sse != "aws:kms":
            raise ValueError("kms_key_id needs sse='aws:kms'")
        self.name = name
        self.required = settings.required
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        # what logs, messages and ledger entries may show of it (never a key or signature)
        self.shown_endpoint = redact_url(endpoint_url) if endpoint_url else None
        self.prefix = settings.prefix.strip("/")
        self.location = s3_location(endpoint_url, bucket, self.prefix)
        self.object_lock = settings.object_lock
        self._sse = settings.sse
        self._kms_key_id = settings.kms_key_id
        self._multipart_threshold = settings.multipart_threshold
        self._request_checksums = request_checksums
        # Over plain HTTP botocore signs the SHA-256 of every request body, and the server must
        # check it to accept the signature (Ceph refuses a damaged part with
        # XAmzContentSHA256Mismatch): a flexible checksum of each part would be the same hash
        # computed once more. Over HTTPS the body is not signed; its checksum protects it.
        self._signed_payload = urlsplit(endpoint_url).scheme == "http" if endpoint_url else False
        self._readback = settings.readback
        self._readback_range = max(settings.multipart_chunksize, 8 * MiB)
        max_concurrency = settings.max_concurrency
        self._chunksize = settings.multipart_chunksize
        self._max_concurrency = max_concurrency
        # one cap for every upload to this target together, not one for each
        self._throttle = (_Throttle(settings.bandwidth_limit)
                          if settings.bandwidth_limit is not None else None)
        config = Config(
            region_name=settings.region or "us-east-1",
            # the one retry policy: total attempts of each request, as in the AWS config file
            # (botocore's own "max_attempts" counts retries)
            retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(10, max_concurrency + 2),
            # a private endpoint rarely has wildcard DNS for virtual-host buckets
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            request_checksum_calculation="when_required" if self._signed_payload
            else request_checksums,
            response_checksum_validation="when_required",
        )
        ca_bundle = settings.ca_bundle
        if ca_bundle is not None and not ca_bundle.is_file():
            raise TargetError(f"target {name!r}: CA bundle {ca_bundle} is not a readable file")
        session = self._session(settings.credentials_file, settings.profile, settings.region)
        try:
            self._client: S3Client = session.client(
                "s3",
                endpoint_url=endpoint_url,
                verify=str(ca_bundle) if ca_bundle is not None else None,
                config=config,
            )
        except BotoCoreError as exc:
            raise TargetError(
                f"target {name!r}: cannot set up the S3 client: {redact_urls(str(exc))}"
            ) from exc
        events = self._client.meta.events
        if not self._signed_payload:
            # Ceph RGW checks Content-MD5 (it ignores x-amz-checksum-*), and over HTTPS
            # nothing else covers the body: every PUT and part carries it, so a body damaged
            # on the way is refused rather than stored. Over plain HTTP the signed SHA-256 of
            # the body covers it, and the server checks that (an MD5 would cost more CPU than
            # every SHA-256 of the upload together)
            for operation in ("PutObject", "UploadPart"):
                events.register(f"before-call.s3.{operation}", _add_content_md5)
        # bandwidth_limit counts the bytes sent, not those read to sign or checksum a body
        events.register_first("request-created.s3", signal_not_transferring,
                              unique_id="s3upload-not-transferring")
        events.register_last("request-created.s3", signal_transferring,
                             unique_id="s3upload-transferring")

    def __repr__(self) -> str:
        return f"S3Target(name={self.name!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    # -- keys -------------------------------------------------------------------------------

    def item_key(self, sha256: str) -> str:
        return self._key("sha256", sha256)

    def manifest_key(self, sha256: str) -> str:
        return self._key("manifests", f"{sha256}.json")

    def checkpoint_key(self, name: str) -> str:
        return self._key("checkpoints", name)

    def archive_key(self, name: str) -> str:
        return self._key("archives", require_archive_name(name))

    def _key(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts) if self.prefix else parts)

    # -- the Target protocol ----------------------------------------------------------------

    def check(self) -> None:
        self._warn_if_plain_http()
        self._asking("reach bucket", None, self._check_once)

    def identify(self, known: str | None) -> str:
        # a bucket is named by its endpoint, name and prefix (``location``): nothing to keep
        return ""

    def put_item(self, sha256: str, source: Path, size: int, lock: Lock, *,
                 rewrite: bool = False, first: bool = False,
                 taken: Callable[[], None] | None = None) -> RemoteObject:
        require_sha256(sha256)
        key = self.item_key(sha256)

        def upload() -> str | None:
            return self._upload_file(key, source, size, sha256, lock, taken)

        return self._asking(
            "replicate item", key,
            lambda: self._put_once(key, sha256, size, lock, upload, rewrite=rewrite,
                                   first=first),
        )

    def head_item(self, sha256: str) -> RemoteObject | None:
        require_sha256(sha256)
        key = self.item_key(sha256)
        head = self._asking("head item", key, lambda: self._head(key))
        return None if head is None else self._remote(key, head, sha256)

    def rehash_item(self, sha256: str) -> str:
        require_sha256(sha256)
        key = self.item_key(sha256)
        return self._asking("rehash item", key, lambda: self._rehash_once(key))[0]

    def read_item(self, sha256: str, sink: Sink) -> str:
        require_sha256(sha256)
        key = self.item_key(sha256)
        return self._asking("read item", key, lambda: self._rehash_once(key, sink=sink))[0]

    def set_lock(self, sha256: str, lock: Lock) -> RemoteObject:
        require_sha256(sha256)
        key = self.item_key(sha256)

        def once() -> RemoteObject:
            head = self._head(key)
            if head is None:
                raise self._error("cannot lock: no such object", key)
            return self._lock_and_verify(key, head, lock, sha256)

        return self._asking("set lock", key, once)

    def put_manifest(self, sha256: str, manifest: bytes, lock: Lock, *,
                     first: bool = False) -> None:
        require_sha256(sha256)
        key = self.manifest_key(sha256)
        digest = hashlib.sha256(manifest).hexdigest()

        def upload() -> str | None:
            return self._put_bytes(key, manifest, digest, lock,
                                   content_type="application/json")

        self._asking(
            "put manifest", key,
            lambda: self._put_once(key, digest, len(manifest), lock, upload, first=first),
        )

    def put_checkpoint(self, name: str, body: bytes, lock: Lock | None = None) -> None:
        """Store a ledger checkpoint. A checkpoint is never overwritten: the same bytes again
        are a no-op (bar bringing its lock up), different bytes under an existing name are
        refused (a rewritten ledger must not be able to rewrite its off-site witness). Under
        ``lock`` it is COMPLIANCE-locked like evidence: not even the bucket's owner can delete
        or replace the version."""
        key = self.checkpoint_key(require_checkpoint_name(name))
        digest = hashlib.sha256(body).hexdigest()

        def once() -> None:
            head = self._head(key)
            if head is not None:
                if _metadata_sha256(head) != digest or head.get("ContentLength") != len(body):
                    raise self._error(
                        "refusing to overwrite a checkpoint with different content", key)
            else:
                written = self._put_bytes(key, body, digest, lock,
                                          content_type="application/json")
                head = self._verified(key, self._head(key, written), digest, len(body))
            if lock is not None and self.object_lock:
                self._lock_and_verify(key, head, lock, digest)

        self._asking("put checkpoint", key, once)

    def list_checkpoints(self) -> list[str]:
        folder = self.checkpoint_key("")

        def once() -> list[str]:
            names: list[str] = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                for entry in page.get("Contents", []):
                    name = entry["Key"][len(folder) :]
                    if is_checkpoint_name(name):
                        names.append(name)
            return sorted(names)

        return self._asking("list checkpoints", folder, once)

    def checkpoint_versions(self, *, tokens: bool = False) -> list[CheckpointVersion]:
        """Every version under ``checkpoints/``: a plain DELETE leaves a marker in front of a
        version, and a copy over a name adds one; neither hides what was there before."""
        folder = self.checkpoint_key("")

        def once() -> list[CheckpointVersion]:
            found: list[CheckpointVersion] = []
            paginator = self._client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                for entry in page.get("Versions", []):
                    name = entry["Key"][len(folder) :]
                    if is_checkpoint_name(name, tokens=tokens):
                        version = entry.get("VersionId")
                        found.append(CheckpointVersion(
                            name=name, version_id=None if version in (None, "null") else version,
                            latest=bool(entry.get("IsLatest"))))
            return sorted(found, key=lambda v: (v.name, v.version_id or ""))

        return self._asking("list checkpoint versions", folder, once)

    def get_checkpoint(self, name: str, version_id: str | None = None) -> bytes:
        key = self.checkpoint_key(require_checkpoint_name(name))

        def once() -> bytes:
            try:
                if version_id:
                    answer = self._client.get_object(Bucket=self.bucket, Key=key,
                                                     VersionId=version_id)
                else:
                    answer = self._client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) in _NOT_FOUND_CODES:
                    raise self._error("no such checkpoint", key) from exc
                raise
            body = answer["Body"].read()
            claimed = answer.get("Metadata", {}).get(_META_SHA256)
            if claimed is not None and hashlib.sha256(body).hexdigest() != claimed.lower():
                raise self._error("checkpoint does not hash to its recorded SHA-256", key)
            return body

        return self._asking("get checkpoint", key, once)

    def put_archive(self, name: str, source: Path, lock: Lock) -> RemoteObject:
        """One object, uploaded as an item is (multipart past the threshold, each request
        checksummed, the file hashed as it is read), locked COMPLIANCE and checked. An object
        already there with other bytes is refused: an archive is never replaced."""
        key = self.archive_key(name)
        try:
            found = hash_file(source)
        except OSError as exc:
            raise ObjectDamaged(f"cannot read the archive {source}: {exc.strerror}") from exc

        def upload() -> str | None:
            return self._upload_file(key, source, found.size, found.sha256, lock)

        def once() -> RemoteObject:
            head = self._head(key)
            if head is not None and self._replica_problem(head, found.sha256,
                                                          found.size) is not None:
                raise self._error("refusing to write an archive over a different object "
                                  f"({self._replica_problem(head, found.sha256, found.size)})",
                                  key)
            return self._put_once(key, found.sha256, found.size, lock, upload)

        return self._asking("put archive", key, once)

    def head_archive(self, name: str) -> RemoteObject | None:
        key = self.archive_key(name)

        def once() -> RemoteObject | None:
            head = self._head(key)
            if head is None:
                return None
            claimed = _metadata_sha256(head) or ""
            return self._remote(key, head, claimed)

        return self._asking("head archive", key, once)

    def read_archive(self, name: str, sink: Sink | None = None) -> str:
        key = self.archive_key(name)
        return self._asking("read archive", key, lambda: self._rehash_once(key, sink=sink))[0]

    def canary_key(self) -> str:
        return self._key("worm", "canary")

    def check_worm(self, samples: Sequence[LockSample], now: datetime) -> list[WormAttempt]:
        """Prove the bucket holds WORM (see ``WormTarget``): every attempt is judged by what
        the server holds afterwards, not only by its answer."""
        return self._asking("check WORM", None, lambda: self._check_worm_once(samples, now))

    # -- steps ------------------------------------------------------------------------------

    def _check_worm_once(self, samples: Sequence[LockSample], now: datetime
                         ) -> list[WormAttempt]:
        attempts: list[WormAttempt] = []
        key = self.canary_key()
        canary = self._canary(key, now)
        attempts.append(canary.attempt)
        if canary.version is not None or canary.attempt.held:
            deleted = self._try_delete(key, canary.version)
            attempts.append(deleted)
            if deleted.held:
                attempts.append(self._try_shorten(key, canary.version))
        for sample in samples:
            attempts.append(self._sample_lock(sample))
        return attempts

    def _canary(self, key: str, now: datetime) -> _Canary:
        """The canary, locked under COMPLIANCE, written if it is not there (or was deleted),
        its lock extended when it nears its date."""
        head = self._head(key)
        if head is None:
            body = b"ingestd WORM canary: this object must not be deletable before its date\n"
            digest = hashlib.sha256(body).hexdigest()
            until = _whole_second_up(now + policy.CANARY_LOCK)
            try:
                stored = self._put_bytes(key, body, digest, None, content_type="text/plain")
            except ClientError as exc:
                return _Canary(attempt=WormAttempt(
                    probe=WormProbe.CANARY, held=False,
                    detail=f"the canary could not be stored ({_describe(exc)})"), version=None)
            head = self._head(key, stored)
            if head is None:
                raise self._error("the canary vanished after it was stored", key)
            written = f"written as version {head.get('VersionId') or 'none'}"
        else:
            until = None
            written = f"version {head.get('VersionId') or 'none'} reused"
        raw = head.get("VersionId")
        version = None if raw in (None, "null") else raw
        due = until or policy.canary_lock_due(_compliance_until(head), now)
        if due is not None:
            retention: PutObjectRetentionRequestTypeDef = {
                "Bucket": self.bucket, "Key": key,
                "Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": _whole_second_up(due)}}
            if version:
                retention["VersionId"] = version
            try:
                self._client.put_object_retention(**retention)
            except ClientError as exc:
                return _Canary(attempt=WormAttempt(
                    probe=WormProbe.CANARY, held=False,
                    detail=f"{written}; the server would not lock it ({_describe(exc)})"),
                    version=version)
            head = self._head(key) or head
        locked = _compliance_until(head)
        if locked is None or locked <= now:
            return _Canary(attempt=WormAttempt(
                probe=WormProbe.CANARY, held=False,
                detail=f"{written}; the server reports it {head.get('ObjectLockMode') or 'not'}"
                       f" locked until {head.get('ObjectLockRetainUntilDate')}"),
                version=version)
        return _Canary(attempt=WormAttempt(
            probe=WormProbe.CANARY, held=True,
            detail=f"{written}; COMPLIANCE until {locked.isoformat()}"), version=version)

    def _version_head(self, key: str, version: str | None) -> HeadObjectOutputTypeDef | None:
        """As ``_head``, and a version the server will not show (gone, or a delete marker:
        400, 404, 405) is None too."""
        try:
            return self._head(key, version)
        except ClientError as exc:
            if version is not None and _status(exc) in (400, 404, 405):
                return None
            raise

    def _try_delete(self, key: str, version: str | None) -> WormAttempt:
        """Delete the canary's locked version: WORM holds if it is still there afterwards."""
        try:
            if version:
                self._client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
            else:
                self._client.delete_object(Bucket=self.bucket, Key=key)
            answer = "the server accepted the deletion"
        except ClientError as exc:
            answer = f"refused ({_describe(exc)})"
        there = self._version_head(key, version) is not None
        shown = version or "the current version"
        if there:
            return WormAttempt(probe=WormProbe.DELETE, held=True,
                               detail=f"deleting {shown}: {answer}; it is still there")
        return WormAttempt(probe=WormProbe.DELETE, held=False,
                           detail=f"deleting {shown}: {answer}; it is gone")

    def _try_shorten(self, key: str, version: str | None) -> WormAttempt:
        """Shorten the canary's COMPLIANCE retention: WORM holds if its date did not move."""
        before = self._version_head(key, version)
        held_until = _compliance_until(before) if before is not None else None
        if held_until is None:
            return WormAttempt(probe=WormProbe.SHORTEN, held=False,
                               detail="the canary carries no COMPLIANCE date to shorten")
        shorter = held_until - policy.CANARY_SHORTEN
        retention: PutObjectRetentionRequestTypeDef = {
            "Bucket": self.bucket, "Key": key,
            "Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": shorter}}
        if version:
            retention["VersionId"] = version
        try:
            self._client.put_object_retention(**retention)
            answer = "the server accepted it"
        except ClientError as exc:
            answer = f"refused ({_describe(exc)})"
        after = self._version_head(key, version)
        until = _compliance_until(after) if after is not None else None
        what = (f"shortening from {held_until.isoformat()} to {shorter.isoformat()}: {answer}; "
                f"now {until.isoformat() if until else 'none'}")
        if until is not None and until >= held_until:
            return WormAttempt(probe=WormProbe.SHORTEN, held=True, detail=what)
        return WormAttempt(probe=WormProbe.SHORTEN, held=False, detail=what)

    def _sample_lock(self, sample: LockSample) -> WormAttempt:
        key = self.item_key(sample.sha256)
        head = self._head(key)
        if head is None:
            return WormAttempt(probe=WormProbe.SAMPLE, held=False, item=sample.sha256,
                               detail=f"no object at {key}")
        problem = policy.lock_problem(
            expected_until=sample.lock.retain_until, expected_hold=sample.lock.legal_hold,
            mode=head.get("ObjectLockMode"), until=head.get("ObjectLockRetainUntilDate"),
            hold=head.get("ObjectLockLegalHoldStatus") == "ON")
        until = head.get("ObjectLockRetainUntilDate")
        found = (f"{head.get('ObjectLockMode') or 'no lock'} until "
                 f"{until.isoformat() if until else 'none'}")
        if problem is None:
            return WormAttempt(probe=WormProbe.SAMPLE, held=True, item=sample.sha256,
                               detail=found)
        return WormAttempt(probe=WormProbe.SAMPLE, held=False, item=sample.sha256,
                           detail=f"{found}: {problem}")

    def _check_once(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _status(exc) in (301, 403, 404):
                raise self._error("bucket missing or not accessible", None, exc) from exc
            raise
        if not self.object_lock:
            return
        try:
            answer = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) in _NO_LOCK_CODES or _status(exc) == 404:
                raise self._error(
                    "object_lock is required but the bucket has no Object Lock enabled "
                    "(it can only be enabled when the bucket is created)",
                    None,
                ) from exc
            raise
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise self._error(
                "object_lock is required but the bucket's Object Lock is not enabled", None
            )

    def _put_once(
        self, key: str, sha256: str, size: int, lock: Lock, upload: Callable[[], str | None], *,
        rewrite: bool = False, first: bool = False,
    ) -> RemoteObject:
        """Upload unless a good copy is already there, verify, lock. Safe to run again after a
        crash or failure at any point: it starts from what the server holds. ``first``: no
        copy was ever begun at this key, so the server is not asked what it holds first (a
        retry after a failure at any point asks: the row records the attempt)."""
        head = None if first else self._head(key)
        good = head is not None and self._replica_problem(head, sha256, size) is None
        # a copy that was found bad is only counted again once its bytes are read back
        readback = self._readback or rewrite
        read_back = False
        if good and rewrite:
            log.warning("target %s: %s was found not to hash to %s; uploading a good copy",
                        self.name, key, sha256)
            good = False
        elif good and readback:
            back, version = self._rehash_once(key)
            if back == sha256 and head is not None and version == head.get("VersionId"):
                read_back = True
            else:
                # metadata can be forged by whoever can write the bucket; the bytes cannot
                log.warning("target %s: %s claims to be %s but its bytes differ; uploading a "
                            "good copy", self.name, key, sha256)
                good = False
        if good:
            assert head is not None
            log.info("target %s: %s already holds a good copy; not uploading", self.name, key)
        else:
            if head is not None and self._replica_problem(head, sha256, size) is not None:
                # not ours (or damaged): put a good copy on top; in a versioned bucket the
                # other version stays for investigation
                log.warning(
                    "target %s: %s holds a different object (%s); uploading a good copy",
                    self.name,
                    key,
                    self._replica_problem(head, sha256, size),
                )
            if size >= self._multipart_threshold:
                # only a multipart upload can leave parts behind (a single PUT cannot)
                self._abort_stale_uploads(key)
            # the version just written is checked (and locked), not whatever is newest by the
            # time it is asked: another writer at the key cannot lend its object for ours
            written = upload()
            head = self._verified(key, self._head(key, written), sha256, size)
            if readback:
                # the server's word (metadata, a checksum it may not have checked) is not the
                # bytes: read them back (the version just verified), at the cost of a second
                # transfer
                back, _ = self._rehash_once(key, head.get("VersionId"))
                if back != sha256:
                    raise self._error(f"replica mismatch: object reads back as {back}", key,
                                      kind=ReplicaMismatch)
                read_back = True
        remote = self._lock_and_verify(key, head, lock, sha256)
        return dataclasses.replace(remote, read_back=read_back)

    def _upload_file(self, key: str, source: Path, size: int, sha256: str, lock: Lock,
                     taken: Callable[[], None] | None = None) -> str | None:
        """Upload ``source`` to ``key``; the version it made (None: the bucket keeps none).
        ``taken``: called once the server has stored the object, or its first part."""
        extra: dict[str, Any] = {
            "Metadata": {_META_SHA256: sha256},
            "ContentType": "application/octet-stream",
            **self._sse_args(),
            **self._lock_args(lock),
        }
        if size < self._multipart_threshold:
            # one PUT: the server can check the whole-file SHA-256 (AWS does; moto and Ceph
            # do not, hence the metadata check afterwards)
            extra["ChecksumAlgorithm"] = "SHA256"
            extra["ChecksumSHA256"] = _b64(sha256)
        elif self._request_checksums == "when_supported" and not self._signed_payload:
            # each part carries its own SHA-256, so a server that checks (AWS does) refuses a
            # part damaged in transit (over plain HTTP the signature does that already)
            extra["ChecksumAlgorithm"] = "SHA256"
        log.info("target %s: uploading %s (%d bytes)", self.name, key, size)
        started = time.monotonic()
        # the metadata we attach claims this hash: the reader proves the bytes we send have it
        with _VerifyingReader(source, sha256, size) as reader:
            if size < self._multipart_threshold:
                version = self._put_read(reader, key, size, extra)
                if taken is not None:
                    taken()
            else:
                version = self._multipart_read(reader, key, size, extra, taken)
        log.info("target %s: uploaded %s in %.1f s", self.name, key, time.monotonic() - started)
        return version

    def _put_read(self, reader: _VerifyingReader, key: str, size: int,
                  extra: dict[str, Any]) -> str | None:
        """One PUT, its body read into the upload buffers and hashed whole before it starts."""
        pieces = UPLOAD_BUFFERS.take(UPLOAD_PIECE, _piece_count(size))
        try:
            views = _views(pieces, size)
            reader.fill(views)
            answer = self._client.put_object(
                Bucket=self.bucket, Key=key,
                Body=cast("IO[bytes]", _Body(views, self._throttle)), **extra)
        finally:
            UPLOAD_BUFFERS.give(pieces)
        return answer.get("VersionId")

    def _multipart_read(self, reader: _VerifyingReader, key: str, size: int,
                        extra: dict[str, Any],
                        taken: Callable[[], None] | None = None) -> str | None:
        """A multipart upload, its parts read in order (hashed as they are read) and sent
        ``max_concurrency`` at a time. Completed only once every part is sent and the file
        hashed to the item; aborted otherwise (the last part is then never sent)."""
        upload_id = self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, **extra)["UploadId"]
        part_args = {k: v for k, v in extra.items() if k == "ChecksumAlgorithm"}
        try:
            parts = self._send_parts(reader, key, upload_id, size, part_args, taken)
            done = self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": cast("list[CompletedPartTypeDef]", parts)})
        except BaseException:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                    UploadId=upload_id)
            except Exception as exc:  # noqa: BLE001 - the upload's own error is the one raised
                # Aborted when this key is uploaded again; until then the server keeps its parts.
                log.warning("target %s: could not abort the unfinished upload %s of %s: %s",
                            self.name, upload_id, key, exc,
                            extra={"event": "upload_not_aborted"})
            raise
        return done.get("VersionId")

    def _send_parts(self, reader: _VerifyingReader, key: str, upload_id: str, size: int,
                    part_args: dict[str, Any],
                    taken: Callable[[], None] | None = None) -> list[dict[str, Any]]:
        chunk = part_size(self._chunksize, size)
        count = -(-size // chunk)
        sent: list[Future[dict[str, Any]]] = []
        running: set[Future[dict[str, Any]]] = set()
        with ThreadPoolExecutor(max_workers=self._max_concurrency,
                                thread_name_prefix="ingestd-upload") as senders:
            for number in range(1, count + 1):
                while len(running) >= self._max_concurrency:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()  # a part that could not be sent ends the upload
                length = min(chunk, size - (number - 1) * chunk)
                # waits its turn for the memory: every upload of the process shares the pool
                pieces = UPLOAD_BUFFERS.take(UPLOAD_PIECE, _piece_count(length))
                try:
                    views = _views(pieces, length)
                    reader.fill(views)  # the last: raises, unsent, unless the file is the item
                    future = senders.submit(self._send_part, key, upload_id, number, views,
                                            pieces, part_args, taken)
                except BaseException:
                    UPLOAD_BUFFERS.give(pieces)  # never handed to a sender
                    raise
                sent.append(future)
                running.add(future)
        return [future.result() for future in sent]

    def _send_part(self, key: str, upload_id: str, number: int, views: list[memoryview],
                   pieces: list[mmap.mmap], part_args: dict[str, Any],
                   taken: Callable[[], None] | None = None) -> dict[str, Any]:
        try:
            body = cast("IO[bytes]", _Body(views, self._throttle))
            answer = self._client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                              PartNumber=number, Body=body, **part_args)
        finally:
            UPLOAD_BUFFERS.give(pieces)
        if taken is not None:
            taken()
        part: dict[str, Any] = {"PartNumber": number, "ETag": answer["ETag"]}
        if answer.get("ChecksumSHA256"):
            part["ChecksumSHA256"] = answer["ChecksumSHA256"]
        return part

    def _put_bytes(
        self, key: str, body: bytes, sha256: str, lock: Lock | None, *, content_type: str
    ) -> str | None:
        extra: dict[str, Any] = {**self._sse_args()}
        if lock is not None:
            extra.update(self._lock_args(lock))
        return self._client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            Metadata={_META_SHA256: sha256},
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_b64(sha256),
            **extra,
        ).get("VersionId")

    def _abort_stale_uploads(self, key: str) -> None:
        """A replication killed half-way leaves a multipart upload behind (invisible, but
        billed). One key is written by one replication at a time, so any upload for it is
        stale."""
        paginator = self._client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            for upload in page.get("Uploads", []):
                if upload.get("Key") != key or "UploadId" not in upload:
                    continue
                log.info(
                    "target %s: aborting stale multipart upload %s of %s",
                    self.name,
                    upload["UploadId"],
                    key,
                )
                try:
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload["UploadId"]
                    )
                except ClientError as exc:
                    if _error_code(exc) != "NoSuchUpload":
                        raise

    def _head(self, key: str, version: str | None = None) -> HeadObjectOutputTypeDef | None:
        """The object at ``key`` (that version of it, if given), or None."""
        which: dict[str, Any] = {"VersionId": version} if version is not None else {}
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED",
                                            **which)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return None
            raise

    def _replica_problem(self, head: HeadObjectOutputTypeDef, sha256: str, size: int) -> str | None:
        """Why this object is not a good copy of (sha256, size), or None if it is."""
        if head.get("ContentLength") != size:
            return f"size {head.get('ContentLength')}, expected {size}"
        claimed = _metadata_sha256(head)
        if claimed is None:
            return "no sha256 metadata"
        if claimed != sha256:
            return f"metadata sha256 {claimed}"
        computed = _full_object_sha256(head)
        if computed is not None and computed != sha256:
            return f"server checksum sha256 {computed}"
        return None

    def _verified(
        self, key: str, head: HeadObjectOutputTypeDef | None, sha256: str, size: int
    ) -> HeadObjectOutputTypeDef:
        """``head`` if it shows a good copy of (sha256, size); else TargetError."""
        if head is None:
            raise self._error("replica mismatch: object missing after upload", key,
                              kind=ReplicaMismatch)
        problem = self._replica_problem(head, sha256, size)
        if problem is not None:
            raise self._error(f"replica mismatch: {problem}", key, kind=ReplicaMismatch)
        return head

    def _lock_and_verify(
        self, key: str, head: HeadObjectOutputTypeDef, lock: Lock, sha256: str
    ) -> RemoteObject:
        if self.object_lock and self._apply_lock(key, head, lock):
            fresh = self._head(key)
            if fresh is None:
                raise self._error("object vanished while being locked", key)
            head = fresh
        if self.object_lock:
            self._verify_lock(key, head, lock)
        return self._remote(key, head, sha256)

    def _apply_lock(self, key: str, head: HeadObjectOutputTypeDef, lock: Lock) -> bool:
        """Extend COMPLIANCE retention (never shorten) and set or clear legal hold. Also
        covers servers that ignore Object Lock headers on a multipart upload (moto)."""
        changed = False
        version = head.get("VersionId")  # lock the version we verified, not a newer one
        wanted = _whole_second_up(lock.retain_until) if lock.retain_until else None
        current = _compliance_until(head)
        if wanted is not None and (current is None or wanted > current):
            held = head.get("ObjectLockRetainUntilDate")  # GOVERNANCE may already hold longer
            until = max(wanted, held) if held is not None else wanted
            log.info("target %s: retaining %s until %s", self.name, key, until.isoformat())
            retention: PutObjectRetentionRequestTypeDef = {
                "Bucket": self.bucket,
                "Key": key,
                "Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": until},
            }
            if version:
                retention["VersionId"] = version
            self._client.put_object_retention(**retention)
            changed = True
        elif wanted is not None and current is not None and wanted < current:
            log.debug(
                "target %s: %s already retained until %s, later than %s; not shortening",
                self.name,
                key,
                current.isoformat(),
                wanted.isoformat(),
            )
        held_now = head.get("ObjectLockLegalHoldStatus") == "ON"
        if lock.legal_hold != held_now:
            log.info(
                "target %s: legal hold %s on %s", self.name, "ON" if lock.legal_hold else "OFF", key
            )
            hold: PutObjectLegalHoldRequestTypeDef = {
                "Bucket": self.bucket,
                "Key": key,
                "LegalHold": {"Status": "ON" if lock.legal_hold else "OFF"},
            }
            if version:
                hold["VersionId"] = version
            self._client.put_object_legal_hold(**hold)
            changed = True
        return changed

    def _verify_lock(self, key: str, head: HeadObjectOutputTypeDef, lock: Lock) -> None:
        if lock.retain_until is not None:
            until = _compliance_until(head)
            if until is None or until < _whole_second_up(lock.retain_until):
                raise self._error(
                    f"retention not applied: server reports {head.get('ObjectLockMode')} until "
                    f"{head.get('ObjectLockRetainUntilDate')}, wanted COMPLIANCE until "
                    f"{lock.retain_until.isoformat()}",
                    key,
                )
        if (head.get("ObjectLockLegalHoldStatus") == "ON") != lock.legal_hold:
            raise self._error(
                f"legal hold not applied: server reports {head.get('ObjectLockLegalHoldStatus')}",
                key,
            )

    def _rehash_once(self, key: str, version: str | None = None, *,
                     sink: Sink | None = None) -> tuple[str, str | None]:
        """Read one version (the current one unless given) back with plain ranged GETs, a
        range at a time, hashed as it arrives: bounded memory whatever the size, and no
        s3transfer download window (which stalls past ten parts into a non-seekable sink).
        With ``sink``, the bytes are also written to it as they arrive (it is truncated first:
        a range retried starts again from nothing). Returns the SHA-256 and the version
        read."""
        args: dict[str, Any] = {"VersionId": version} if version else {}
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key, **args)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise self._error("cannot rehash: no such object", key,
                                  kind=ReplicaMismatch) from exc
            raise
        size = head.get("ContentLength", 0)
        version = head.get("VersionId") or version
        if version:
            args = {"VersionId": version}  # every range from the same object
        digest = hashlib.sha256()
        started = time.monotonic()
        done = 0
        if sink is not None:
            sink.seek(0)
            sink.truncate()
        while done < size:
            last = min(size, done + self._readback_range) - 1
            body = self._client.get_object(Bucket=self.bucket, Key=key,
                                           Range=f"bytes={done}-{last}", **args)["Body"]
            try:
                for chunk in body.iter_chunks(chunk_size=_READ_CHUNK):
                    digest.update(chunk)
                    if sink is not None:
                        sink.write(chunk)
                    done += len(chunk)
            finally:
                body.close()
            if done != last + 1:
                raise self._error(f"range read back as {done} bytes, expected {last + 1}", key)
        log.info(
            "target %s: rehashed %s (%d bytes) in %.1f s",
            self.name,
            key,
            size,
            time.monotonic() - started,
        )
        return digest.hexdigest(), version

    # -- helpers ----------------------------------------------------------------------------

    def _remote(self, key: str, head: HeadObjectOutputTypeDef, expected: str) -> RemoteObject:
        return RemoteObject(
            key=key,
            size=head.get("ContentLength", 0),
            sha256=_reported_sha256(head, expected),
            retain_until=_compliance_until(head),
            legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
            version_id=head.get("VersionId"),
        )

    def _sse_args(self) -> dict[str, str]:
        args: dict[str, str] = {}
        if self._sse is not None:
            args["ServerSideEncryption"] = self._sse
        if self._kms_key_id:
            args["SSEKMSKeyId"] = self._kms_key_id
        return args

    def _lock_args(self, lock: Lock) -> dict[str, Any]:
        if not self.object_lock:
            return {}
        args: dict[str, Any] = {}
        if lock.legal_hold:
            # only when wanted: sending OFF would need s3:PutObjectLegalHold for nothing
            args["ObjectLockLegalHoldStatus"] = "ON"
        if lock.retain_until is not None:
            args["ObjectLockMode"] = "COMPLIANCE"
            args["ObjectLockRetainUntilDate"] = _whole_second_up(lock.retain_until)
        return args

    def _asking(self, what: str, key: str | None, operation: Callable[[], T]) -> T:
        """Run one operation (its requests retried by botocore): whatever still fails, bar
        what is already judged, is ``TargetUnreachable``."""
        try:
            return operation()
        except IngestdError:
            raise  # already judged (replica mismatch, damaged source...): not the server's state
        except Exception as exc:
            # the server could not be asked, or refused to answer: says nothing of the copies
            # it holds
            raise self._error(f"cannot {what}", key, exc, kind=TargetUnreachable) from exc

    def _error(self, what: str, key: str | None, exc: BaseException | None = None, *,
               kind: type[TargetError] = TargetError) -> TargetError:
        where = f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"
        if self.shown_endpoint:
            where += f" at {self.shown_endpoint}"
        detail = f" ({_describe(exc)})" if exc is not None else ""
        return kind(f"target {self.name!r}: {what}: {where}{detail}")

    def _warn_if_plain_http(self) -> None:
        if not self.endpoint_url:
            return
        parts = urlsplit(self.endpoint_url)
        if parts.scheme != "http":
            return
        host = parts.hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            # R11: off-site copies must be encrypted in transit
            log.warning(
                "target %s: endpoint %s is plain HTTP; evidence travels unencrypted",
                self.name,
                self.shown_endpoint,
            )

    def _session(
        self, credentials_file: Path | None, profile: str | None, region: str | None
    ) -> boto3.session.Session:
        try:
            if credentials_file is None:
                return boto3.session.Session(profile_name=profile, region_name=region)
            key_id, secret, token = _read_credentials(self.name, credentials_file, profile)
            return boto3.session.Session(
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                aws_session_token=token,
                region_name=region,
            )
        except ProfileNotFound as exc:
            raise TargetError(f"target {self.name!r}: profile {profile!r} not found") from exc


_READ_CHUNK = 1 << 20


def _read_credentials(target: str, path: Path, profile: str | None) -> tuple[str, str, str | None]:
    section = profile or "default"
    parser = configparser.RawConfigParser()
    try:
        mode = path.stat().st_mode
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        # the exception's own text may quote a line of the file, secret included: name only
        raise TargetError(
            f"target {target!r}: cannot read credentials file {path}: {type(exc).__name__}"
        ) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "target %s: credentials file %s is accessible to group or others (mode %o)",
            target,
            path,
            stat.S_IMODE(mode),
        )
    if not parser.has_section(section):
        raise TargetError(f"target {target!r}: credentials file {path} has no profile {section!r}")
    key_id = parser.get(section, "aws_access_key_id", fallback="").strip()
    secret = parser.get(section, "aws_secret_access_key", fallback="").strip()
    token = parser.get(section, "aws_session_token", fallback="").strip() or None
    if not key_id or not secret:
        raise TargetError(
            f"target {target!r}: profile {section!r} in {path} lacks aws_access_key_id or "
            "aws_secret_access_key"
        )
    return key_id, secret, token


class _VerifyingReader:
    """The local copy of an item as it is read for an upload, in order, hashed as it is read.

    The upload reads it from one thread, part after part, into the buffers each part is sent
    from: the hash covers exactly the bytes handed over to be sent, and the file is read once.
    The read that hands over the last bytes first checks that the file is ``size`` bytes
    hashing to ``sha256``, and raises ``ObjectDamaged`` instead if not: the last part is then
    never sent, so a multipart upload is never completed (it is aborted) and a single PUT
    never starts. No object, let alone one under COMPLIANCE retention claiming the item's
    hash, is ever made from a damaged copy.
    """

    def __init__(self, path: Path, sha256: str, size: int) -> None:
        self._path = path
        self._sha256 = sha256
        self._size = size
        self._left = size
        self._hash = hashlib.sha256()
        try:
            self._file = path.open("rb", buffering=0)
        except OSError as exc:
            raise ObjectDamaged(f"cannot read {path} for replication: {exc}") from exc
        try:
            # Straight from the disk into the upload pieces (page-aligned, whole blocks), as the
            # store reads back its copies: the bytes are read once, and a trip through the page
            # cache would cost a copy and its management in the kernel, and push out pages the
            # station still uses. Buffered, with the kernel reading ahead, where it is refused.
            self._direct = set_direct(self._file.fileno(), True)
        except OSError as exc:
            self._file.close()
            raise ObjectDamaged(f"cannot read {path} for replication: {exc}") from exc
        if not self._direct:
            self._read_ahead(0, 0)

    def __enter__(self) -> _VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def fill(self, views: Sequence[memoryview]) -> None:
        """Read the next bytes into ``views``, each filled whole (they hold no more than is
        left of the file), and hash them. Read buffered, the kernel is asked for as many
        bytes again, to read them from the disk while these are hashed and sent."""
        done = self._size - self._left
        length = sum(len(v) for v in views)
        if self._left > length and not self._direct:
            self._read_ahead(done + length, length)
        for view in views:
            got = self._readinto(view)
            self._hash.update(view[:got])
            self._left -= got
            if got < len(view):
                raise self._damaged(f"ends after {self._size - self._left} bytes")
        if not self._left:
            self._finish()

    def _read_ahead(self, offset: int, length: int) -> None:
        """Ask the kernel to read these bytes (0, 0: the whole file, start to end) into the
        page cache while the ones before are hashed and sent; only for buffered reads."""
        advice = os.POSIX_FADV_WILLNEED if length else os.POSIX_FADV_SEQUENTIAL
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(self._file.fileno(), offset, length, advice)

    def _buffered(self) -> None:
        """Read on through the page cache: O_DIRECT takes whole blocks only, and some file
        systems take the flag but refuse its reads (``EINVAL``)."""
        if self._direct:
            set_direct(self._file.fileno(), False)
            self._direct = False
            self._read_ahead(0, 0)

    def _readinto(self, view: memoryview) -> int:
        """Fill ``view``; the bytes read, fewer only where the file ends. With O_DIRECT its
        whole blocks are read so; a tail shorter than a block (only a file's last view has
        one, unless parts are not whole blocks) is read buffered, as everything after it."""
        whole = len(view) - len(view) % ALIGN if self._direct else len(view)
        got = self._read(view[:whole])
        if got == whole < len(view):
            self._buffered()
            got += self._read(view[got:])
        return got

    def _read(self, view: memoryview) -> int:
        got = 0
        try:
            # a regular file gives all that is asked in one read, but past 2 GiB or at its end
            while got < len(view):
                try:
                    n = os.readv(self._file.fileno(), [view[got:]])
                except OSError as exc:
                    if exc.errno != errno.EINVAL or not self._direct:
                        raise
                    self._buffered()
                    continue
                if not n:
                    break
                got += n
        except OSError as exc:
            raise ObjectDamaged(f"cannot read {self._path} for replication: {exc}") from exc
        return got

    def _finish(self) -> None:
        """All ``size`` bytes are read: the file must end here and hash to the item."""
        self._buffered()  # one byte more: not a whole block
        if self._readinto(memoryview(bytearray(1))):
            raise self._damaged(f"has more than {self._size} bytes")
        found = self._hash.hexdigest()
        if found != self._sha256:
            raise self._damaged(f"is {self._size} bytes with SHA-256 {found}")

    def _damaged(self, what: str) -> ObjectDamaged:
        return ObjectDamaged(
            f"{self._path} {what}, expected {self._size} bytes with {self._sha256}: "
            "not replicating a damaged copy"
        )


# Every upload's bytes in memory, for the whole process: a part (or a small item, sent in one
# PUT) is read into pieces of this pool, hashed, sent from them, and the pieces handed back.
# Uploads wait their turn for pieces, so replication's memory stays within the budget however
# many items and parts travel at once (one part larger than the budget goes alone).
UPLOAD_PIECE = 4 * MiB
UPLOAD_BUFFERS = BufferPool(16 * UPLOAD_PIECE, keep=16)


#: What S3 takes of a multipart upload: parts of 5 MiB to 5 GiB (but the last), 10,000 at most.
MIN_PART = 5 * MiB
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000


def part_size(configured: int, size: int) -> int:
    """The part size for an object of ``size`` bytes: the one configured, raised to what S3
    takes (at least 5 MiB, and large enough for 10,000 parts to hold it), so that an upload
    is never refused at its end after every byte was sent."""
    chunk = max(configured, MIN_PART, -(-size // MAX_PARTS))
    if chunk > MAX_PART:
        raise TargetError(f"an object of {size} bytes does not fit in {MAX_PARTS} parts of "
                          "5 GiB, the most S3 takes")
    return chunk


def _piece_count(size: int) -> int:
    return -(-size // UPLOAD_PIECE)


def _views(pieces: Sequence[mmap.mmap], size: int) -> list[memoryview]:
    """``size`` bytes laid over ``pieces``: each whole but the last."""
    return [memoryview(piece)[:min(UPLOAD_PIECE, size - i * UPLOAD_PIECE)]
            for i, piece in enumerate(pieces)]


class _Body:
    """A request body held in upload pieces, as botocore reads it: to sign it (over plain
    HTTP), to checksum it, to send it, and again from the start when a request is retried.
    While it is being sent (botocore's ``request-created`` signals, as s3transfer's bodies
    take them), its reads wait for the target's ``bandwidth_limit``."""

    def __init__(self, views: list[memoryview], throttle: _Throttle | None) -> None:
        self._views = views
        self._size = sum(len(v) for v in views)
        self._pos = 0
        self._throttle = throttle
        self._sending = False

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = min(max(base + offset, 0), self._size)
        return self._pos

    def read(self, amount: int | None = -1) -> bytes | memoryview:
        """Up to ``amount`` bytes: a view of the piece that holds them (no copy: the reads
        are whole blocks and never straddle a piece, but where one does it is joined)."""
        end = self._size if amount is None or amount < 0 else min(self._size,
                                                                    self._pos + amount)
        if self._pos >= end:
            return b""
        index, start = divmod(self._pos, UPLOAD_PIECE)
        data: bytes | memoryview
        if start + end - self._pos <= len(self._views[index]):
            data = self._views[index][start:start + end - self._pos]
        else:
            data = b"".join(self._views[i][max(0, self._pos - i * UPLOAD_PIECE):
                                           end - i * UPLOAD_PIECE]
                            for i in range(index, (end - 1) // UPLOAD_PIECE + 1))
        self._pos = end
        if self._sending and self._throttle is not None:
            self._throttle.wait(len(data))
        return data

    def update(self, digest: Any) -> None:
        """Feed the whole body to ``digest`` (a hashlib object), without copying it."""
        for view in self._views:
            digest.update(view)

    def signal_transferring(self) -> None:
        self._sending = True

    def signal_not_transferring(self) -> None:
        self._sending = False

    def close(self) -> None:
        """botocore may close a body it has sent: the pieces stay the upload's."""


class _Throttle:
    """``bandwidth_limit``: the bytes every upload to a target sends, together, at most
    ``rate`` a second (each read waits for its slot; the first goes at once)."""

    def __init__(self, rate: int) -> None:
        self._rate = float(rate)
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def wait(self, size: int) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now)
            self._next = start + size / self._rate
        if start - now > 0.001:
            time.sleep(start - now)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Canary:
    attempt: WormAttempt
    version: str | None


def _add_content_md5(params: dict[str, Any], **kwargs: Any) -> None:
    """botocore ``before-call`` hook: the MD5 of the request body as ``Content-MD5``."""
    headers = params.setdefault("headers", {})
    body = params.get("body")
    if body is None or "Content-MD5" in headers:
        return
    md5 = hashlib.md5(usedforsecurity=False)
    if isinstance(body, bytes | bytearray):
        md5.update(body)
    elif isinstance(body, _Body):
        body.update(md5)
    else:
        start = body.tell()
        for chunk in iter(lambda: body.read(_READ_CHUNK), b""):
            md5.update(chunk)
        body.seek(start)
    headers["Content-MD5"] = base64.b64encode(md5.digest()).decode("ascii")


def _b64(sha256: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256)).decode("ascii")


def _metadata_sha256(head: Mapping[str, Any]) -> str | None:
    value = head.get("Metadata", {}).get(_META_SHA256)
    return value.strip().lower() if isinstance(value, str) else None


def _full_object_sha256(head: HeadObjectOutputTypeDef) -> str | None:
    """The server's SHA-256 of the whole object, when it reports one that is not composite."""
    value = head.get("ChecksumSHA256")
    if not value or "-" in value:
        return None
    kind = head.get("ChecksumType")
    if kind == "COMPOSITE" or (kind is None and "-" in head.get("ETag", "")):
        return None  # moto reports a composite multipart checksum without saying so
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


def _reported_sha256(head: HeadObjectOutputTypeDef, expected: str) -> str | None:
    """The hash the server reports. It equals ``expected`` only when every hash the server
    gives (metadata, full-object checksum) agrees with it; otherwise a disagreeing one."""
    reported = [h for h in (_metadata_sha256(head), _full_object_sha256(head)) if h is not None]
    if not reported:
        return None
    disagreeing = [h for h in reported if h != expected]
    return disagreeing[0] if disagreeing else expected


def _compliance_until(head: HeadObjectOutputTypeDef) -> datetime | None:
    if head.get("ObjectLockMode") != "COMPLIANCE":
        return None
    return head.get("ObjectLockRetainUntilDate")


def _whole_second_up(moment: datetime) -> datetime:
    """Servers keep retain-until dates to the second or millisecond; rounding up means the
    date we send is never earlier than the one asked for."""
    if moment.tzinfo is None:
        raise ValueError("retain_until must be timezone-aware")
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        message = exc.response.get("Error", {}).get("Message", "")
        code, status = _error_code(exc), _status(exc)
        head = f"HTTP {status}" if code in ("", str(status)) else f"{code}, HTTP {status}"
        return redact_urls(f"{head}: {message}" if message else head)
    if isinstance(exc, NoCredentialsError):
        return "no credentials: set credentials_file, profile or the environment"
    # botocore quotes the endpoint URL in its errors, with whatever it holds
    return f"{type(exc).__name__}: {redact_urls(str(exc))}"
