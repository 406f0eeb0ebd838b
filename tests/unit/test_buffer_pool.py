"""The process's copy buffers: page-aligned (as O_DIRECT needs), reused, and within one budget
however many copies run at once, every one of them served."""

from __future__ import annotations

import ctypes
import os
import threading

from ingestd.errors import ShutdownRequested
from ingestd.integrity.hashing import ALIGN, BufferPool

SIZE = 64 * 1024


def _address(buf: object) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))  # type: ignore[arg-type]


def test_buffers_are_aligned_whole_blocks_and_reused() -> None:
    pool = BufferPool(8 * SIZE, keep=4)
    with pool.lease(SIZE + 1, want=2) as first:
        assert [len(b) for b in first] == [SIZE + ALIGN] * 2
        assert all(_address(b) % ALIGN == 0 for b in first)
        ids = {id(b) for b in first}
    with pool.lease(SIZE + 1, want=2) as again:
        assert {id(b) for b in again} == ids


def test_many_copies_at_once_stay_within_the_budget_and_all_are_served() -> None:
    budget = 6 * SIZE
    pool = BufferPool(budget, keep=2)
    lock = threading.Lock()
    held = [0, 0]  # now, most ever
    served: list[int] = []
    start = threading.Barrier(25)

    def copy(n: int) -> None:
        start.wait()
        for _ in range(3):
            with pool.lease(SIZE, want=4, least=2) as buffers:
                assert len(buffers) >= 2
                with lock:
                    held[0] += len(buffers) * SIZE
                    held[1] = max(held[1], held[0])
                for buf in buffers:
                    buf[0] = n  # in use
                with lock:
                    held[0] -= len(buffers) * SIZE
        with lock:
            served.append(n)

    threads = [threading.Thread(target=copy, args=(n,), daemon=True) for n in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(served) == list(range(25))
    assert 2 * SIZE <= held[1] <= budget


def test_a_lease_larger_than_the_budget_is_granted_when_nothing_else_is_held() -> None:
    pool = BufferPool(2 * SIZE, keep=1)
    with pool.lease(SIZE, want=4, least=3) as buffers:
        assert len(buffers) == 3
    with pool.lease(SIZE, want=1) as (one,):
        assert len(one) == SIZE


def test_buffers_taken_by_one_thread_and_given_back_by_another_keep_the_budget() -> None:
    """An upload reads parts into buffers it takes, and each part's sender gives them back:
    many uploads at once never hold more than the budget, and every part is served."""
    budget = 4 * SIZE
    pool = BufferPool(budget, keep=4)
    sent: list[int] = []
    guard = threading.Lock()

    def send(buffers: list[object], part: int) -> None:
        with guard:
            sent.append(part)
        pool.give(buffers)  # type: ignore[arg-type]

    def upload(n: int) -> None:
        senders = []
        for part in range(5):
            buffers = pool.take(SIZE, 2)
            assert [len(b) for b in buffers] == [SIZE, SIZE]
            sender = threading.Thread(target=send, args=(buffers, n * 10 + part), daemon=True)
            sender.start()
            senders.append(sender)
        for sender in senders:
            sender.join(timeout=30)

    uploads = [threading.Thread(target=upload, args=(n,), daemon=True) for n in range(6)]
    for t in uploads:
        t.start()
    for t in uploads:
        t.join(timeout=30)
    assert sorted(sent) == sorted(n * 10 + part for n in range(6) for part in range(5))
    assert pool.peak <= budget


def test_a_copy_told_to_stop_while_it_waits_for_buffers_stops_without_them() -> None:
    """A cold stop: a copy waiting its turn for buffers ends with ShutdownRequested while
    another copy still holds them all, rather than when that one gives some back; the pool
    then serves the next copy as before."""
    pool = BufferPool(2 * ALIGN, keep=2)
    stop, holding, waiter_done = threading.Event(), threading.Event(), threading.Event()
    outcome: list[str] = []

    def hold_all() -> None:
        with pool.lease(ALIGN, want=2, least=2):
            holding.set()
            waiter_done.wait(30)  # held until the waiter has finished, whichever way

    def wait_for_some() -> None:
        try:
            with pool.lease(ALIGN, want=1, abort=stop):
                outcome.append("served")
        except ShutdownRequested as exc:
            outcome.append(f"stopped (abort={exc.abort}) with {pool.held} bytes held")
        finally:
            waiter_done.set()

    holder = threading.Thread(target=hold_all)
    holder.start()
    assert holding.wait(10)
    waiter = threading.Thread(target=wait_for_some)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and outcome == [], "it waits while the budget is held"
    stop.set()
    waiter.join(30)
    holder.join(30)
    assert outcome == [f"stopped (abort=True) with {2 * ALIGN} bytes held"]
    assert pool.held == 0
    with pool.lease(ALIGN, want=2, least=2) as buffers:
        assert len(buffers) == 2, "the queue holds no ticket of the copy that stopped"


def _mapping(address: int) -> dict[str, str]:
    """The kernel's account (``/proc/self/smaps``) of the mapping that holds ``address``."""
    entry: dict[str, str] | None = None
    with open("/proc/self/smaps", encoding="ascii") as smaps:
        for line in smaps:
            head = line.split()
            if "-" in head[0] and ":" not in head[0]:  # a mapping's first line
                if entry is not None:
                    return entry
                start, end = (int(x, 16) for x in head[0].split("-"))
                entry = {"perms": head[1]} if start <= address < end else None
            elif entry is not None:
                key, _, value = line.partition(":")
                entry[key] = value.strip()
    if entry is None:
        raise AssertionError(f"no mapping holds {address:#x}")
    return entry


def _huge_pages_on_request() -> bool:
    """Whether this kernel gives transparent huge pages to memory that asks (its mode is
    ``always`` or ``madvise``, not ``never``, nor missing)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii") as f:
            return "[never]" not in f.read()
    except FileNotFoundError:
        return False


def test_large_buffers_are_private_memory_on_huge_pages() -> None:
    """Direct reads and writes pin the buffer's pages and hand the device one segment per
    page: a 4 MiB buffer on 2 MiB pages goes out as a few long segments, not a thousand
    small ones. Shared memory (shmem) would not get huge pages on a stock system."""
    pool = BufferPool(8 * 2**20, keep=2)
    with pool.lease(4 * 2**20, want=2) as buffers:
        for buf in buffers:
            buf[:] = b"\x5a" * len(buf)  # touched whole, as a copy fills it
        for buf in buffers:
            seen = _mapping(_address(buf))
            flags = seen["VmFlags"].split()
            assert seen["perms"] == "rw-p", f"a private mapping, not shared: {seen['perms']}"
            assert "hg" in flags, f"huge pages asked for (madvise): VmFlags {flags}"
            huge_kib = int(seen["AnonHugePages"].split()[0])
            if _huge_pages_on_request():
                assert huge_kib >= 2048, f"at least one 2 MiB page of 4 MiB: {seen}"
            else:
                assert huge_kib == 0


def test_a_forked_child_never_shares_a_copy_buffer() -> None:
    """A buffer being filled by a direct read must stay the parent's: if a fork made its
    pages copy-on-write, the read's bytes could land in the page the child keeps. The
    buffers are not mapped in a forked child at all."""
    pool = BufferPool(2 * 2**20, keep=1)
    with pool.lease(2 * 2**20, want=1) as (buf,):
        buf[:4] = b"evid"
        address = _address(buf)
        assert "dc" in _mapping(address)["VmFlags"].split(), "MADV_DONTFORK"
        pid = os.fork()
        if pid == 0:  # the child: only /proc and _exit, never back into pytest
            code = 1  # mapped here, or something else went wrong
            try:
                _mapping(address)
            except AssertionError:
                code = 0  # not mapped here: as it must be
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child must not see the buffer"
        assert buf[:4] == b"evid", "the parent's buffer is untouched"
