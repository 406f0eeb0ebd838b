"""The WORM standing as the domain uses it: a proven copy on a target whose last WORM check
failed is safe for nothing (neither eviction nor a wipe) until it passes again; a check passes
only when the canary, its deletion and its shortening were all tried and every attempt held;
the canary's lock is renewed as it nears its date; a copy's lock is judged against the one
recorded for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingestd.domain import policy
from ingestd.domain.policy import WipeBar, WipeMode, WormAttempt, WormProbe

NOW = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)
STORED = NOW - timedelta(days=60)
REQUIRED = frozenset({"nas", "cloud"})


def evict(*, proven: frozenset[str] = REQUIRED, worm_failed: frozenset[str]) -> bool:
    return policy.may_evict(required=REQUIRED, proven=proven, worm_failed=worm_failed,
                            stored_at=STORED, now=NOW, local_keep=timedelta(days=30),
                            hold=False, local_present=True, ours=True)


def wipe(*, proven: frozenset[str] = REQUIRED, worm_failed: frozenset[str],
         mode: WipeMode = WipeMode.AFTER_OFFSITE_VERIFY) -> WipeBar | None:
    return policy.file_wipe_bar(mode=mode, required=REQUIRED, verified=True, proven=proven,
                                worm_failed=worm_failed)


def test_a_failing_required_target_keeps_the_local_copy_and_the_recorder_file() -> None:
    assert evict(worm_failed=frozenset())
    assert not evict(worm_failed=frozenset({"cloud"}))
    assert wipe(worm_failed=frozenset()) is None
    assert wipe(worm_failed=frozenset({"cloud"})) is WipeBar.WORM_FAILED


def test_a_failing_target_that_is_not_required_changes_nothing() -> None:
    assert evict(worm_failed=frozenset({"spare"}))
    assert wipe(worm_failed=frozenset({"spare"})) is None


def test_without_a_proven_copy_the_bar_is_still_the_missing_proof() -> None:
    assert wipe(proven=frozenset({"nas"}), worm_failed=frozenset({"cloud"})) is WipeBar.NOT_PROVEN
    assert not evict(proven=frozenset({"nas"}), worm_failed=frozenset())


def test_a_local_verify_wipe_does_not_ask_for_off_site_copies_at_all() -> None:
    assert wipe(mode=WipeMode.AFTER_LOCAL_VERIFY, proven=frozenset(),
                worm_failed=REQUIRED) is None


def test_safe_copies_are_the_proven_ones_off_failing_targets() -> None:
    assert policy.safe_copies({"nas", "cloud"}, worm_failed={"cloud", "spare"}) == {"nas"}
    assert policy.safe_copies(set(), worm_failed={"cloud"}) == frozenset()


def attempt(probe: WormProbe, held: bool = True) -> WormAttempt:
    return WormAttempt(probe=probe, held=held, detail="")


CORE = [attempt(WormProbe.CANARY), attempt(WormProbe.DELETE), attempt(WormProbe.SHORTEN)]


def test_a_check_passes_only_when_every_attempt_held() -> None:
    assert policy.worm_passed(CORE)
    assert policy.worm_passed([*CORE, attempt(WormProbe.SAMPLE)])
    assert not policy.worm_passed([*CORE, attempt(WormProbe.SAMPLE, held=False)])
    for i in range(3):
        let_through = list(CORE)
        let_through[i] = attempt(let_through[i].probe, held=False)
        assert not policy.worm_passed(let_through)


@pytest.mark.parametrize("missing", [WormProbe.CANARY, WormProbe.DELETE, WormProbe.SHORTEN])
def test_a_check_that_did_not_try_everything_does_not_pass(missing: WormProbe) -> None:
    tried = [a for a in CORE if a.probe is not missing]
    assert not policy.worm_passed([*tried, attempt(WormProbe.SAMPLE)])


def test_the_canary_lock_is_renewed_as_it_nears_its_date() -> None:
    assert policy.canary_lock_due(None, NOW) == NOW + policy.CANARY_LOCK
    far = NOW + policy.CANARY_RENEW
    assert policy.canary_lock_due(far, NOW) is None
    near = far - timedelta(seconds=1)
    assert policy.canary_lock_due(near, NOW) == NOW + policy.CANARY_LOCK
    assert policy.canary_lock_due(NOW - timedelta(days=1), NOW) == NOW + policy.CANARY_LOCK
    # a shortened canary still has a date ahead: the attempt never leaves it unlocked
    assert policy.CANARY_LOCK - policy.CANARY_SHORTEN > policy.CANARY_RENEW


UNTIL = datetime(2027, 3, 1, 2, 0, 0, 500000, tzinfo=UTC)
WHOLE = UNTIL.replace(microsecond=0)  # what a server keeps of it


def problem(*, mode: str | None = "COMPLIANCE", until: datetime | None = WHOLE,
            hold: bool = False, expected_hold: bool = False) -> str | None:
    return policy.lock_problem(expected_until=UNTIL, expected_hold=expected_hold, mode=mode,
                               until=until, hold=hold)


def test_a_copy_lock_must_be_compliance_to_the_recorded_date_or_later() -> None:
    assert problem() is None  # the server keeps whole seconds
    assert problem(until=UNTIL + timedelta(days=9)) is None  # extended since: fine
    assert problem(until=UNTIL - timedelta(seconds=1)) is not None
    assert problem(mode="GOVERNANCE") is not None
    assert problem(mode=None, until=None) is not None
    assert problem(expected_hold=True) is not None
    assert problem(expected_hold=True, hold=True) is None
