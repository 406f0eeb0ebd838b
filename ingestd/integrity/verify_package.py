#!/usr/bin/env python3
"""Check an ingestd court package with Python 3's standard library and the ``openssl`` command.

    python3 verify_package.py PACKAGE_DIR [--fingerprint SHA256] [--ca-file PEM] [--json]

Exit 0: every check holds. Exit 1: something does not (each finding is printed, with its kind).
Exit 2: the command was used wrongly. It needs Python 3.9 or later and OpenSSL 3's ``openssl``
command, and neither ingestd nor any other package:
docs/LEDGER.md in ingestd's sources specifies every format it reads. It never writes into the
package, never follows a link in it, never opens a device or FIFO, and reads every file it
parses within a bound.

``--fingerprint`` is the SHA-256 of the station's first public key, as the station's owner
wrote it down (``keys/station.pin`` on the station): without it, the package is checked only
against itself, and a package re-signed end to end with another key (its time-stamps dropped)
would still hold. ``--ca-file`` is the time-stamping authority's CA certificates, to check
the time-stamps by instead of the copy the package carries.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -- the layout ------------------------------------------------------------------------------

PACKAGE_FORMAT = "ingestd-package"
PACKAGE_VERSION = 1
PACKAGE_JSON = "package.json"
ENTRIES = "ledger/entries.jsonl"
BODIES = "ledger/bodies"
SIGNATURES = "ledger/signatures"
PROOFS = "ledger/proofs.json"
KEYS = "keys"
MANIFESTS = "manifests"
CHECKPOINT = "checkpoint/checkpoint"
PUBLISHED = "checkpoint/published"
CONSISTENCY = "checkpoint/consistency.json"
#: A checkpoint's RFC 3161 time-stamp (the authority's whole DER TimeStampResp) is kept beside
#: it as ``<stem>.tsr``; it stamps the SHA-256 of ``<stem>.json``, byte for byte.
TOKEN_SUFFIX = ".tsr"
#: The certificates the station trusts its time-stamping authority by (PEM), when it has one.
TSA_CA = "checkpoint/tsa-ca.pem"
BAG_INFO = "bag-info.txt"
ALGORITHMS = ("sha256", "sha512")
#: The SHA-256 tag manifest names every file of the package but the payload and the tag
#: manifests themselves; the station signs its bytes, with the key of the package's
#: checkpoint, so no tag file can be removed, added or changed and the manifest made again.
TAG_MANIFEST = "tagmanifest-sha256.txt"
TAG_SIGNATURE = TAG_MANIFEST + ".sig"

#: The files no tag manifest can name: the tag manifests and the signature of the first.
TAG_FILES = frozenset({*(f"tagmanifest-{alg}.txt" for alg in ALGORITHMS), TAG_SIGNATURE})

#: The bag-info.txt fields that repeat what the signed export entry says.
BAG_INFO_FIELDS = {"Package-Id": "package", "Approved-By": "approved_by", "Reason": "reason",
                   "Requested-By": "requested_by", "Purpose": "purpose"}

#: No file this script parses may be larger (a package of many items has large entry files,
#: but never a document this size).
DOC_MAX = 16 * 1024 * 1024
LINE_MAX = 1024 * 1024
ENTRIES_MAX = 1024 * 1024 * 1024

#: An Ed25519 public key as X.509 SubjectPublicKeyInfo DER is these 12 bytes and the raw key.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def entry_body_path(seq: int) -> str:
    return f"{BODIES}/{seq:012d}.json"


def entry_signature_path(seq: int) -> str:
    return f"{SIGNATURES}/{seq:012d}.sig"


def key_path(key_id: str) -> str:
    return f"{KEYS}/{key_id}.pem"


def manifest_path(sha256: str, suffix: str = ".json") -> str:
    return f"{MANIFESTS}/{sha256}{suffix}"


def public_pem(raw: bytes) -> bytes:
    """A raw Ed25519 public key as the PEM ``openssl pkeyutl -pubin`` reads."""
    b64 = base64.b64encode(ED25519_SPKI_PREFIX + raw).decode("ascii")
    return f"-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n".encode("ascii")


def raw_from_pem(pem: bytes) -> bytes | None:
    lines = [ln.strip() for ln in pem.decode("ascii", "replace").splitlines() if ln.strip()]
    if len(lines) < 3 or lines[0] != "-----BEGIN PUBLIC KEY-----" or (
            lines[-1] != "-----END PUBLIC KEY-----"):
        return None
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        return None
    if len(der) != 44 or not der.startswith(ED25519_SPKI_PREFIX):
        return None
    return der[12:]


# -- canonical bytes, hashes, the Merkle tree --------------------------------------------------


def canonical_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


ENTRY_FIELDS = ("seq", "at", "station", "actor", "kind", "item", "data", "prev_hash", "key_id")


def entry_body(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {name: entry[name] for name in ENTRY_FIELDS}


def fingerprint_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def key_id_of(raw: bytes) -> str:
    return fingerprint_of(raw)[:16]


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaf_hash(entry_hash: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry_hash).digest()


def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def consistent(old_size: int, old_root: bytes, new_size: int, new_root: bytes,
               proof: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2."""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


