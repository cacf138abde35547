"""CSV export (RFC 4180): one row per (object, value), with where it came from.

Columns: ``value``, ``kind``, ``stix_id``, ``name``, ``tlp``, ``community``, ``producer``,
``confidence``, ``created``, ``modified``, ``valid_until``, ``labels`` (``;``-joined),
``warninglists`` (``;``-joined, only filled when warninglisted values are included).
Cells starting with ``=``, ``+``, ``-`` or ``@`` are prefixed with ``'`` so that a
spreadsheet never evaluates a value as a formula. Lines end with CRLF; a cell holding
``,``, ``"``, CR or LF is quoted, its quotes doubled: exactly what :func:`csv.writer`
writes with its defaults (checked by the tests), built here per object instead of per
cell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import ExportItem

COLUMNS = ("value", "kind", "stix_id", "name", "tlp", "community", "producer", "confidence",
           "created", "modified", "valid_until", "labels", "warninglists")
BATCH = 2000
_TLP_LABELS = {int(t): t.label for t in Tlp}
_SPECIAL = re.compile('[,"\r\n]')


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _quoted(text: str) -> str:
    """A cell as :func:`csv.writer` writes it (minimal quoting)."""
    if _SPECIAL.search(text) is None:
        return text
    return '"' + text.replace('"', '""') + '"'


def line(cells: Iterable[str]) -> str:
    """One CSV line of ``cells`` (the formula guard already applied), CRLF included."""
    return ",".join(map(_quoted, cells)) + "\r\n"


def render(items: Iterable[ExportItem]) -> Iterator[str]:
    out: list[str] = [line(COLUMNS)]
    search = _SPECIAL.search
    for item in items:
        common = (item.stix_id, _cell(item.name), _TLP_LABELS[item.tlp], _cell(item.community),
                  _cell(item.producer), "" if item.confidence is None else str(item.confidence),
                  item.created, item.modified, item.valid_until or "",
                  _cell(";".join(item.labels)), ";".join(item.warninglists))
        # One search over the object's cells: most objects need no quoting at all.
        tail = ("," + ",".join(common) if search("".join(common)) is None
                else "," + ",".join(map(_quoted, common))) + "\r\n"
        for kind, value in item.observables:
            value = _cell(value)
            out.append((value if search(value) is None else _quoted(value)) + "," + kind + tail)
        if len(out) >= BATCH:
            yield "".join(out)
            out = []
    yield "".join(out)
