"""Confining a test's child process the way the systemd units confine ingestd, without systemd.

The machine running the tests may have no systemd as init, so the units' restrictions that
matter most for whether ingestd works at all are applied by hand, with the kernel's own means:

* ``SystemCallFilter=`` -- the allowed system calls are computed from the unit files' lines
  (groups expanded by ``systemd-analyze syscall-filter``, ``~`` lines removing, an empty line
  resetting), and loaded as a seccomp filter through libseccomp, refusing the rest with EPERM
  as ``SystemCallErrorNumber=EPERM`` does;
* ``MemoryDenyWriteExecute=yes`` -- the kernel's ``PR_SET_MDWE`` (inherited across exec);
* ``UMask=``.

:data:`PRELUDE` is Python source for the child: it defines ``confine()``, which reads the
allowed calls from the file named by ``$CONFINE_SYSCALLS`` and applies all three.
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

# Allowed whatever the filter says, so that the service can be started at all (systemd does
# the same for an allow-list).
_ALWAYS = {"execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"}


@functools.cache
def syscall_group(name: str) -> frozenset[str]:
    """The system calls of ``@name`` (nested groups expanded), as systemd defines it."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= syscall_group(item) if item.startswith("@") else {item}
    return frozenset(calls)


def _expand(items: str) -> set[str]:
    calls: set[str] = set()
    for item in items.split():
        calls |= syscall_group(item) if item.startswith("@") else {item}
    return calls


def allowed_syscalls(*unit_files: Path) -> set[str]:
    """The allow-list that ``SystemCallFilter=`` lines of the unit files (in order, a drop-in
    after its unit) leave."""
    allowed: set[str] | None = None
    for path in unit_files:
        for line in _service_lines(path, "SystemCallFilter"):
            if not line:
                allowed = None
            elif line.startswith("~"):
                if allowed is not None:
                    allowed -= _expand(line[1:])
            else:
                allowed = _expand(line) | (allowed or set())
    assert allowed is not None, "no SystemCallFilter= allow-list in the units"
    return allowed | _ALWAYS


def umask(*unit_files: Path) -> int:
    values = [v for p in unit_files for v in _service_lines(p, "UMask")]
    return int(values[-1], 8)


def _service_lines(path: Path, key: str) -> list[str]:
    """Every value of ``key`` in the [Service] section, in order (configparser keeps one)."""
    section = ""
    values = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if re.fullmatch(r"\[.+\]", line):
            section = line
        elif section == "[Service]" and line.startswith(key + "="):
            values.append(line.split("=", 1)[1].strip())
    return values


def write_syscalls(path: Path, *unit_files: Path) -> Path:
    path.write_text("\n".join(sorted(allowed_syscalls(*unit_files))) + "\n", encoding="ascii")
    path.chmod(0o644)
    return path


PRELUDE = r'''
def confine(umask):
    import ctypes, errno, os
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0 or libc.prctl(66, 0, 0, 0, 0) != 1:  # PR_SET/GET_MDWE
        raise SystemExit("this kernel cannot refuse writable+executable memory (PR_SET_MDWE)")
    seccomp = ctypes.CDLL("libseccomp.so.2")
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                         ctypes.c_uint]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = seccomp.seccomp_init(0x00050000 | errno.EPERM)  # SCMP_ACT_ERRNO(EPERM)
    with open(os.environ["CONFINE_SYSCALLS"], encoding="ascii") as f:
        for name in f.read().split():
            number = seccomp.seccomp_syscall_resolve_name(name.encode())
            if number != -1:  # -1: no such call on this architecture
                seccomp.seccomp_rule_add(ctx, 0x7FFF0000, number, 0)  # SCMP_ACT_ALLOW
    if seccomp.seccomp_load(ctx) != 0:
        raise SystemExit("could not load the system call filter")
    os.umask(umask)
'''



#: Shell commands for the first thing a test's new mount namespace does: detach its copies of
#: the mounts under /tmp (other tests' recorders), which would otherwise keep their file systems
#: alive and make a read-write mount of the same device, elsewhere, fail as busy.
RELEASE_COPIED_MOUNTS = (
    "awk '$5 ~ \"^/tmp/\" {print $5}' /proc/self/mountinfo | sort -r"
    " | while read -r m; do umount -l \"$m\" 2>/dev/null; done; "
)
