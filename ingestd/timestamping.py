"""An RFC 3161 time-stamping client: a hash sent to an authority, its token checked.

:func:`request_stamp` asks the authority at ``url`` to time-stamp the SHA-256 of some bytes
(a request with a nonce, asking for its certificate) by an HTTP POST of the DER request
(``application/timestamp-query``), and checks the answer before it is used: a granted
TimeStampResp, signed by a certificate that chains to ``ca_file`` and is meant for
time-stamping, over that very hash, with our nonce (and under ``policy`` when one is set).
:func:`check_stamp` makes the same checks of a token kept earlier, without the nonce.

What is kept is the whole DER TimeStampResp, as the authority sent it: the form of a ``.tsr``
file, which ``openssl ts -verify -data FILE -in FILE.tsr -CAfile CA`` checks (without
``-token_in``). Every failure is a :class:`~ingestd.errors.TimestampError` naming the
authority (its URL redacted) and what was wrong.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import rfc3161_client
from cryptography import x509

from .domain import text
from .errors import TimestampError

QUERY_TYPE = "application/timestamp-query"
#: The largest answer read from an authority (a token with its chain is a few KiB).
MAX_RESPONSE = 1 << 20
_SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")


@dataclass(frozen=True, kw_only=True)
class Stamp:
    """A checked time-stamp: ``response`` the DER TimeStampResp, ``sha256`` (hex) the hash it
    vouches for, ``gen_time`` when the authority says it saw it."""

    response: bytes
    sha256: str
    gen_time: datetime
    serial: int
    policy: str


def load_roots(ca_file: Path) -> list[x509.Certificate]:
    """The PEM certificates in ``ca_file``: the trust anchors of the authority's tokens."""
    try:
        roots = x509.load_pem_x509_certificates(ca_file.read_bytes())
    except OSError as exc:
        raise TimestampError(f"cannot read the time-stamping ca_file {ca_file}: "
                             f"{exc.strerror or exc}") from None
    except ValueError as exc:
        raise TimestampError(f"the time-stamping ca_file {ca_file} holds no PEM "
                             f"certificate: {exc}") from None
    return roots


def _parse(response: bytes, where: str) -> rfc3161_client.TimeStampResponse:
    try:
        parsed = rfc3161_client.decode_timestamp_response(response)
    except ValueError as exc:
        raise TimestampError(f"{where} answered no time-stamp response: {exc}") from None
    if parsed.status not in (rfc3161_client.PKIStatus.GRANTED,
                             rfc3161_client.PKIStatus.GRANTED_WITH_MODS):
        said = "; ".join(parsed.status_string) or "no reason given"
        raise TimestampError(f"{where} refused the time-stamp (status {parsed.status}: "
                             f"{said})")
    return parsed


def _stamp(parsed: rfc3161_client.TimeStampResponse, response: bytes, digest: bytes,
           where: str) -> Stamp:
    """What ``parsed`` says, once its imprint is found to be the SHA-256 ``digest``."""
    info = parsed.tst_info
    imprint = info.message_imprint
    if imprint.hash_algorithm != _SHA256_OID or imprint.message != digest:
        raise TimestampError(f"{where} time-stamped another hash "
                             f"({imprint.message.hex()}) than {digest.hex()}")
    gen_time = info.gen_time
    return Stamp(response=response, sha256=digest.hex(),
                 gen_time=gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC),
                 serial=info.serial_number, policy=info.policy.dotted_string)


def _verify(parsed: rfc3161_client.TimeStampResponse, digest: bytes, *, where: str,
            roots: list[x509.Certificate], nonce: int | None, policy: str | None) -> None:
    """Signed by a time-stamping certificate that chains to ``roots``, with ``nonce`` and
    under ``policy`` (when given)."""
    builder = rfc3161_client.VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    if nonce is not None:
        builder = builder.nonce(nonce)
    if policy is not None:
        builder = builder.policy_id(x509.ObjectIdentifier(policy))
    try:
        builder.build().verify(parsed, digest)
    except rfc3161_client.VerificationError as exc:
        raise TimestampError(f"{where}: the token does not verify against ca_file: "
                             f"{exc}") from None
    except ValueError as exc:
        raise TimestampError(f"{where}: the token cannot be checked: {exc}") from None


def request_stamp(url: str, data: bytes, *, ca_file: Path, timeout: float,
                  policy: str | None = None) -> Stamp:
    """Have the authority at ``url`` time-stamp the SHA-256 of ``data``; the checked stamp,
    holding the authority's answer byte for byte."""
    where = f"time-stamping authority {text.redact_url(url)}"
    roots = load_roots(ca_file)
    request = (rfc3161_client.TimestampRequestBuilder()
               .data(data).hash_algorithm(rfc3161_client.HashAlgorithm.SHA256)
               .nonce(nonce=True).cert_request(cert_request=True).build())
    post = urllib.request.Request(url, data=request.as_bytes(), method="POST",
                                  headers={"Content-Type": QUERY_TYPE})
    try:
        with urllib.request.urlopen(post, timeout=timeout) as answer:  # noqa: S310 - http(s)
            body = answer.read(MAX_RESPONSE + 1)
    except urllib.error.HTTPError as exc:
        raise TimestampError(f"{where} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise TimestampError(f"{where} cannot be reached: "
                             f"{text.redact_urls(str(reason))}") from None
    if len(body) > MAX_RESPONSE:
        raise TimestampError(f"{where} answered more than {MAX_RESPONSE} bytes")
    parsed = _parse(body, where)
    digest = hashlib.sha256(data).digest()
    stamp = _stamp(parsed, body, digest, where)
    _verify(parsed, digest, where=where, roots=roots, nonce=request.nonce, policy=policy)
    return stamp


def check_stamp(response: bytes, digest: bytes, *, ca_file: Path | None,
                policy: str | None = None, where: str = "the token") -> Stamp:
    """Check a kept TimeStampResp against the hash it must vouch for and, with ``ca_file``,
    against those trust anchors (without one only the hash is checked)."""
    parsed = _parse(response, where)
    stamp = _stamp(parsed, response, digest, where)
    if ca_file is not None:
        _verify(parsed, digest, where=where, roots=load_roots(ca_file), nonce=None,
                policy=policy)
    return stamp
