"""A local RFC 3161 time-stamping authority for tests, made of ``openssl`` and ``http.server``.

:class:`LocalTsa` makes a throwaway certificate authority and a TSA certificate signed by it
(extendedKeyUsage critical timeStamping), writes an ``openssl.cnf`` with a ``[tsa]`` section,
and answers each HTTP POST by running ``openssl ts -reply`` on the request body, as a public
TSA would. It listens on 127.0.0.1 on a port the system picks, in a thread of this process::

    with LocalTsa(tmp_path) as tsa:
        tsa.url       # http://127.0.0.1:PORT/tsr
        tsa.ca_file   # the CA certificate (PEM) that verifies its tokens
        tsa.verify(data_file, tsr_file)   # openssl ts -verify -data ... -in ... -CAfile ...

Two instances have two unrelated CAs: a token of one does not verify against the other's
``ca_file``. :attr:`LocalTsa.mode` makes it misbehave on purpose: ``"garbage"`` answers bytes
that are no time-stamp response, ``"other-hash"`` time-stamps a different hash than the one asked.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Literal

Mode = Literal["ok", "garbage", "other-hash"]

#: The policy OID the test TSA answers under.
POLICY = "1.3.6.1.4.1.99999.1"

_OPENSSL_TIMEOUT = 60
#: Organisational units that make the CA certificate longer than the TSA's.
_CA_UNITS = ("/OU=Throwaway certificate authority of the ingestd tests"
             "/OU=Time-stamping tests only: trust nothing it signs")

_CNF = """\
[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ ca_ext ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ tsa_ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/ca.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {policy}
other_policies = 1.3.6.1.4.1.99999.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True,
                          timeout=_OPENSSL_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout


class LocalTsa:
    """A test CA, a TSA certificate it signed, and an HTTP responder running ``openssl ts``."""

    def __init__(self, folder: Path, *, name: str = "Test TSA") -> None:
        if shutil.which("openssl") is None:
            raise RuntimeError("openssl is needed for the test TSA (Debian package openssl)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.mode: Mode = "ok"
        self.requests = 0
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.cnf = folder / "openssl.cnf"
        self.cnf.write_text(_CNF.format(dir=folder, policy=POLICY), encoding="utf-8")
        (folder / "serial").write_text("01\n", encoding="ascii")
        self.ca_file = folder / "ca.pem"
        self.ca_key = folder / "ca.key"
        self.signer = folder / "tsa.pem"
        self.signer_key = folder / "tsa.key"
        self._make_certificates(name)

    def _make_certificates(self, name: str) -> None:
        cnf = str(self.cnf)
        for key in (self.ca_key, self.signer_key):
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", str(key))
        _openssl("req", "-config", cnf, "-new", "-x509", "-days", "3650", "-sha256",
                 "-key", str(self.ca_key), "-subj", f"/O=ingestd tests{_CA_UNITS}/CN={name} CA",
                 "-extensions", "ca_ext", "-out", str(self.ca_file))
        csr = self.folder / "tsa.csr"
        _openssl("req", "-config", cnf, "-new", "-key", str(self.signer_key),
                 "-subj", f"/O=ingestd tests/CN={name}", "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_file),
                 "-CAkey", str(self.ca_key), "-CAcreateserial", "-days", "3650", "-sha256",
                 "-extfile", cnf, "-extensions", "tsa_ext", "-out", str(self.signer))
        # openssl ts -reply writes the signer's certificate and then the chain; DER wants a
        # SET OF sorted by encoding, which strict parsers check: the CA's longer encoding
        # keeps the response strict DER.
        ca_len, tsa_len = (len(_openssl("x509", "-in", str(p), "-outform", "DER"))
                           for p in (self.ca_file, self.signer))
        if ca_len <= tsa_len:
            raise RuntimeError(f"test CA certificate ({ca_len} bytes) not longer than the "
                               f"TSA's ({tsa_len} bytes): its tokens would not be strict DER")

    # -- serving ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "the TSA is not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tsr"

    def reply(self, query: bytes) -> bytes:
        """``openssl ts -reply`` on a DER TimeStampReq: the DER TimeStampResp."""
        with self._lock, tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            self.requests += 1
            if self.mode == "garbage":
                return b"this is no time-stamp response\n"
            if self.mode == "other-hash":
                query = _openssl("ts", "-query", "-digest",
                                 hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
                                 "-sha256", "-cert")
            qfile = os.path.join(tmp, "q.tsq")
            with open(qfile, "wb") as fh:
                fh.write(query)
            return _openssl("ts", "-reply", "-config", str(self.cnf), "-queryfile", qfile,
                            "-inkey", str(self.signer_key), "-signer", str(self.signer),
                            "-chain", str(self.ca_file))

    def start(self) -> LocalTsa:
        tsa = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    answer = tsa.reply(body)
                    code = 200
                except RuntimeError as exc:
                    answer, code = str(exc).encode(), 500
                self.send_response(code)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="test-tsa")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = None
            self._thread = None

    def __enter__(self) -> LocalTsa:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- checking -----------------------------------------------------------------------------

    def verify(self, data: Path, tsr: Path, *,
               ca_file: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``openssl ts -verify -data DATA -in TSR -CAfile CA``: what a clerk would run."""
        return subprocess.run(
            ["openssl", "ts", "-verify", "-data", str(data), "-in", str(tsr),
             "-CAfile", str(ca_file or self.ca_file)],
            capture_output=True, text=True, timeout=_OPENSSL_TIMEOUT, check=False)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a TSA that is down)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsr"