# -- signatures ------------------------------------------------------------------------------

#: (raw public key, message, raw signature) -> whether it verifies
Verify = Callable[[bytes, bytes, bytes], bool]


class OpensslMissing(RuntimeError):
    """The ``openssl`` command is not there: nothing can be said of a signature."""


def openssl_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 by ``openssl pkeyutl -verify -rawin``, from files in a private temporary
    folder (never in the package)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    with tempfile.TemporaryDirectory(prefix="verify-package-") as tmp:
        folder = Path(tmp)
        (folder / "key.pem").write_bytes(public_pem(public))
        (folder / "body").write_bytes(message)
        (folder / "sig").write_bytes(signature)
        try:
            done = subprocess.run(
                ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(folder / "key.pem"),
                 "-rawin", "-in", str(folder / "body"), "-sigfile", str(folder / "sig")],
                capture_output=True, check=False, timeout=60)
        except FileNotFoundError:
            raise OpensslMissing("verify_package.py needs the openssl command (OpenSSL 3)") \
                from None
    return done.returncode == 0


#: (token, the bytes it must stamp, trusted CA certificates as PEM) -> why it does not hold
StampCheck = Callable[[bytes, bytes, bytes], "str | None"]


def openssl_stamp_check(token: bytes, data: bytes, ca_pem: bytes) -> str | None:
    """``openssl ts -verify -data DATA -in TOKEN -CAfile CA``, from files in a private
    temporary folder (never in the package)."""
    with tempfile.TemporaryDirectory(prefix="verify-package-") as tmp:
        folder = Path(tmp)
        (folder / "data").write_bytes(data)
        (folder / "token.tsr").write_bytes(token)
        (folder / "ca.pem").write_bytes(ca_pem)
        try:
            done = subprocess.run(
                ["openssl", "ts", "-verify", "-data", str(folder / "data"), "-in",
                 str(folder / "token.tsr"), "-CAfile", str(folder / "ca.pem")],
                capture_output=True, check=False, timeout=60)
        except FileNotFoundError:
            raise OpensslMissing("verify_package.py needs the openssl command (OpenSSL 3)") \
                from None
    if done.returncode == 0:
        return None
    said = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
    return said[-1] if said else f"openssl ts -verify answered {done.returncode}"


# -- findings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing found wrong: its kind (the names ingestd's ``verify-export`` uses), the
    package file and the ledger entry it concerns, and the words for a person."""

    kind: str
    detail: str
    path: str | None = None
    seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail, "path": self.path, "seq": self.seq}


# -- reading a hostile folder -----------------------------------------------------------------


def safe_relpath(path: str) -> bool:
    """A path inside the package: relative, '/'-separated, no '..', '.', empty part or NUL."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


