"""Zeek Intelligence Framework input file (``Intel::read_files``).

A tab-separated file with one ``#fields`` header: ``indicator``, ``indicator_type``
and the ``meta.*`` fields of ``Intel::MetaData`` (``source``, ``desc``, ``url``). Unset
fields are ``-``. Zeek's ``Intel::URL`` indicators carry no scheme (Zeek matches
``HTTP::build_url`` output, which has none), addresses are ``Intel::ADDR``, CIDRs
``Intel::SUBNET``, hashes ``Intel::FILE_HASH``. Zeek's reader takes every line that
starts with ``#`` for a header or comment, so a value that starts with one (an e-mail
address such as ``#ops@example.org``) cannot be written: it is left out and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import ExportItem

HEADER = "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\tmeta.url\n"
BATCH = 2000
SKIP_HASH_START = "value starting with '#': Zeek reads such a line as a comment"


def _field(value: str) -> str:
    """A field without tabs or newlines; ``-`` (unset) when empty."""
    cleaned = " ".join(value.replace("\t", " ").split())
    return cleaned or "-"


_TYPES = {"domain-name": "Intel::DOMAIN", "url": "Intel::URL", "email-addr": "Intel::EMAIL"}
_TLP_LABELS = {int(t): t.label for t in Tlp}


def _type(kind: str, value: str) -> str:
    if kind in ("ipv4-addr", "ipv6-addr"):
        return "Intel::SUBNET" if "/" in value else "Intel::ADDR"
    return _TYPES.get(kind, "Intel::FILE_HASH")


def render(
    items: Iterable[ExportItem], object_url: str | None = None, skipped: Counter[str] | None = None,
) -> Iterator[str]:
    """The intel file; ``object_url`` (with ``{id}``) fills ``meta.url`` when given;
    values that cannot be written are counted in ``skipped``."""
    skipped = Counter() if skipped is None else skipped
    yield HEADER
    lines: list[str] = []
    sources: dict[tuple[str, str], str] = {}  # one per (community, producer): a handful
    for item in items:
        source = sources.get((item.community, item.producer))
        if source is None:
            source = sources[item.community, item.producer] = _field(
                f"CommonWatch {item.community} {item.producer}")
        desc = _field(f"{_TLP_LABELS[item.tlp]} {item.name or item.stix_id}")
        url = _field(object_url.format(id=item.stix_id)) if object_url else "-"
        for kind, value in item.observables:
            if kind == "url":
                value = value.partition("://")[2]
            if value[:1] == "#":
                skipped[SKIP_HASH_START] += 1
                continue
            lines.append(f"{value}\t{_type(kind, value)}\t{source}\t{desc}\t{url}")
        if len(lines) >= BATCH:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"
