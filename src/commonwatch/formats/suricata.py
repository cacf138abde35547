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
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import ExportItem, Observable

SID_BASE = 1_000_000_000
BATCH = 2000
SKIP_RULE_KIND = "no Suricata rule form for this kind (use a dataset)"
SKIP_HTTPS = "https URL: the sensor sees only the host (use the domain)"
SKIP_CIDR = "CIDR in a dataset of single addresses"

#: (rule key, digest of the rule text without sid/rev) -> (sid, rev)
SidAllocator = Callable[[Sequence[tuple[str, str]]], Sequence[tuple[int, int]]]

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


#: The end of every rule body; the allocator's sid and rev replace it (see :func:`_fill`).
_SID_REV = "sid:{sid}; rev:{rev};)"


class _Rules:
    """Rule bodies of the items of one export.

    What a rule says about its object (``msg`` and ``metadata``) is built once per
    object, and the cleaned text of a community or producer name once per export.
    """

    __slots__ = ("_meta", "_dates")

    def __init__(self) -> None:
        self._meta: dict[str, str] = {}
        self._dates: dict[str, str] = {}

    def tail(self, item: ExportItem) -> tuple[str, str]:
        """``msg``, then ``{match}``'s place, then ``metadata`` and the sid/rev slots."""
        tlp = _TLP_LABELS[item.tlp]
        msg = _text(f"CommonWatch {tlp} {item.community}/{item.producer}: {item.name or item.stix_id}", 200)
        words = self._meta
        meta = (f"cw_id {item.stix_id}, cw_tlp {_once(words, tlp, _meta_value)}, "
                f"cw_community {_once(words, item.community, _meta_value)}, "
                f"cw_producer {_once(words, item.producer, _meta_value)}")
        if item.created:  # objects without versions (SCOs) have neither date
            meta += (f", created_at {_once(self._dates, item.created, _date_word)}, "
                     f"updated_at {_once(self._dates, item.modified, _date_word)}")
        return msg, meta


def _once(cache: dict[str, str], key: str, make: Callable[[str], str]) -> str:
    """``make(key)``, remembered in ``cache`` (up to 4,096 keys, then forgotten at once:
    an export repeats a few names and dates)."""
    found = cache.get(key)
    if found is None:
        if len(cache) >= 4096:
            cache.clear()
        found = cache[key] = make(key)
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
        host = host.split(":")[0]
        path = "/" + rest
        return ("alert http $HOME_NET any -> any any",
                f'flow:established,to_server; http.host; content:"{_content(host)}"; '
                f'bsize:{len(host.encode())}; '
                f'http.uri; content:"{_content(path)}"; bsize:{len(path.encode())}; ')
    return None


def rule_key(item: ExportItem, observable: Observable) -> str:
    return hashlib.sha256(f"{item.stix_id}|{observable.kind}|{observable.value}".encode()).hexdigest()


def rules(items: Iterable[ExportItem], allocate: SidAllocator, skipped: Counter[str]) -> Iterator[str]:
    """Rules text, one chunk per batch of rules, sids and revs from ``allocate``.

    The rule digest (which bumps ``rev``) covers the body with its ``{sid}``/``{rev}``
    slots unfilled, as it always has, so revs stay stable across versions of this code.
    """
    pending: list[tuple[str, str, str]] = []
    bodies = _Rules()
    sha256 = hashlib.sha256
    for item in items:
        tail: tuple[str, str] | None = None
        for observable in item.observables:
            head = _head(observable)
            if head is None:
                skipped[SKIP_HTTPS if observable.kind == "url" else SKIP_RULE_KIND] += 1
                continue
            if tail is None:
                tail = bodies.tail(item)
            msg, meta = tail
            body = f'{head[0]} (msg:"{msg}"; {head[1]}metadata:{meta}; {_SID_REV}'
            key = sha256(f"{item.stix_id}|{observable.kind}|{observable.value}".encode()).hexdigest()
            pending.append((key, sha256(body.encode()).hexdigest()[:32], body))
            if len(pending) >= BATCH:
                yield _fill(pending, allocate)
                pending = []
    if pending:
        yield _fill(pending, allocate)


def _fill(pending: list[tuple[str, str, str]], allocate: SidAllocator) -> str:
    """The rules of a batch with their sids and revs (the slots are the body's end)."""
    ids = allocate([(key, digest) for key, digest, _ in pending])
    cut = -len(_SID_REV)
    return "".join([f"{body[:cut]}sid:{sid}; rev:{rev};)\n"
                    for (_, _, body), (sid, rev) in zip(pending, ids, strict=True)])


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
