"""Suricata outputs: rules, datasets files and IP reputation files.

* **Rules** (Suricata 7 rule syntax): one rule per (indicator, value). Addresses and
  CIDRs become IP-only rules in both directions (``<>``), domains ``dns.query`` rules
  matching the domain and its subdomains (``dotprefix`` + ``endswith``), ``http://``
  URLs ``http.host`` + ``http.uri`` rules. Values a rule cannot express (hashes,
  e-mail addresses, ``https://`` URLs whose path the sensor cannot see) are counted as
  skipped: use the datasets files for hashes. ``sid``/``rev`` come from an allocator
  the caller passes (the export service keeps them stable in the database): the sid of
  a rule never changes across runs, its rev is bumped when the rule's text changes.
* **Datasets** (``dataset:isset,<name>,type <t>,load <file>``): one value per line, no
  blank lines, no comments — Suricata refuses the whole file on one bad line. Types:
  ``string`` (base64 of the value, for ``dns.query``), ``md5``, ``sha256`` (lower-case
  hex), ``ipv4`` and ``ip`` (single addresses; CIDRs are skipped and counted).
* **IP reputation** (``reputation-categories-file`` and ``reputation-files``): a fixed
  categories file mapping the STIX ``indicator-type-ov`` vocabulary to ids 1-7, and
  ``ip-or-cidr,category,score`` lines with the score (1-127) scaled from the STIX
  confidence (0-100; 64 when the producer gave none).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol

from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import ExportItem, Observable

SID_BASE = 1_000_000_000
BATCH = 2000
SKIP_RULE_KIND = "no Suricata rule form for this kind (use a dataset)"
SKIP_HTTPS = "https URL: the sensor sees only the host (use the domain)"
SKIP_URL_SCHEME = "URL of a scheme other than http or https: no Suricata rule form (use a dataset)"
SKIP_CIDR = "CIDR in a dataset of single addresses"


class RuleRow(NamedTuple):
    """The rules of one exported object, before their sids are known.

    ``row_id``: the stored version they come from (0 when there is none): the
    store remembers a row's rules by it (and by ``added_us``, when the row was added).
    ``check``: a digest of what the
    rules' texts depend on besides the stored row (:class:`RuleContext`): while it is
    unchanged the row's remembered rules are still right.
    ``values``: the (kind, value) of each rule (:func:`rule_key`); ``bodies``: each
    rule's text up to its ``sid`` (:func:`rule_digest`).
    """

    row_id: int
    check: int
    stix_id: str
    values: tuple[Observable, ...]
    bodies: tuple[str, ...]
    added_us: int = 0

    def rule_keys(self) -> list[str]:
        """The :func:`rule_key` of each rule."""
        return [rule_key(self.stix_id, kind, value) for kind, value in self.values]


#: The (sid, rev) of each rule of each row.
SidAllocator = Callable[[Sequence[RuleRow]], Sequence[Sequence[tuple[int, int]]]]


class RuleStore(Protocol):
    """Where the sids and revs of rules are kept, and the finished rules of stored rows
    remembered (the export service's database)."""

    def recall(self, row_ids: Sequence[int]) -> Mapping[int, tuple[int, str]]:
        """Row id -> (check, rules text) of the rows whose rules were remembered (and
        maybe of other rows)."""

    def allocate(self, rows: Sequence[RuleRow]) -> Sequence[str]:
        """The finished rules of each row (:func:`finished`), with sids and revs by rule
        key, remembered for the rows stored."""


def finished(row: RuleRow, ids: Sequence[tuple[int, int]]) -> str:
    """The rules of ``row`` with the (sid, rev) of each, a line each."""
    return "".join([f"{body}{_SID_REV.format(sid=sid, rev=rev)}\n"
                    for body, (sid, rev) in zip(row.bodies, ids, strict=True)])


class Unremembered:
    """A :class:`RuleStore` that remembers nothing: every rule's sid and rev come from
    ``allocate``."""

    def __init__(self, allocate: SidAllocator) -> None:
        self._allocate = allocate

    def recall(self, row_ids: Sequence[int]) -> Mapping[int, tuple[int, str]]:
        return {}

    def allocate(self, rows: Sequence[RuleRow]) -> list[str]:
        return [finished(row, ids) for row, ids in zip(rows, self._allocate(rows), strict=True)]

_SAFE_CONTENT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~/?&=%+,!*'()@$[]#"
)
_ALL_SAFE = re.compile("[" + re.escape("".join(sorted(_SAFE_CONTENT))) + "]*")
_UNSAFE_TEXT = re.compile(r'[";\\,|]')
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TLP_LABELS = {int(t): t.label for t in Tlp}


