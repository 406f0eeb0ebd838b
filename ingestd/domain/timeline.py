"""An item's custody as people read it: one event per ledger entry, in the order the ledger
holds them, each with its time, actor, a short summary in Chinese and English, the hashes it
names and what was verified when it was made.

Pure: it reads an :class:`~.records.Item`, its current :class:`~.records.Label` and its
:class:`~.models.LedgerEntry` values, and builds frozen values a template shows as they are
(the custody report, the web item page). What a person or a recorder wrote (names, labels,
reasons, paths) is carried as it was, made printable; escaping it is the renderer's job. A kind
this release does not know (written by a later one) still appears, with its kind and its data
summarised safely.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Any

from msgspec import Struct

from .canonical import parse_time
from .flags import REASONS, Flag
from .models import EventKind, LedgerEntry
from .policy import local_time
from .records import Item, Label
from .text import printable

#: The longest a value from an entry's data is shown, and how many keys of a kind this release
#: does not describe are listed.
VALUE_MAX = 300
UNKNOWN_KEYS_MAX = 20


class Bilingual(Struct, frozen=True, kw_only=True):
    """One text in Chinese and in English."""

    zh: str
    en: str


class Fact(Struct, frozen=True, kw_only=True):
    """One recorded fact of an event: what it is (both languages) and its value as recorded."""

    label: Bilingual
    value: str


class HashRef(Struct, frozen=True, kw_only=True):
    """A hash an event names (a SHA-256 in lower-case hex), with what it is the hash of."""

    label: Bilingual
    value: str


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    NOT_CHECKED = "not_checked"  # could not be checked: nothing is claimed either way


class Verification(Struct, frozen=True, kw_only=True):
    """One thing checked when (or about) an event, and what came of it."""

    what: Bilingual
    outcome: Outcome
    detail: str = ""  # what was found, as recorded, when it was not ok


class TimelineEvent(Struct, frozen=True, kw_only=True):
    seq: int
    at: datetime  # UTC, as signed
    local: str  # ``at`` in the time zone the timeline was built for, to the second, with offset
    kind: str  # the entry's kind as stored (an unknown one too)
    known: bool  # False: a kind this release does not know
    actor: str
    station: str
    title: Bilingual
    summary: Bilingual
    facts: tuple[Fact, ...]
    hashes: tuple[HashRef, ...]
    verified: tuple[Verification, ...]
    entry_hash: str
    key_id: str


class ItemTimeline(Struct, frozen=True, kw_only=True):
    """An item, its current label (None: never labelled) and its custody events, oldest first."""

    item: Item
    label: Label | None
    events: tuple[TimelineEvent, ...]

    @property
    def case(self) -> str:
        return self.label.case if self.label else ""

    @property
    def party(self) -> str:
        return self.label.party if self.label else ""

    @property
    def officer(self) -> str:
        """The officer the item is filed under: its label's, else its recorder's."""
        return (self.label.officer if self.label else "") or self.item.officer


def build_timeline(item: Item, entries: Iterable[LedgerEntry], *, tz: tzinfo,
                   label: Label | None = None,
                   signatures: Mapping[int, bool] | None = None) -> ItemTimeline:
    """``item``'s timeline from its ledger entries (``tx.iter_entries(item=sha)``, plus any
    entry naming no item that belongs to it, such as the ``docked`` entries of the sessions
    that read it), ordered by sequence number, each entry once.

    ``signatures``, when given, says for each entry's sequence number whether its hash and
    signature were checked and found valid (True) or not (False); an entry it does not name is
    shown as not checked. Without it no event claims a signature check."""
    unique = {e.seq: e for e in entries}
    events = tuple(timeline_events((unique[s] for s in sorted(unique)), tz=tz,
                                   signatures=signatures))
    return ItemTimeline(item=item, label=label, events=events)


def timeline_events(entries: Iterable[LedgerEntry], *, tz: tzinfo,
                    signatures: Mapping[int, bool] | None = None) -> Iterator[TimelineEvent]:
    """One event per entry, in the order given."""
    for entry in entries:
        yield describe_entry(entry, tz=tz, signatures=signatures)


def describe_entry(entry: LedgerEntry, *, tz: tzinfo,
                   signatures: Mapping[int, bool] | None = None) -> TimelineEvent:
    known = entry.kind in _KINDS
    describe = _DESCRIBERS.get(entry.kind, _generic)
    data = entry.data if isinstance(entry.data, dict) else {}
    try:
        said = describe(_Entry(entry=entry, data=data, tz=tz))
    except (KeyError, TypeError, ValueError, AttributeError):
        # An entry whose data is not of the form its kind had: shown as it is, never dropped.
        said = _generic(_Entry(entry=entry, data=data, tz=tz))
    verified = list(said.verified)
    if signatures is not None:
        valid = signatures.get(entry.seq)
        verified.append(Verification(
            what=Bilingual(zh="条目哈希与签名", en="entry hash and signature"),
            outcome=Outcome.NOT_CHECKED if valid is None else
            Outcome.OK if valid else Outcome.FAILED))
    title = TITLES.get(entry.kind) or (
        Bilingual(zh=_text(entry.kind), en=_text(entry.kind)) if known else
        Bilingual(zh=f"未知类型事件（{_text(entry.kind)}）",
                  en=f"event of unknown kind ({_text(entry.kind)})"))
    return TimelineEvent(
        seq=entry.seq, at=entry.at, local=local_time(entry.at, tz), kind=_text(entry.kind),
        known=known, actor=_text(entry.actor), station=_text(entry.station), title=title,
        summary=said.summary, facts=said.facts, hashes=said.hashes, verified=tuple(verified),
        entry_hash=entry.entry_hash, key_id=_text(entry.key_id))


_KINDS = frozenset(k.value for k in EventKind)

#: Each kind's name, in both languages.
TITLES: dict[str, Bilingual] = {
    EventKind.ACQUIRED: Bilingual(zh="采集", en="acquired"),
    EventKind.STORED: Bilingual(zh="入库", en="stored"),
    EventKind.FLAGGED: Bilingual(zh="标记问题", en="flagged"),
    EventKind.LABELLED: Bilingual(zh="标注", en="labelled"),
    EventKind.HELD: Bilingual(zh="保全", en="held"),
    EventKind.RELEASED: Bilingual(zh="解除保全", en="released"),
    EventKind.JUSTIFIED: Bilingual(zh="说明理由", en="justified"),
    EventKind.REPLICATED: Bilingual(zh="异地复制", en="replicated"),
    EventKind.AUDITED: Bilingual(zh="审计核验", en="audited"),
    EventKind.EXPORTED: Bilingual(zh="导出", en="exported"),
    EventKind.WIPED: Bilingual(zh="记录仪文件删除", en="wiped"),
    EventKind.WIPE_FAILED: Bilingual(zh="记录仪文件删除失败", en="wipe failed"),
    EventKind.RETENTION: Bilingual(zh="保存期限", en="retention"),
    EventKind.EVICTED: Bilingual(zh="移出本地缓存", en="evicted"),
    EventKind.RECORDER_REFUSED: Bilingual(zh="拒绝接入", en="recorder refused"),
    EventKind.DOCKED: Bilingual(zh="接入", en="docked"),
    EventKind.SKIPPED: Bilingual(zh="未采集文件", en="skipped"),
    EventKind.ORPHAN: Bilingual(zh="无主对象", en="orphan"),
    EventKind.REPAIRED: Bilingual(zh="修复", en="repaired"),
    EventKind.REGISTRY: Bilingual(zh="登记变更", en="registry"),
    EventKind.KEY_ROTATED: Bilingual(zh="密钥轮换", en="key rotated"),
    EventKind.GENESIS: Bilingual(zh="账本创建", en="genesis"),
    EventKind.TIME_RULE: Bilingual(zh="时间规则", en="time rule"),
    EventKind.SPOT_CHECKED: Bilingual(zh="抽查", en="spot-checked"),
    EventKind.SPOT_REVIEWED: Bilingual(zh="抽查复核", en="spot check reviewed"),
    EventKind.WORM_CHECKED: Bilingual(zh="WORM 检查", en="WORM check"),
    EventKind.CASE_CLOSED: Bilingual(zh="案件办结", en="case closed"),
    EventKind.CASE_REOPENED: Bilingual(zh="案件重新开启", en="case reopened"),
    EventKind.CASE_ARCHIVED: Bilingual(zh="案件归档", en="case archived"),
}

#: Flags in Chinese (a flag this table lacks is shown by its name).
FLAG_ZH: dict[str, str] = {
    Flag.DAMAGED_MEDIA: "媒体无法读取",
    Flag.EMPTY_FILE: "空文件",
    Flag.LATE_INGEST: "入库逾期",
    Flag.LATE_LABEL: "标注逾期",
    Flag.LATE_REPLICATION: "异地复制逾期",
    Flag.CLOCK_UNSET: "记录仪时钟未设置",
    Flag.CLOCK_SKEW: "记录仪时钟偏差",
    Flag.CHANGED_DURING_COPY: "复制时文件变化",
    Flag.UNREGISTERED_RECORDER: "未登记的记录仪",
    Flag.FIXITY_FAILED: "哈希核验失败",
    Flag.REPLICA_MISMATCH: "异地副本不一致",
    Flag.AUDIT_OVERDUE: "审计逾期",
}


# -- values ------------------------------------------------------------------------------------


def _text(value: Any, limit: int = VALUE_MAX) -> str:
    """A value from an entry as one printable line, at most ``limit`` characters."""
    if value is None:
        out = "—"
    elif isinstance(value, bool):
        out = "yes" if value else "no"
    elif isinstance(value, str):
        out = value
    elif isinstance(value, int | float):
        out = str(value)
    else:
        out = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    out = printable(out)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def human_size(size: Any) -> str:
    """A size in bytes, exact and in binary units (``1,234,567 B (1.2 MiB)``)."""
    if not isinstance(size, int) or isinstance(size, bool):
        return _text(size)
    exact = f"{size:,} B"
    if size < 1024:
        return exact
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{exact} ({value:.1f} {unit})"
    return exact  # pragma: no cover


def _when(value: Any, tz: tzinfo) -> str:
    """A time an entry's data states (RFC 3339 UTC), in ``tz``; anything else as text."""
    if isinstance(value, str):
        try:
            return local_time(parse_time(value), tz)
        except ValueError:
            pass
    return _text(value)


