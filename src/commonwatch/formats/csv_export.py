"""CSV export (RFC 4180): one row per (object, value), with where it came from.

Columns: ``value``, ``kind``, ``stix_id``, ``name``, ``tlp``, ``community``, ``producer``,
``confidence``, ``created``, ``modified``, ``valid_until``, ``labels`` (``;``-joined),
``warninglists`` (``;``-joined, only filled when warninglisted values are included).
Cells starting with ``=``, ``+``, ``-`` or ``@`` are prefixed with ``'`` so that a
spreadsheet never evaluates a value as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import ExportItem

COLUMNS = ("value", "kind", "stix_id", "name", "tlp", "community", "producer", "confidence",
           "created", "modified", "valid_until", "labels", "warninglists")
BATCH = 2000
_TLP_LABELS = {int(t): t.label for t in Tlp}


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def render(items: Iterable[ExportItem]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    for item in items:
        common = (item.stix_id, _cell(item.name), _TLP_LABELS[item.tlp], _cell(item.community),
                  _cell(item.producer), "" if item.confidence is None else str(item.confidence),
                  item.created, item.modified, item.valid_until or "",
                  _cell(";".join(item.labels)), ";".join(item.warninglists))
        writer.writerows([(_cell(value), kind, *common) for kind, value in item.observables])
        count += len(item.observables)
        if count >= BATCH:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            count = 0
    yield buffer.getvalue()