def _content(value: str) -> str:
    """A ``content`` argument: printable safe characters as is, the rest as |hex|."""
    if _ALL_SAFE.fullmatch(value):
        return value
    out: list[str] = []
    for ch in value:
        if ch in _SAFE_CONTENT:
            out.append(ch)
        else:
            out.append("|" + " ".join(f"{b:02X}" for b in ch.encode()) + "|")
    return "".join(out).replace("||", " ")


def _text(value: str, limit: int = 120) -> str:
    """Free text for ``msg`` or metadata: no quotes, semicolons, backslashes, commas."""
    if value.isprintable() and not _UNSAFE_TEXT.search(value):
        cleaned = value  # nothing to replace: the common case
    else:
        cleaned = "".join(" " if ch in '";\\,|\r\n\t' or not ch.isprintable() else ch for ch in value)
    return " ".join(cleaned.split())[:limit]


def _meta_value(value: str) -> str:
    return "_".join(_text(value, 80).split()) or "none"


#: The end of every rule body: the allocator's sid and rev fill it (see :func:`finished`).
_SID_REV = "sid:{sid}; rev:{rev};)"


class RuleContext(NamedTuple):
    """What the rules of a stored row depend on besides the row, which is never changed
    once stored (only a schema migration rewrites stored rows' export columns).

    ``stored``: names what the rows' columns were written by (the database's schema
    revision); ``lists``: the warninglists screening the values and whether listed
    values are dropped, which decide the values kept of a row with a value on a list.
    Each row's ``check`` (:class:`RuleRow`) digests these with the names of the row's
    TLP, community and producer and a fingerprint of this module's rule writer
    (:func:`writer_fingerprint`): a remembered check that differs means a text may
    differ, so the row's rules are looked up by key again (their revs bumped where the
    text did change). Computed once per (TLP, community, producer), not per row.
    """

    stored: str
    lists: str


