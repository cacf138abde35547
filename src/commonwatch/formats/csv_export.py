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


_GUARDED = frozenset("=+-@")
_TAIL_COMMAS = len(COLUMNS) - 2  # the separators after the value and kind cells


def render(items: Iterable[ExportItem]) -> Iterator[str]:
    """The CSV text, in chunks: each line written whole, then checked for the
    characters that need quoting (most lines have none); a line that has them is
    written again cell by cell with :func:`line`."""
    out: list[str] = [line(COLUMNS)]
    search = _SPECIAL.search
    guarded = _GUARDED
    labels_cells: dict[tuple[str, ...], str] = {}
    for item in items:
        name, community, producer = item.name, item.community, item.producer
        labels = labels_cells.get(item.labels)
        if labels is None:
            if len(labels_cells) >= 4096:
                labels_cells.clear()
            labels = labels_cells[item.labels] = _cell(";".join(item.labels))
        confidence = "" if item.confidence is None else str(item.confidence)
        created, modified, until = item.created, item.modified, item.valid_until or ""
        if (name[:1] in guarded and name) or (community[:1] in guarded and community) or (
                producer[:1] in guarded and producer) or (created[:1] in guarded and created) or (
                modified[:1] in guarded and modified) or (until[:1] in guarded and until):
            name, community, producer = _cell(name), _cell(community), _cell(producer)
            created, modified, until = _cell(created), _cell(modified), _cell(until)
        tail = (f",{item.stix_id},{name},{_TLP_LABELS[item.tlp]},{community},{producer},{confidence},"
                f"{created},{modified},{until},{labels},{';'.join(item.warninglists)}")
        # No cell holds a separator, a quote or a line break: the line's own commas only.
        if tail.count(",") == _TAIL_COMMAS and '"' not in tail and "\n" not in tail and "\r" not in tail:
            tail += "\r\n"
        else:
            tail = "," + line((item.stix_id, name, _TLP_LABELS[item.tlp], community, producer, confidence,
                               created, modified, until, labels, ";".join(item.warninglists)))
        for kind, value in item.observables:
            if value[:1] in guarded and value:
                value = "'" + value
            out.append((value if search(value) is None else _quoted(value)) + "," + kind + tail)
        if len(out) >= BATCH:
            yield "".join(out)
            out = []
    yield "".join(out)