class PackageFiles:
    """The package folder, read without following links: every file is opened component by
    component from the package's own descriptor (``O_NOFOLLOW``), never blocking, and only if
    it is a regular file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)

    def close(self) -> None:
        os.close(self.fd)

    def open(self, rel: str) -> int:
        """A descriptor of the regular file at ``rel`` (OSError: none, or not regular)."""
        if not safe_relpath(rel):
            raise OSError(f"unsafe path {rel!r}")
        parts = rel.split("/")
        fd = self.fd
        opened: list[int] = []
        try:
            for part in parts[:-1]:
                fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=fd)
                opened.append(fd)
            leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                           | os.O_CLOEXEC, dir_fd=fd)
        finally:
            for one in opened:
                os.close(one)
        if not stat.S_ISREG(os.fstat(leaf).st_mode):
            os.close(leaf)
            raise OSError(f"{rel} is not a regular file")
        os.set_blocking(leaf, True)
        return leaf

    def size(self, rel: str) -> int:
        fd = self.open(rel)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def read(self, rel: str, limit: int = DOC_MAX) -> bytes:
        """The whole file; ValueError if it is larger than ``limit``."""
        fd = self.open(rel)
        try:
            if os.fstat(fd).st_size > limit:
                raise ValueError(f"{rel} is larger than {limit} bytes")
            chunks, left = [], limit + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        if len(data) > limit:
            raise ValueError(f"{rel} is larger than {limit} bytes")
        return data

    def digests(self, rel: str, algorithms: tuple[str, ...] = ALGORITHMS) -> dict[str, str]:
        fd = self.open(rel)
        hashes = {alg: hashlib.new(alg) for alg in algorithms}
        try:
            while chunk := os.read(fd, 1 << 20):
                for h in hashes.values():
                    h.update(chunk)
        finally:
            os.close(fd)
        return {alg: h.hexdigest() for alg, h in hashes.items()}

    def lines(self, rel: str, *, limit: int, line_max: int = LINE_MAX) -> Iterator[bytes]:
        """Each line (without its newline), each at most ``line_max`` bytes, the file at most
        ``limit``; ValueError past either."""
        fd = self.open(rel)
        try:
            if os.fstat(fd).st_size > limit:
                raise ValueError(f"{rel} is larger than {limit} bytes")
            with os.fdopen(os.dup(fd), "rb") as fh:
                while True:
                    line = fh.readline(line_max + 1)
                    if not line:
                        return
                    if len(line) > line_max:
                        raise ValueError(f"{rel} has a line longer than {line_max} bytes")
                    yield line.rstrip(b"\n").rstrip(b"\r")
        finally:
            os.close(fd)

    def walk(self) -> Iterator[tuple[str, str]]:
        """Every name in the package, as (relative path, what it is: file, dir, link, other),
        without entering links."""
        def inside(fd: int, prefix: str) -> Iterator[tuple[str, str]]:
            for name in sorted(os.listdir(fd)):
                rel = f"{prefix}{name}"
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    yield rel, "link"
                elif stat.S_ISDIR(st.st_mode):
                    yield rel, "dir"
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=fd)
                    try:
                        yield from inside(sub, rel + "/")
                    finally:
                        os.close(sub)
                elif stat.S_ISREG(st.st_mode):
                    yield rel, "file"
                else:
                    yield rel, "other"
        yield from inside(self.fd, "")


def _unquote_manifest_path(raw: str) -> str:
    # RFC 8493 2.1.3: CR, LF and % are percent-encoded in manifest paths
    return raw.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


# -- the checks ------------------------------------------------------------------------------


@dataclass
class _Key:
    raw: bytes
    station: str
    since: int
    until: int | None = None


#: What each count is called when there is one of it.
ONE = {"checkpoints": "checkpoint", "consistency proofs": "consistency proof",
       "entries": "entry", "files hashed": "file hashed", "inclusion proofs": "inclusion proof",
       "items": "item", "signed tag manifests": "signed tag manifest"}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, kind: str, detail: str, *, path: str | None = None,
            seq: int | None = None) -> None:
        self.findings.append(Finding(kind=kind, detail=detail, path=path, seq=seq))

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n


class PackageCheck:
    """Every check of a package, each finding recorded, none stopping the others."""

    def __init__(self, root: Path, *, verify: Verify = openssl_verify,
                 fingerprint: str | None = None, ca_pem: bytes | None = None,
                 stamp_check: StampCheck = openssl_stamp_check) -> None:
        self.root = root
        self.verify = verify
        self.ca_pem = ca_pem  # the court's own trust in the authority, when it has one
        self.stamp_check = stamp_check
        self.fingerprint = fingerprint.lower() if fingerprint else None
        self.report = Report()
        self.files: PackageFiles | None = None
        self.hostile = False  # a link, device, unsafe path or oversized file was found
        self.payload: dict[str, dict[str, str]] = {}  # path -> alg -> hash (manifests)
        self.keys: dict[str, _Key] = {}
        self.current: dict[str, str] = {}
        self.genesis: dict[str, bytes] = {}
        self.entries: dict[int, dict[str, Any]] = {}
        self.head = 0  # the last entry the package's checkpoint covers

    def run(self) -> Report:
        try:
            self.files = PackageFiles(self.root)
        except OSError as exc:
            self.report.add("package_unreadable", f"{self.root} cannot be opened as a folder "
                            f"(a link is never followed): {exc}")
            return self.report
        try:
            self._checks()
        finally:
            self.files.close()
        return self.report

    def _checks(self) -> None:
        present = self._walk()
        package = self._doc(PACKAGE_JSON)
        sizes: dict[str, int] = {}
        if isinstance(package, dict) and isinstance(package.get("items"), list):
            for item in package["items"]:
                if isinstance(item, dict) and isinstance(item.get("size"), int):
                    sizes[str(item.get("file"))] = item["size"]
        self._bag(present, sizes)
        if not isinstance(package, dict) or package.get("format") != PACKAGE_FORMAT:
            self.report.add("package_unreadable", f"{PACKAGE_JSON} is not an ingestd package "
                            "description", path=PACKAGE_JSON)
            return
        self._entries()
        checkpoint = self._checkpoint(CHECKPOINT)
        self.head = checkpoint["seq"] if checkpoint is not None else max(self.entries,
                                                                          default=0)
        if checkpoint is not None:
            self._proofs(checkpoint)
            self._published(checkpoint)
            self._tag_signature(checkpoint)
        self._key_files(present)
        self._items(package)
        self._export(package)

    # -- the bag -------------------------------------------------------------------------

    def _walk(self) -> set[str]:
        assert self.files is not None
        present: set[str] = set()
        for rel, what in self.files.walk():
            if what == "link":
                self.hostile = True
                self.report.add("not_a_regular_file", f"{rel} is a symbolic link: not "
                                "followed", path=rel)
            elif what == "other":
                self.hostile = True
                self.report.add("not_a_regular_file", f"{rel} is a device, FIFO or socket: "
                                "not read", path=rel)
            elif what == "file":
                present.add(rel)
        return present

    def _manifest(self, name: str, present: set[str], *,
                  payload: bool) -> dict[str, str] | None:
        """``path -> hash`` from one manifest; None if it is absent."""
        assert self.files is not None
        if name not in present:
            return None
        out: dict[str, str] = {}
        try:
            for lineno, raw in enumerate(self.files.lines(name, limit=DOC_MAX * 4), start=1):
                if not raw.strip():
                    continue
                text = raw.decode("utf-8")
                digest, _, rel = text.partition(" ")
                rel = _unquote_manifest_path(rel.lstrip(" ").lstrip("*"))
                if not safe_relpath(rel) or (payload and not rel.startswith("data/")) or (
                        not payload and rel.startswith("data/")):
                    self.hostile = True
                    self.report.add("unsafe_path", f"{name} line {lineno} names {rel!r}, "
                                    "which is not a file of this package's "
                                    f"{'payload' if payload else 'tag files'}", path=name)
                    continue
                out[rel] = digest.lower()
        except (ValueError, UnicodeDecodeError) as exc:
            self.hostile = True
            self.report.add("file_too_large" if "larger" in str(exc) or "longer" in str(exc)
                            else "bag_invalid", f"{name}: {exc}", path=name)
        except OSError as exc:
            self.report.add("not_a_regular_file", f"{name}: {exc}", path=name)
        return out

    def _bag(self, present: set[str], sizes: dict[str, int]) -> None:
        self._declaration()
        self._payload(present, sizes)
        self._tags(present)

    def _declaration(self) -> None:
        assert self.files is not None
        try:
            declared = self.files.read("bagit.txt", 4096).decode("utf-8")
            if "BagIt-Version:" not in declared:
                raise ValueError("no BagIt-Version")
        except (OSError, ValueError) as exc:
            self.report.add("bag_invalid", f"bagit.txt is missing or wrong: {exc}",
                            path="bagit.txt")

    def _payload(self, present: set[str], sizes: dict[str, int]) -> None:
        manifests: dict[str, dict[str, str]] = {}
        for alg in ALGORITHMS:
            found = self._manifest(f"manifest-{alg}.txt", present, payload=True)
            if found is None:
                self.report.add("package_file_missing", f"manifest-{alg}.txt is missing",
                                path=f"manifest-{alg}.txt")
                continue
            manifests[alg] = found
        listed = set().union(*(set(m) for m in manifests.values())) if manifests else set()
        for rel in sorted(listed):
            for alg, m in manifests.items():
                if rel not in m:
                    self.report.add("bag_invalid", f"{rel} is not in manifest-{alg}.txt",
                                    path=rel)
            self.payload[rel] = {alg: m[rel] for alg, m in manifests.items() if rel in m}
        for rel in sorted(p for p in present if p.startswith("data/") and p not in listed):
            self.report.add("package_file_unexpected", f"{rel} is in the payload but in no "
                            "manifest", path=rel)
        for rel in sorted(listed):
            self._hash_file(rel, self.payload[rel], present, what="payload_mismatch",
                            size=sizes.get(rel))

    def _tags(self, present: set[str]) -> None:
        tags: dict[str, dict[str, str]] = {}
        for alg in ALGORITHMS:
            found = self._manifest(f"tagmanifest-{alg}.txt", present, payload=False)
            if found is None:
                self.report.add("package_file_missing", f"tagmanifest-{alg}.txt is missing",
                                path=f"tagmanifest-{alg}.txt")
                continue
            for rel, digest in found.items():
                tags.setdefault(rel, {})[alg] = digest
        for rel in sorted(tags):
            self._hash_file(rel, tags[rel], present, what="tag_file_mismatch", bound=True)
        for rel in sorted(present):
            if rel.startswith("data/") or rel in TAG_FILES or rel in tags:
                continue
            self.report.add("package_file_unexpected", f"{rel} is in no tag manifest: it is "
                            "not part of the package as made", path=rel)

    def _hash_file(self, rel: str, want: dict[str, str], present: set[str], *, what: str,
                   bound: bool = False, size: int | None = None) -> None:
        assert self.files is not None
        if rel not in present:
            self.report.add("package_file_missing", f"{rel} is named in a manifest but is not "
                            "in the package (or is not a regular file)", path=rel)
            return
        try:
            if bound and self.files.size(rel) > ENTRIES_MAX:
                self.hostile = True
                self.report.add("file_too_large", f"{rel} is larger than any tag file a "
                                "package needs: not read", path=rel)
                return
            found = self.files.size(rel)
            if size is not None and found != size:
                self.report.add(what, f"{rel} is {found} bytes, not the {size} of its item: "
                                "not read", path=rel)
                return
            got = self.files.digests(rel, tuple(want))
        except OSError as exc:
            self.report.add("not_a_regular_file", f"{rel}: {exc}", path=rel)
            return
        self.report.count("files hashed")
        for alg, digest in want.items():
            if got[alg] != digest:
                self.report.add(what, f"{rel} does not hash to its {alg.upper()} manifest "
                                f"value ({got[alg]} instead of {digest})", path=rel)

    # -- documents -----------------------------------------------------------------------

    def _doc(self, rel: str, *, required: bool = True) -> Any:
        assert self.files is not None
        try:
            return json.loads(self.files.read(rel))
        except FileNotFoundError:
            if required:
                self.report.add("package_file_missing", f"{rel} is missing", path=rel)
        except ValueError as exc:
            if "larger" in str(exc):
                self.hostile = True
                self.report.add("file_too_large", f"{rel}: {exc}: not read", path=rel)
            else:
                self.report.add("package_unreadable", f"{rel} is not JSON: {exc}", path=rel)
        except OSError as exc:
            self.report.add("not_a_regular_file", f"{rel}: {exc}", path=rel)
        return None

    def _bytes(self, rel: str) -> bytes | None:
        assert self.files is not None
        try:
            return self.files.read(rel, 1 << 20)
        except (OSError, ValueError):
            return None

    # -- the entries and their keys ------------------------------------------------------

    def _entries(self) -> None:
        assert self.files is not None
        last = 0
        try:
            for lineno, raw in enumerate(self.files.lines(ENTRIES, limit=ENTRIES_MAX),
                                         start=1):
                if not raw.strip():
                    continue
                try:
                    entry = json.loads(raw)
                    body = canonical_bytes(entry_body(entry))
                    seq = int(entry["seq"])
                    entry_hash = str(entry["entry_hash"])
                    signature = bytes.fromhex(str(entry["signature"]))
                except (ValueError, KeyError, TypeError) as exc:
                    self.report.add("package_unreadable", f"{ENTRIES} line {lineno} is not an "
                                    f"entry: {exc}", path=ENTRIES)
                    continue
                if seq <= last:
                    self.report.add("out_of_order", f"{ENTRIES} line {lineno}: entry {seq} "
                                    f"comes after entry {last}", path=ENTRIES, seq=seq)
                    continue
                previous = self.entries.get(seq - 1)
                if previous is not None and entry.get("prev_hash") != previous.get(
                        "entry_hash"):
                    self.report.add("broken_link", f"entry {seq} does not link to entry "
                                    f"{seq - 1}, which the package also carries", path=ENTRIES,
                                    seq=seq)
                last = seq
                self.entries[seq] = entry
                self.report.count("entries")
                if hashlib.sha256(body).hexdigest() != entry_hash:
                    self.report.add("edited", f"entry {seq}: its content does not match its "
                                    "recorded hash", path=ENTRIES, seq=seq)
                if self._bytes(entry_body_path(seq)) != body:
                    self.report.add("edited", f"{entry_body_path(seq)} is not entry {seq}'s "
                                    "canonical body", path=entry_body_path(seq), seq=seq)
                if self._bytes(entry_signature_path(seq)) != signature:
                    self.report.add("bad_signature", f"{entry_signature_path(seq)} is not "
                                    f"entry {seq}'s signature", path=entry_signature_path(seq),
                                    seq=seq)
                self._admit(entry, body, signature)
        except ValueError as exc:
            self.hostile = True
            self.report.add("file_too_large", f"{ENTRIES}: {exc}", path=ENTRIES)
        except OSError as exc:
            self.report.add("package_file_missing", f"{ENTRIES}: {exc}", path=ENTRIES)
        if not self.genesis:
            self.report.add("unknown_key", "the package carries no genesis entry: no key is "
                            "proven", path=ENTRIES)

    def _admit(self, entry: dict[str, Any], body: bytes, signature: bytes) -> None:
        """The key chain: a station's genesis entry brings its first key (which must be the
        pinned one), each ``key_rotated`` entry signed by the key before brings the next and
        retires that one; every other entry must be signed by a key valid for it."""
        seq, station, kind = int(entry["seq"]), str(entry["station"]), str(entry["kind"])
        data = entry["data"] if isinstance(entry["data"], dict) else {}
        if kind == "genesis":
            try:
                raw = bytes.fromhex(str(data["public_key"]))
            except (KeyError, ValueError):
                self.report.add("unknown_key", f"genesis entry {seq} carries no public key",
                                seq=seq)
                return
            if key_id_of(raw) != entry["key_id"] or not self.verify(raw, body, signature):
                self.report.add("bad_signature", f"genesis entry {seq} is not signed by the "
                                "key it carries", seq=seq, path=ENTRIES)
                return
            if station in self.genesis:
                self.report.add("unvouched_key", f"a second genesis entry ({seq}) for station "
                                f"{station}", seq=seq)
                return
            self.genesis[station] = raw
            if self.fingerprint and fingerprint_of(raw) != self.fingerprint:
                self.report.add("pin_mismatch", f"the genesis key of station {station} has "
                                f"fingerprint {fingerprint_of(raw)}, not {self.fingerprint}",
                                seq=seq)
                return
            self.keys[key_id_of(raw)] = _Key(raw=raw, station=station, since=seq)
            self.current[station] = key_id_of(raw)
            return
        key = self.keys.get(str(entry["key_id"]))
        if key is None or key.station != station or seq < key.since:
            self.report.add("unknown_key", f"entry {seq} is signed with key {entry['key_id']}, "
                            "which the package's key chain does not vouch for", seq=seq)
            return
        if key.until is not None and seq > key.until:
            self.report.add("retired_key", f"entry {seq} is signed with key "
                            f"{entry['key_id']}, retired by entry {key.until}", seq=seq)
        if not self.verify(key.raw, body, signature):
            self.report.add("bad_signature", f"entry {seq}: the signature does not verify "
                            f"with key {entry['key_id']}", seq=seq, path=ENTRIES)
            return
        if kind == "key_rotated":
            try:
                new = bytes.fromhex(str(data["new_public_key"]))
            except (KeyError, ValueError):
                self.report.add("unvouched_key", f"rotation entry {seq} carries no new key",
                                seq=seq)
                return
            key.until = seq
            self.keys[key_id_of(new)] = _Key(raw=new, station=station, since=seq + 1)
            self.current[station] = key_id_of(new)

    def _key_files(self, present: set[str]) -> None:
        for key_id, key in sorted(self.keys.items()):
            pem = self._bytes(key_path(key_id))
            if pem is None:
                self.report.add("package_file_missing", f"{key_path(key_id)} is missing",
                                path=key_path(key_id))
            elif raw_from_pem(pem) != key.raw:
                self.report.add("wrong_key", f"{key_path(key_id)} is not the key the ledger "
                                f"vouches for as {key_id}", path=key_path(key_id))
        for rel in sorted(p for p in present if p.startswith(KEYS + "/")):
            name = rel[len(KEYS) + 1:]
            if not name.endswith(".pem") or name[:-4] not in self.keys:
                self.report.add("wrong_key", f"{rel} is a key the ledger does not vouch for",
                                path=rel)

    def _signed(self, body: Any, signature: Any, key_id: Any, *, station: Any,
                after: int) -> bool:
        """Whether ``body`` is signed by a key the chain vouches for ``station`` once its
        entries up to ``after`` are written: brought in by then, not retired by then."""
        key = self.keys.get(str(key_id))
        if key is None or key.station != station or after + 1 < key.since or (
                key.until is not None and after + 1 > key.until):
            return False
        try:
            sig = bytes.fromhex(str(signature))
        except ValueError:
            return False
        return self.verify(key.raw, canonical_bytes(body), sig)

    def _signed_files(self, stem: str, body: Any, signature: Any, *, kind: str) -> None:
        if self._bytes(stem + ".body.json") != canonical_bytes(body):
            self.report.add(kind, f"{stem}.body.json is not the canonical body",
                            path=stem + ".body.json")
        try:
            sig = bytes.fromhex(str(signature))
        except ValueError:
            sig = b""
        if self._bytes(stem + ".sig") != sig:
            self.report.add(kind, f"{stem}.sig is not the signature", path=stem + ".sig")

    # -- the checkpoint and the proofs ---------------------------------------------------

    def _checkpoint(self, stem: str) -> dict[str, Any] | None:
        doc = self._doc(stem + ".json", required=stem == CHECKPOINT)
        if doc is None:
            return None
        try:
            body, signature = doc["checkpoint"], doc["signature"]
            seq, size = int(body["seq"]), int(body["tree_size"])
            root = bytes.fromhex(str(body["merkle_root"]))
        except (KeyError, TypeError, ValueError) as exc:
            self.report.add("package_unreadable", f"{stem}.json is not a version 3 "
                            f"checkpoint: {exc}", path=stem + ".json")
            return None
        if not self._signed(body, signature, body.get("key_id"), station=body.get("station"),
                            after=seq):
            self.report.add("checkpoint_bad_signature", f"{stem}.json is not signed by a key "
                            "the package's key chain vouches for", path=stem + ".json", seq=seq)
        self._signed_files(stem, body, signature, kind="checkpoint_bad_signature")
        genesis = self.genesis.get(str(body.get("station")))
        pinned = body.get("genesis_fingerprint")
        said = self._bag_info().get("Station-Key-Fingerprint")
        if stem == CHECKPOINT and genesis is not None and said and said != fingerprint_of(
                genesis):
            self.report.add("pin_mismatch", f"{BAG_INFO} gives the station's key fingerprint "
                            f"{said}, the genesis entry carries {fingerprint_of(genesis)}",
                            path=BAG_INFO)
        if genesis is not None and pinned is not None and fingerprint_of(genesis) != pinned:
            self.report.add("pin_mismatch", f"{stem}.json pins the first key {pinned}, the "
                            f"genesis entry carries {fingerprint_of(genesis)}",
                            path=stem + ".json")
        if size != seq:
            self.report.add("proof_invalid", f"{stem}.json covers {size} entries but names "
                            f"entry {seq} as its head", path=stem + ".json")
        head = self.entries.get(seq)
        if head is not None and head.get("entry_hash") != body.get("head_hash"):
            self.report.add("proof_invalid", f"entry {seq} is not the head {stem}.json "
                            "vouches for", path=stem + ".json", seq=seq)
        self.report.count("checkpoints")
        self._stamp(stem)
        return {"size": size, "root": root, "seq": seq, "key_id": body.get("key_id"),
                "station": body.get("station")}

    def _tag_signature(self, checkpoint: dict[str, Any]) -> None:
        """The station's signature over the SHA-256 tag manifest, by the checkpoint's key."""
        manifest, signature = self._bytes(TAG_MANIFEST), self._bytes(TAG_SIGNATURE)
        if manifest is None or signature is None:
            self.report.add("tag_manifest_unsigned", f"{TAG_SIGNATURE} or {TAG_MANIFEST} is "
                            "missing: the package's other files are not vouched for",
                            path=TAG_SIGNATURE)
            return
        key = self.keys.get(str(checkpoint["key_id"]))
        seq = checkpoint["seq"]
        if key is None or key.station != checkpoint["station"] or seq + 1 < key.since or (
                key.until is not None and seq + 1 > key.until) or not self.verify(
                key.raw, manifest, signature):
            self.report.add("tag_manifest_unsigned", f"{TAG_SIGNATURE} is not the station's "
                            f"signature of {TAG_MANIFEST} by the checkpoint's key: a file "
                            "beside the payload was removed, added or changed",
                            path=TAG_SIGNATURE)
            return
        self.report.count("signed tag manifests")

    def _stamp(self, stem: str) -> None:
        """The checkpoint's time-stamp, if it has one: by ``--ca-file``, else by the CA the
        package carries (which says only that the station trusted it)."""
        assert self.files is not None
        token_path = stem + TOKEN_SUFFIX
        try:
            token = self.files.read(token_path, 1 << 20)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self.report.add("timestamp_invalid", f"{token_path}: {exc}", path=token_path)
            return
        ca = self.ca_pem if self.ca_pem is not None else self._bytes(TSA_CA)
        data = self._bytes(stem + ".json")
        if ca is None or data is None:
            self.report.count("time-stamps not checked (no CA)")
            return
        problem = self.stamp_check(token, data, ca)
        if problem is not None:
            self.report.add("timestamp_invalid", f"{token_path} is not a trusted time-stamp "
                            f"of {stem}.json: {problem}", path=token_path)
        else:
            self.report.count("time-stamps")

    def _proofs(self, checkpoint: dict[str, Any]) -> None:
        doc = self._doc(PROOFS)
        proofs = doc.get("proofs") if isinstance(doc, dict) else None
        if not isinstance(proofs, dict):
            if doc is not None:
                self.report.add("package_unreadable", f"{PROOFS} holds no proofs", path=PROOFS)
            proofs = {}
        for seq, entry in sorted(self.entries.items()):
            path = proofs.get(str(seq))
            try:
                leaf = leaf_hash(bytes.fromhex(str(entry["entry_hash"])))
                hashes = [bytes.fromhex(str(h)) for h in (path or [])]
            except ValueError:
                leaf, hashes = b"", []
            if path is None or root_from_inclusion(seq - 1, checkpoint["size"], leaf,
                                                   hashes) != checkpoint["root"]:
                self.report.add("proof_invalid", f"entry {seq} is not proven to be in the "
                                f"ledger the checkpoint signs ({PROOFS})", path=PROOFS,
                                seq=seq)
            else:
                self.report.count("inclusion proofs")

    def _published(self, checkpoint: dict[str, Any]) -> None:
        old = self._checkpoint(PUBLISHED)
        if old is None:
            return
        doc = self._doc(CONSISTENCY)
        try:
            proof = [bytes.fromhex(str(h)) for h in doc["proof"]]
        except (TypeError, KeyError, ValueError):
            proof = None
        if proof is None or not consistent(old["size"], old["root"], checkpoint["size"],
                                           checkpoint["root"], proof):
            self.report.add("checkpoint_inconsistent", "the package's checkpoint does not "
                            f"extend the one published before ({PUBLISHED}.json)",
                            path=CONSISTENCY)
        else:
            self.report.count("consistency proofs")

    # -- the items and the export --------------------------------------------------------

    def _items(self, package: dict[str, Any]) -> None:
        items = package.get("items")
        if not isinstance(items, list):
            self.report.add("package_unreadable", f"{PACKAGE_JSON} lists no items",
                            path=PACKAGE_JSON)
            return
        named: set[str] = set()
        for item in items:
            try:
                sha, rel, size = str(item["sha256"]), str(item["file"]), int(item["size"])
            except (KeyError, TypeError, ValueError):
                self.report.add("package_unreadable", f"{PACKAGE_JSON}: an item without its "
                                "sha256, file or size", path=PACKAGE_JSON)
                continue
            named.add(rel)
            listed = self.payload.get(rel, {}).get("sha256")
            if listed is None:
                self.report.add("package_file_missing", f"item {sha}'s file {rel} is not in "
                                "the payload", path=rel)
            elif listed != sha:
                self.report.add("item_mismatch", f"{rel} is not item {sha}: the payload "
                                f"manifest says it hashes to {listed}", path=rel)
            stem = manifest_path(sha, "")
            doc = self._doc(stem + ".json")
            if not isinstance(doc, dict):  # missing, unreadable, or JSON that is no manifest
                self.report.add("bad_signature", f"{stem}.json is not a signed manifest",
                                path=stem + ".json")
                continue
            body, signature = doc.get("manifest"), doc.get("signature")
            if not isinstance(body, dict) or not self._signed(
                    body, signature, body.get("key_id"), station=package.get("station"),
                    after=self.head):
                self.report.add("bad_signature", f"{stem}.json is not signed by a key the "
                                "package's key chain vouches for", path=stem + ".json")
                continue
            self._signed_files(stem, body, signature, kind="bad_signature")
            if body.get("item") != sha or body.get("size") != size:
                self.report.add("item_mismatch", f"{stem}.json signs item {body.get('item')} "
                                f"of {body.get('size')} bytes, not {sha} of {size}",
                                path=stem + ".json")
            self.report.count("items")
        for rel in sorted(set(self.payload) - named):
            self.report.add("package_file_unexpected", f"{rel} is no item of the package",
                            path=rel)

    def _export(self, package: dict[str, Any]) -> None:
        package_id = package.get("package_id")
        found = [e for e in self.entries.values() if e.get("kind") == "exported"
                 and isinstance(e.get("data"), dict) and e["data"].get("package") == package_id]
        if not found:
            self.report.add("export_not_recorded", f"no signed export entry names package "
                            f"{package_id}", path=ENTRIES)
            return
        entry = found[0]
        data = entry["data"]
        shas = sorted(str(i.get("sha256")) for i in package.get("items") or []
                      if isinstance(i, dict))
        if sorted(data.get("items") or []) != shas:
            self.report.add("item_mismatch", f"the export entry {entry['seq']} names other "
                            f"items than {PACKAGE_JSON}", path=PACKAGE_JSON, seq=entry["seq"])
        info = self._bag_info()
        for name, key in BAG_INFO_FIELDS.items():
            said = info.get(name)
            want = data.get(key)
            if (said or None) != (want or None):
                self.report.add("bag_info_differs", f"{BAG_INFO} says {name}: {said!r}, the "
                                f"signed export entry {entry['seq']} says {want!r}",
                                path=BAG_INFO, seq=entry["seq"])

    def _bag_info(self) -> dict[str, str]:
        raw = self._bytes(BAG_INFO)
        out: dict[str, str] = {}
        if raw is None:
            return out
        last = None
        for line in raw.decode("utf-8", "replace").splitlines():
            if line[:1] in (" ", "\t") and last is not None:
                out[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if sep:
                last = name.strip()
                out.setdefault(last, value.strip())
        return out


def check_package(root: Path, *, verify: Verify = openssl_verify,
                  fingerprint: str | None = None, ca_pem: bytes | None = None) -> Report:
    """Every check of the package at ``root``."""
    return PackageCheck(root, verify=verify, fingerprint=fingerprint, ca_pem=ca_pem).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check an ingestd court package offline.")
    parser.add_argument("package", type=Path)
    parser.add_argument("--fingerprint", help="the station's pinned key fingerprint (SHA-256)")
    parser.add_argument("--ca-file", type=Path, help="the time-stamping authority's CA "
                        "certificates (PEM), to check time-stamps by instead of the package's")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)
    ca_pem = args.ca_file.read_bytes() if args.ca_file else None
    try:
        report = check_package(args.package, fingerprint=args.fingerprint, ca_pem=ca_pem)
    except OpensslMissing as exc:
        print(f"verify_package.py: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"ok": report.ok, "checked": report.checked,
                          "findings": [f.as_dict() for f in report.findings]},
                         ensure_ascii=False, indent=2))
    else:
        for f in report.findings:
            print(f"{f.kind}: {f.detail}")
        counts = ", ".join(f"{n} {ONE.get(what, what) if n == 1 else what}"
                           for what, n in sorted(report.checked.items()))
        print(("OK: " if report.ok else f"FAILED ({len(report.findings)} findings): ") + counts)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