class _Rules:
    """Rule bodies of the items of one export.

    What a rule says about its object (``msg`` and ``metadata``) is built once per
    object, from the parts every object of one (TLP, community, producer) shares, built
    once per export, and the metadata words of a day once per export. Without a
    ``context`` every row's check is 0 (texts for the writer's own fingerprint).
    """

    __slots__ = ("_groups", "_days", "_context")

    def __init__(self, context: RuleContext | None = None) -> None:
        self._groups: dict[tuple[int, str, str], tuple[str, str, int, int]] = {}
        self._days: dict[str, str] = {}
        self._context = context

    def check(self, item: ExportItem) -> int:
        """The check of the item's row (:class:`RuleRow`)."""
        group = self._group_of(item)
        return group[3] if item.warninglists else group[2]

    def row(self, item: ExportItem, check: int, skipped: Counter[str]) -> RuleRow | None:
        """The item's rules before their sids are known, or None if none of its values
        has a rule form (counted in ``skipped``)."""
        observables = item.observables
        if len(observables) == 1:  # most objects: one value, one rule
            head = _head(observables[0])
            if head is None:
                skipped[_skip_reason(observables[0])] += 1
                return None
            opening, meta = self.tail(item)
            return _new_row(RuleRow, (item.row_id, check, item.stix_id, observables,
                                      (f"{head[0]} {opening}{head[1]}{meta}",), item.added_us))
        kept: list[Observable] = []
        texts: list[str] = []
        tail: tuple[str, str] | None = None
        for observable in observables:
            head = _head(observable)
            if head is None:
                skipped[_skip_reason(observable)] += 1
                continue
            if tail is None:
                tail = self.tail(item)
            kept.append(observable)
            texts.append(f"{head[0]} {tail[0]}{head[1]}{tail[1]}")
        if not texts:
            return None
        return _new_row(RuleRow, (item.row_id, check, item.stix_id, tuple(kept), tuple(texts), item.added_us))

    def tail(self, item: ExportItem) -> tuple[str, str]:
        """``(msg:"..."; `` and ``metadata:...; ``: what comes before and after the match
        options of each of the item's rules."""
        group = self._group_of(item)
        full = group[0] + (item.name or item.stix_id)
        # Printable text without characters to replace or spaces to squeeze is msg as is.
        if full.isprintable() and not _UNSAFE_TEXT.search(full) and "  " not in full and full[-1] != " ":
            msg = full[:200]
        else:
            msg = _text(full, 200)
        if item.created:  # objects without versions (SCOs) have neither date
            days = self._days
            created, modified = item.created[:10], item.modified[:10]
            meta = (f"metadata:cw_id {item.stix_id}{group[1]}, "
                    f"created_at {days.get(created) or self._day(created)}, "
                    f"updated_at {days.get(modified) or self._day(modified)}; ")
        else:
            meta = f"metadata:cw_id {item.stix_id}{group[1]}; "
        return f'(msg:"{msg}"; ', meta

    def _group_of(self, item: ExportItem) -> tuple[str, str, int, int]:
        group = self._groups.get((item.tlp, item.community, item.producer))
        return group if group is not None else self._group(item.tlp, item.community, item.producer)

    def _group(self, tlp: int, community: str, producer: str) -> tuple[str, str, int, int]:
        """The msg's start, the metadata's TLP, community and producer words, and the
        checks of rows without and with a value on a warninglist."""
        groups = self._groups
        if len(groups) >= 4096:  # names are few; stay bounded all the same
            groups.clear()
        label = _TLP_LABELS[tlp]
        plain = listed = 0
        context = self._context
        if context is not None:
            words = f"{writer_fingerprint()}\x00{context.stored}\x00{tlp}\x00{community}\x00{producer}"
            plain, listed = _check(words), _check(f"{words}\x00{context.lists}")
        found = groups[tlp, community, producer] = (
            f"CommonWatch {label} {community}/{producer}: ",
            f", cw_tlp {_meta_value(label)}, cw_community {_meta_value(community)}, "
            f"cw_producer {_meta_value(producer)}", plain, listed)
        return found

    def _day(self, day: str) -> str:
        days = self._days
        if len(days) >= 4096:
            days.clear()
        found = days[day] = _date_word(day)
        return found


def _date_word(timestamp: str) -> str:
    """``YYYY_MM_DD`` of a timestamp (metadata values are words), "none" for text that
    is not one: only a date may reach the rule text."""
    day = timestamp[:10]
    return day.replace("-", "_") if _DATE.fullmatch(day) else "none"


def _head(observable: Observable) -> tuple[str, str] | None:
    """(rule header, match options) of a value, or None if no rule can express it."""
    kind, value = observable
    if kind in ("ipv4-addr", "ipv6-addr"):
        return f"alert ip $HOME_NET any <> {value} any", ""
    if kind == "domain-name":
        return ("alert dns $HOME_NET any -> any any",
                f'dns.query; dotprefix; content:".{_content(value)}"; endswith; nocase; ')
    if kind == "url" and value.startswith("http://"):
        host, _, rest = value[7:].partition("/")
        # http.host is the Host header without its port: "[v6 literal]" keeps its brackets
        host = host[:host.index("]") + 1] if host.startswith("[") else host.partition(":")[0]
        path = "/" + rest
        return ("alert http $HOME_NET any -> any any",
                f'flow:established,to_server; http.host; content:"{_content(host)}"; '
                f'bsize:{len(host.encode())}; '
                f'http.uri; content:"{_content(path)}"; bsize:{len(path.encode())}; ')
    return None