def _sha(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


def _flag(value: Any) -> Bilingual:
    name = _text(value)
    reason = next((why for flag, why in REASONS.items() if flag.value == name), None)
    if reason is None:
        return Bilingual(zh=name, en=name)
    return Bilingual(zh=f"{FLAG_ZH.get(name, name)}（{name}）", en=f"{name} ({reason})")


# -- describing each kind ------------------------------------------------------------------------


class _Entry(Struct, frozen=True, kw_only=True):
    entry: LedgerEntry
    data: dict[str, Any]
    tz: tzinfo

    def get(self, key: str) -> str:
        return _text(self.data.get(key))

    def when(self, key: str) -> str:
        return _when(self.data.get(key), self.tz)


class _Said(Struct, frozen=True, kw_only=True):
    summary: Bilingual
    facts: tuple[Fact, ...] = ()
    hashes: tuple[HashRef, ...] = ()
    verified: tuple[Verification, ...] = ()


def _fact(zh: str, en: str, value: str) -> Fact:
    return Fact(label=Bilingual(zh=zh, en=en), value=value)


def _check(zh: str, en: str, outcome: Outcome, detail: str = "") -> Verification:
    return Verification(what=Bilingual(zh=zh, en=en), outcome=outcome, detail=detail)


def _passed(what: tuple[str, str], ok: bool, detail: str) -> Verification:
    """A check that passed, or failed with ``detail``."""
    return _check(*what, Outcome.OK if ok else Outcome.FAILED, "" if ok else detail)


REHASHED = ("从磁盘重新计算 SHA-256，一致", "SHA-256 re-computed from disk matched")
DECODED = ("完整解码播放", "decoded end to end")
CONTENT = Bilingual(zh="内容 SHA-256", en="content SHA-256")


def _content(e: _Entry) -> tuple[HashRef, ...]:
    sha = _sha(e.entry.item)
    return (HashRef(label=CONTENT, value=sha),) if sha else ()


def _retention_text(stated: Any, tz: tzinfo) -> Bilingual:
    if not isinstance(stated, dict):
        return Bilingual(zh=_text(stated), en=_text(stated))
    cls = _text(stated.get("retention_class"))
    until = stated.get("retain_until")
    hold = stated.get("hold") is True
    zh = f"{cls}，" + (f"保存至 {_when(until, tz)}" if until else "永久保存")
    en = f"{cls}, " + (f"kept until {_when(until, tz)}" if until else "kept without end")
    if hold:
        zh += "，保全中"
        en += ", on legal hold"
    return Bilingual(zh=zh, en=en)


def _retention_facts(e: _Entry, key: str = "retention") -> tuple[Fact, ...]:
    if key not in e.data:
        return ()
    text = _retention_text(e.data[key], e.tz)
    return (_fact("保存期限", "retention", f"{text.zh} / {text.en}"),)


def _acquired(e: _Entry) -> _Said:
    copied = e.data.get("copied") is True
    size = human_size(e.data.get("size"))
    return _Said(
        summary=Bilingual(
            zh=f"从记录仪 {e.get('serial')} 读取 {e.get('path')}（{size}）；"
               + ("复制了新内容" if copied else "内容已在库中，未重复复制"),
            en=f"read {e.get('path')} ({size}) off recorder {e.get('serial')}; "
               + ("new bytes copied" if copied else "bytes already stored, nothing copied")),
        facts=(_fact("记录仪", "recorder", e.get("serial")),
               _fact("文件", "file", e.get("path")),
               _fact("大小", "size", size)),
        hashes=_content(e),
        verified=(_check("读取时计算 SHA-256", "SHA-256 computed as the file was read",
                         Outcome.OK),))


def _stored(e: _Entry) -> _Said:
    found = e.data.get("media")
    media: dict[str, Any] = found if isinstance(found, dict) else {}
    media_ok = media.get("ok") is True
    recorded = f"{e.when('recorded_start')} – {e.when('recorded_end')}"
    facts = [_fact("原始文件名", "original name", e.get("original_name")),
             _fact("记录仪", "recorder", e.get("recorder")),
             _fact("警员", "officer", e.get("officer")),
             _fact("警号", "officer id", e.get("officer_id")),
             _fact("录制时间", "recorded", recorded),
             _fact("时间来源", "time from", e.get("time_source")),
             _fact("大小", "size", human_size(e.data.get("size")))]
    if media_ok:
        facts.append(_fact("媒体", "media",
                           f"{_text(media.get('format'))} {_text(media.get('video_codec'))}/"
                           f"{_text(media.get('audio_codec'))} {_text(media.get('width'))}x"
                           f"{_text(media.get('height'))}, {_text(media.get('duration'))} s"))
    facts.extend(_retention_facts(e))
    return _Said(
        summary=Bilingual(zh=f"存入本站证据库：{e.get('original_name')}（{human_size(e.data.get('size'))}）",
                          en=f"stored in the station's store: {e.get('original_name')} "
                             f"({human_size(e.data.get('size'))})"),
        facts=tuple(facts), hashes=_content(e),
        verified=(_check("存储副本从磁盘读回，SHA-256 一致",
                         "stored copy read back from disk, SHA-256 matched", Outcome.OK),
                  _check("可作为媒体读取", "readable as media",
                         Outcome.OK if media_ok else Outcome.FAILED,
                         "" if media_ok else _text(media.get("error")))))


def _flagged(e: _Entry) -> _Said:
    flag = _flag(e.data.get("flag"))
    return _Said(summary=Bilingual(zh=f"标记：{flag.zh}", en=f"flagged {flag.en}"),
                 facts=(_fact("说明", "detail", e.get("detail")),))


def _labelled(e: _Entry) -> _Said:
    cats = e.data.get("categories")
    categories = ", ".join(_text(c) for c in cats) if isinstance(cats, list) else _text(cats)
    facts = [_fact("案号", "case", e.get("case")), _fact("当事人", "party", e.get("party")),
             _fact("承办人", "officer", e.get("officer")),
             _fact("类别", "categories", categories or "—")]
    if "case_type" in e.data:
        facts.append(_fact("案件类型", "case type", e.get("case_type")))
    facts.extend(_retention_facts(e))
    return _Said(
        summary=Bilingual(zh=f"标注：案号 {e.get('case')}，当事人 {e.get('party')}，"
                             f"承办人 {e.get('officer')}",
                          en=f"labelled: case {e.get('case')}, party {e.get('party')}, "
                             f"officer {e.get('officer')}"),
        facts=tuple(facts))


def _held(e: _Entry) -> _Said:
    held = e.entry.kind == EventKind.HELD
    return _Said(
        summary=Bilingual(zh=("保全" if held else "解除保全") + f"：{e.get('reason')}",
                          en=("placed on legal hold" if held else "legal hold released")
                             + f": {e.get('reason')}"),
        facts=(_fact("理由", "reason", e.get("reason")), *_retention_facts(e)))


def _justified(e: _Entry) -> _Said:
    flag = _flag(e.data.get("flag"))
    return _Said(summary=Bilingual(zh=f"说明 {flag.zh} 的理由：{e.get('reason')}",
                                   en=f"reason given for {flag.en}: {e.get('reason')}"),
                 facts=(_fact("理由", "reason", e.get("reason")),))


def _replicated(e: _Entry) -> _Said:
    target = e.get("target")
    remote = _sha(e.data.get("sha256"))
    item = _sha(e.entry.item)
    matched = remote is not None and remote == item
    read_back = e.data.get("read_back") is True
    checks = [_check(f"{target} 报告的 SHA-256 与内容一致",
                     f"SHA-256 stated by {target} matched the content",
                     Outcome.OK if matched else Outcome.FAILED,
                     "" if matched else f"stated {e.get('sha256')}")]
    checks.append(_check("异地副本读回并核验一致", "off-site copy read back and matched",
                         Outcome.OK if read_back else Outcome.NOT_CHECKED))
    lock = e.when("retain_until") if e.data.get("retain_until") else "—"
    facts = [_fact("目标", "target", target), _fact("对象", "object", e.get("key")),
             _fact("版本", "version", e.get("version_id")),
             _fact("大小", "size", human_size(e.data.get("size"))),
             _fact("锁定至", "locked until", lock),
             _fact("法律保全", "legal hold", e.get("legal_hold"))]
    return _Said(
        summary=Bilingual(zh=f"复制到 {target}" + ("，已读回核验一致" if read_back and matched
                                                      else ""),
                          en=f"copied to {target}" + (", read back and matched"
                                                      if read_back and matched else "")),
        facts=tuple(facts),
        hashes=_content(e) + ((HashRef(label=Bilingual(zh=f"{target} 上副本的 SHA-256",
                                                       en=f"SHA-256 of the copy on {target}"),
                                       value=remote),) if remote else ()),
        verified=tuple(checks))


def _audited(e: _Entry) -> _Said:
    d = e.data
    checks: list[Verification] = []
    if d.get("check") == "fast":
        found = e.get("found")
        checks.append(_check("快速检查（存在与大小，未重新计算哈希）",
                             "fast check (presence and size; not re-hashed)",
                             Outcome.FAILED, f"{found}: {e.get('problem')}"))
    if "fixity" in d:
        ok = d["fixity"] == "ok"
        checks.append(_passed(REHASHED, ok, e.get("fixity")))
    if "decode" in d:
        ok = d["decode"] == "ok"
        checks.append(_passed(DECODED, ok, e.get("decode")))
    offsite = d.get("offsite")
    if isinstance(offsite, dict):
        for target in sorted(offsite):
            said = _text(offsite[target])
            name = _text(target)
            outcome = (Outcome.OK if said == "ok" else Outcome.NOT_CHECKED
                       if said.startswith("not checked") else Outcome.FAILED)
            checks.append(_check(f"{name} 上的异地副本读回，SHA-256 一致",
                                 f"off-site copy on {name} read back and matched", outcome,
                                 "" if outcome == Outcome.OK else said))
    failed = any(c.outcome == Outcome.FAILED for c in checks)
    if not checks:
        summary = Bilingual(zh="审计：本站与异地均无可核验的副本",
                            en="audited: no copy here or off-site to check")
    elif failed:
        summary = Bilingual(zh="审计：发现问题", en="audited: a problem was found")
    else:
        summary = Bilingual(zh="审计：核验通过", en="audited: all checks matched")
    return _Said(summary=summary, hashes=_content(e), verified=tuple(checks))


def _spot_checked(e: _Entry) -> _Said:
    d = e.data
    decoded = (_check(*DECODED, Outcome.NOT_CHECKED, e.get("decode"))
               if d.get("decode") == "not decoded"  # the bytes were wrong: not played
               else _passed(DECODED, d.get("decode") == "ok", e.get("decode")))
    return _Said(
        summary=Bilingual(zh=f"抽查（{e.get('officer')}，周期自 {e.when('period_start')}）："
                             f"{e.get('result')}",
                          en=f"spot-checked (officer {e.get('officer')}, period from "
                             f"{e.when('period_start')}): {e.get('result')}"),
        facts=(_fact("结果", "result", e.get("result")),),
        hashes=_content(e),
        verified=(_passed(REHASHED, d.get("fixity") == "ok", e.get("fixity")), decoded))


def _spot_reviewed(e: _Entry) -> _Said:
    ok = e.data.get("result") == "ok"
    return _Said(
        summary=Bilingual(zh=f"{e.get('by')} 回放复核：{e.get('result')}",
                          en=f"played back by {e.get('by')}: {e.get('result')}"),
        facts=(_fact("复核人", "reviewer", e.get("by")), _fact("备注", "note", e.get("note")),
               _fact("所复核的抽查条目", "spot check entry", e.get("check_seq"))),
        verified=(_check(f"{e.get('by')} 回放查看", f"played back and seen by {e.get('by')}",
                         Outcome.OK if ok else Outcome.FAILED, "" if ok else e.get("note")),))


def _retention(e: _Entry) -> _Said:
    d = e.data
    if "target" in d:  # a lock on an off-site copy extended
        until = e.when("retain_until") if d.get("retain_until") else "—"
        return _Said(
            summary=Bilingual(zh=f"{e.get('target')} 上副本锁定至 {until}",
                              en=f"copy on {e.get('target')} locked until {until}"),
            facts=(_fact("目标", "target", e.get("target")), _fact("类别", "class", e.get("class")),
                   _fact("锁定至", "locked until", until),
                   _fact("法律保全", "legal hold", e.get("legal_hold"))))
    now = _retention_text(d.get("retention"), e.tz)
    return _Said(summary=Bilingual(zh=f"保存期限改为：{now.zh}", en=f"retention now: {now.en}"),
                 facts=(*_retention_facts(e), *_retention_facts(e, "previous"),
                        _fact("原因", "reason", e.get("reason"))))


def _evicted(e: _Entry) -> _Said:
    targets = e.data.get("targets")
    where = ", ".join(_text(t) for t in targets) if isinstance(targets, list) else _text(targets)
    return _Said(summary=Bilingual(zh=f"已在 {where} 核验后移出本地缓存",
                                   en=f"left the local cache, proven on {where}"),
                 facts=(_fact("异地副本", "off-site copies", where),))


def _wiped(e: _Entry) -> _Said:
    failed = e.entry.kind == EventKind.WIPE_FAILED
    facts = [_fact("记录仪", "recorder", e.get("serial")), _fact("文件", "file", e.get("path")),
             _fact("大小", "size", human_size(e.data.get("size")))]
    if failed:
        facts.append(_fact("错误", "error", e.get("error")))
    else:
        facts.append(_fact("删除规则", "wipe policy", e.get("policy")))
    return _Said(
        summary=Bilingual(
            zh=(f"未能删除记录仪 {e.get('serial')} 上的 {e.get('path')}" if failed else
                f"删除记录仪 {e.get('serial')} 上的 {e.get('path')}（删除前再次计算哈希一致）"),
            en=(f"could not delete {e.get('path')} on recorder {e.get('serial')}" if failed else
                f"deleted {e.get('path')} on recorder {e.get('serial')} (hashed again first)")),
        facts=tuple(facts), hashes=_content(e),
        verified=() if failed else (
            _check("删除前文件再次计算 SHA-256，一致",
                   "the file hashed again to the item before deletion", Outcome.OK),))


def _repaired(e: _Entry) -> _Said:
    return _Said(
        summary=Bilingual(zh=f"损坏的存储副本以记录仪 {e.get('serial')} 上的完好内容替换",
                          en=f"damaged stored copy replaced by intact bytes from recorder "
                             f"{e.get('serial')}"),
        facts=(_fact("问题", "problem", e.get("problem")),
               _fact("损坏内容保存于", "damaged bytes kept at", e.get("quarantined_to")),
               _fact("文件", "file", e.get("path"))),
        hashes=_content(e),
        verified=(_check("替换内容的 SHA-256 与内容一致",
                         "the replacing bytes hashed to the item", Outcome.OK),))


def _docked(e: _Entry) -> _Said:
    d = e.data
    facts = [_fact("记录仪", "recorder", e.get("serial")),
             _fact("方式", "source", e.get("source")),
             _fact("挂载点", "mount point", e.get("mountpoint"))]
    if "officer" in d:
        facts.append(_fact("警员", "officer", e.get("officer")))
    if "reason" in d:
        facts.append(_fact("原因", "reason", e.get("reason")))
    if e.entry.kind == EventKind.RECORDER_REFUSED:
        summary = Bilingual(zh=f"拒绝记录仪 {e.get('serial')}：{e.get('reason')}",
                            en=f"recorder {e.get('serial')} refused: {e.get('reason')}")
    elif "reason" in d:
        summary = Bilingual(zh=f"记录仪 {e.get('serial')} 接入但无法读取：{e.get('reason')}",
                            en=f"recorder {e.get('serial')} docked, could not be read: "
                               f"{e.get('reason')}")
    else:
        summary = Bilingual(zh=f"记录仪 {e.get('serial')} 接入（{e.get('source')}）",
                            en=f"recorder {e.get('serial')} docked ({e.get('source')})")
    return _Said(summary=summary, facts=tuple(facts))


def _skipped(e: _Entry) -> _Said:
    return _Said(summary=Bilingual(zh=f"记录仪 {e.get('serial')} 上 {e.get('count')} 个文件未采集",
                                   en=f"{e.get('count')} files on recorder {e.get('serial')} "
                                      "not taken"),
                 facts=(_fact("按类别", "by kind", e.get("by_kind")),))


def _orphan(e: _Entry) -> _Said:
    sha = _sha(e.data.get("sha256"))
    return _Said(summary=Bilingual(zh=f"无主对象：{e.get('action')}",
                                   en=f"object named by no item: {e.get('action')}"),
                 facts=(_fact("大小", "size", human_size(e.data.get("size"))),
                        _fact("问题", "problem", e.get("problem"))),
                 hashes=(HashRef(label=Bilingual(zh="对象名", en="object name"), value=sha),)
                 if sha else ())


def _generic(e: _Entry) -> _Said:
    """Any kind: its data's keys and values, each made printable and cut short."""
    keys = sorted(str(k) for k in e.data)
    shown = keys[:UNKNOWN_KEYS_MAX]
    hashes = tuple(HashRef(label=Bilingual(zh=_text(k, 60), en=_text(k, 60)), value=sha)
                   for k in shown if (sha := _sha(e.data[k])) is not None)
    facts = [Fact(label=Bilingual(zh=_text(k, 60), en=_text(k, 60)), value=_text(e.data[k]))
             for k in shown if _sha(e.data[k]) is None]
    if len(keys) > UNKNOWN_KEYS_MAX:
        more = len(keys) - UNKNOWN_KEYS_MAX
        facts.append(_fact("其余", "more", f"{more} more keys"))
    kind = _text(e.entry.kind)
    title = TITLES.get(e.entry.kind)
    return _Said(summary=Bilingual(zh=title.zh if title else f"事件 {kind}",
                                   en=title.en if title else f"event {kind}"),
                 facts=tuple(facts), hashes=hashes)


_DESCRIBERS: dict[str, Callable[[_Entry], _Said]] = {
    EventKind.ACQUIRED: _acquired,
    EventKind.STORED: _stored,
    EventKind.FLAGGED: _flagged,
    EventKind.LABELLED: _labelled,
    EventKind.HELD: _held,
    EventKind.RELEASED: _held,
    EventKind.JUSTIFIED: _justified,
    EventKind.REPLICATED: _replicated,
    EventKind.AUDITED: _audited,
    EventKind.RETENTION: _retention,
    EventKind.EVICTED: _evicted,
    EventKind.WIPED: _wiped,
    EventKind.WIPE_FAILED: _wiped,
    EventKind.REPAIRED: _repaired,
    EventKind.DOCKED: _docked,
    EventKind.RECORDER_REFUSED: _docked,
    EventKind.SKIPPED: _skipped,
    EventKind.ORPHAN: _orphan,
    EventKind.SPOT_CHECKED: _spot_checked,
    EventKind.SPOT_REVIEWED: _spot_reviewed,
}