def _skip_reason(observable: Observable) -> str:
    """Why a value has no rule (:func:`_head` gave none)."""
    kind, value = observable
    if kind != "url":
        return SKIP_RULE_KIND
    return SKIP_HTTPS if value.startswith("https://") else SKIP_URL_SCHEME


def rule_key(stix_id: str, kind: str, value: str) -> str:
    """The stable key of the rule of a value of an object: its sid follows it."""
    return hashlib.sha256(f"{stix_id}|{kind}|{value}".encode()).hexdigest()


def rule_digest(body: str) -> str:
    """The digest of a rule's text (``rev`` is bumped when it changes). It covers the
    body with its ``{sid}``/``{rev}`` slots unfilled, as it always has, so revs stay
    stable across versions of this code."""
    return hashlib.sha256((body + _SID_REV).encode()).hexdigest()[:32]


def _check(text: str) -> int:
    """64 bits of SHA-256 of ``text``, as a signed 64-bit column holds them."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


#: Objects whose rules exercise every form of rule text (:func:`writer_fingerprint`).
_SAMPLE = tuple(
    ExportItem(f"indicator--{n:08d}-0000-4000-8000-000000000000", "", name, tlp, community, "Org \u00e9",
               None, created, created, None, (), tuple(Observable(*o) for o in observables), b"", hits, 0, n)
    for n, (name, tlp, community, created, observables, hits) in enumerate([
        ("C2 server", 1, "cert", "2024-03-01T12:00:00.000Z", (("ipv4-addr", "198.51.100.7"),), ()),
        ('a "quoted"; name, with | bars \\ and  spaces ', 3, "ops team", "", (
            ("ipv6-addr", "2001:db8::/32"), ("domain-name", "xn--bcher-kva.example"),
            ("url", "http://[2001:db8::1]:8080/a b?c=\u00e9"), ("url", "https://example.org/x"),
            ("md5", "0" * 32)), ("list",)),
        ("", 4, "r", "not a date", (("url", "http://example.com:81/"), ("url", "ftp://x.example/")), ()),
        ("x" * 300, 0, "c" * 90, "2024-03-01T12:00:00Z", (("domain-name", "a.example"),), ()),
    ]))


@functools.cache
def writer_fingerprint() -> str:
    """A digest of the rules this module writes for :data:`_SAMPLE`: a change to the
    rule writer changes it, so rows remembered under the old writer are looked up by
    key again and their revs follow their texts (:class:`RuleContext`)."""
    fixed: SidAllocator = lambda rows: [[(1, 1)] * len(row.bodies) for row in rows]  # noqa: E731
    text = "".join(rules(_SAMPLE, Unremembered(fixed), Counter(), None))
    return hashlib.sha256(text.encode()).hexdigest()


def rules(
    items: Iterable[ExportItem], store: RuleStore, skipped: Counter[str],
    context: RuleContext | None = None,
) -> Iterator[str]:
    """Rules text, one chunk per batch of objects; sids and revs from ``store``, where
    the rules of stored rows are remembered; the rows' checks from ``context`` (none:
    every check is 0).

    A row whose remembered check equals its check now has the rules it had: they are
    written as remembered, without being built again (most rows of most exports). The
    others are built, their sids and revs allocated by rule key, and remembered.
    """
    pending: list[tuple[ExportItem, int]] = []
    bodies = _Rules(context)
    for item in items:
        observables = item.observables
        if len(observables) == 1 and not _has_rule(observables[0]):
            skipped[_skip_reason(observables[0])] += 1
            continue
        pending.append((item, bodies.check(item)))
        if len(pending) >= BATCH:
            yield _batch(pending, bodies, store, skipped)
            pending = []
    if pending:
        yield _batch(pending, bodies, store, skipped)


def _batch(pending: list[tuple[ExportItem, int]], bodies: _Rules, store: RuleStore,
           skipped: Counter[str]) -> str:
    """The rules of a batch of items with their checks: remembered, or built and
    allocated (then remembered)."""
    recalled = store.recall([item.row_id for item, _ in pending if item.row_id])
    out: list[str] = []
    built: list[RuleRow] = []
    slots: list[int] = []
    for item, check in pending:
        found = recalled.get(item.row_id) if item.row_id else None
        if found is not None and found[0] == check:
            if len(item.observables) > 1:  # its values without a rule are still counted
                for observable in item.observables:
                    if not _has_rule(observable):
                        skipped[_skip_reason(observable)] += 1
            out.append(found[1])
            continue
        row = bodies.row(item, check, skipped)
        if row is not None:
            slots.append(len(out))
            out.append("")
            built.append(row)
    if built:
        for slot, rules_text in zip(slots, store.allocate(built), strict=True):
            out[slot] = rules_text
    return "".join(out)


def _has_rule(observable: Observable) -> bool:
    """Whether :func:`_head` gives the value a rule, without building it."""
    kind = observable[0]
    return kind in _RULE_KINDS or (kind == "url" and observable[1].startswith("http://"))


_RULE_KINDS = frozenset(["ipv4-addr", "ipv6-addr", "domain-name"])
_new_row = tuple.__new__  # RuleRow without its generated __new__'s Python frame


DATASET_TYPES = {"string": ("domain-name",), "md5": ("md5",), "sha256": ("sha256",),
                 "ipv4": ("ipv4-addr",), "ip": ("ipv4-addr", "ipv6-addr")}


def dataset(items: Iterable[ExportItem], dataset_type: str, skipped: Counter[str]) -> Iterator[str]:
    """A datasets file of ``dataset_type``: one value per line, nothing else."""
    kinds = DATASET_TYPES[dataset_type]
    lines: list[str] = []
    for item in items:
        for kind, value in item.observables:
            if kind not in kinds:
                continue
            if dataset_type == "string":
                lines.append(base64.b64encode(value.encode()).decode())
            elif "/" in value and dataset_type in ("ip", "ipv4"):
                skipped[SKIP_CIDR] += 1
                continue
            else:
                lines.append(value)
        if len(lines) >= BATCH:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


IPREP_CATEGORIES = (
    (1, "MaliciousActivity", "malicious-activity"),
    (2, "AnomalousActivity", "anomalous-activity"),
    (3, "Anonymization", "anonymization"),
    (4, "Compromised", "compromised"),
    (5, "Attribution", "attribution"),
    (6, "Benign", "benign"),
    (7, "Unknown", "unknown"),
)
_CATEGORY_OF = {label: number for number, _, label in IPREP_CATEGORIES}


def iprep_categories() -> str:
    """The categories file: ``<id>,<short name>,<description>``."""
    return "".join(f"{n},{short},CommonWatch indicators of type {label}\n"
                   for n, short, label in IPREP_CATEGORIES)


def iprep_score(confidence: int | None) -> int:
    """STIX confidence 0-100 to a reputation score 1-127 (0 would mean "no data")."""
    if confidence is None:
        return 64
    return max(1, min(127, round(confidence * 127 / 100)))


def iprep(items: Iterable[ExportItem]) -> Iterator[str]:
    """The reputation file: ``<ip or cidr>,<category>,<score>``, one line per category."""
    lines: list[str] = []
    # ",<category>,<score>" per (labels, confidence): a handful of distinct pairs.
    tails: dict[tuple[tuple[str, ...], int | None], tuple[str, ...]] = {}
    for item in items:
        tail = tails.get((item.labels, item.confidence))
        if tail is None:
            categories = sorted({_CATEGORY_OF[x] for x in item.labels if x in _CATEGORY_OF}) or [7]
            score = iprep_score(item.confidence)
            tail = tails[item.labels, item.confidence] = tuple(f",{c},{score}" for c in categories)
        for kind, value in item.observables:
            if kind == "ipv4-addr" or kind == "ipv6-addr":
                for end in tail:
                    lines.append(value + end)
        if len(lines) >= BATCH:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"
