"""What one STIX object contributes to the indexes and export columns (pure).

* observables: the (kind, normalised value) pairs an SCO or an indicator with a
  single-value pattern states (:func:`commonwatch.domain.observables.from_object`);
* references: which indicator (or other object) a sighting sights, which objects an
  opinion is about. Sightings totals and opinion consensus are counted through them;
* export facts (:class:`ExportFacts`): what exports filter and output on, stored as
  columns of the version at ingest so an export reads columns instead of parsing every
  object's JSON and pattern again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from commonwatch.domain.observables import SKIP_REASONS, SKIP_UNSUPPORTED, from_object
from commonwatch.domain.stix import is_versioned
from commonwatch.domain.timestamps import parse_timestamp

SIGHTING_OF = "sighting-of"
OPINION_OF = "opinion-of"

Pairs = tuple[tuple[str, str], ...]
_NONE: Pairs = ()
#: Types whose observables are indexed: indicators (by pattern) and SCOs with a value or hashes.
_OBSERVABLE_TYPES = frozenset(
    ("indicator", "ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr", "file", "artifact")
)
_UNSUPPORTED = SKIP_REASONS.index(SKIP_UNSUPPORTED)


class ExportFacts(NamedTuple):
    """The export columns of one version (``stix_objects.export_*``, ``revoked``, ...)."""

    #: The observables as "kind value" lines, in extraction order; None when there are none.
    values: str | None
    #: Why there are none: a position in :data:`~commonwatch.domain.observables.SKIP_REASONS`.
    skip: int | None
    revoked: bool
    valid_until_us: int | None
    confidence: int | None
    #: ``name`` when it is a string, and the string ``indicator_types`` as a JSON array:
    #: the fields Zeek Intel and Suricata IP reputation files print.
    name: str | None = None
    labels: str | None = None
    #: ``created``, ``modified`` and ``valid_until`` as the object writes them, one per
    #: line (an absent one empty; see :func:`times_text`); None when it has none of them.
    times: str | None = None


class Indexed(NamedTuple):
    observables: Pairs
    references: Pairs
    facts: ExportFacts


def index_entries(obj: Mapping[str, Any]) -> tuple[Pairs, Pairs]:
    """(observables, references) of ``obj``; both empty for most object types."""
    found = indexed(obj)
    return found.observables, found.references


def indexed(obj: Mapping[str, Any]) -> Indexed:
    """Index entries and export facts of ``obj`` (one extraction serves both)."""
    kind = obj.get("type")
    observables = references = _NONE
    skip: int | None = _UNSUPPORTED
    if kind in _OBSERVABLE_TYPES:
        extraction = from_object(obj)
        observables = tuple((o.kind, o.value) for o in extraction.observables)
        skip = None if observables else SKIP_REASONS.index(extraction.skipped or SKIP_UNSUPPORTED)
    elif kind == "sighting":
        target = obj.get("sighting_of_ref")
        references = ((SIGHTING_OF, target),) if isinstance(target, str) else _NONE
    elif kind == "opinion":
        refs = obj.get("object_refs")
        if isinstance(refs, list):
            references = tuple((OPINION_OF, r) for r in dict.fromkeys(refs) if isinstance(r, str))
    values = "\n".join(f"{k} {v}" for k, v in observables) if observables else None
    name = obj.get("name")
    types = obj.get("indicator_types")
    labels = [t for t in types if type(t) is str] if type(types) is list else None
    # A NUL in the name reads as U+FFFD in the column (PostgreSQL text cannot hold NUL).
    return Indexed(observables, references, ExportFacts(
        values, skip, *lifecycle_facts(obj, versioned := is_versioned(obj)),
        name.replace("\x00", "\ufffd") if type(name) is str else None,
        orjson.dumps(labels).decode() if labels else None, times_text(obj, versioned)))


def times_text(obj: Mapping[str, Any], versioned: bool | None = None) -> str | None:
    """:attr:`ExportFacts.times` of ``obj``: ``created``, ``modified`` (``created`` when
    absent) and ``valid_until`` as the output formats print them, one per line.
    ``versioned``: :func:`~commonwatch.domain.stix.is_versioned` of ``obj``, if known."""
    if not (is_versioned(obj) if versioned is None else versioned):
        return None  # SCOs: never versioned; a custom "created" of theirs means nothing
    created = obj.get("created")
    modified = obj.get("modified", created)
    until = obj.get("valid_until") if obj.get("type") == "indicator" else None
    if created is None and modified is None and until is None:
        return None
    return "\n".join([_text(created), _text(modified), _text(until)]).replace("\x00", "\ufffd")


def _text(value: Any) -> str:
    """One line of :func:`times_text` (validation leaves only timestamps: defensive)."""
    text = "" if value is None else value if type(value) is str else str(value)
    return text.replace("\n", " ") if "\n" in text else text


def value_pairs(values: str) -> list[tuple[str, str]]:
    """The (kind, value) pairs of an :attr:`ExportFacts.values` text, in order."""
    return [(kind, value) for kind, _, value in (line.partition(" ") for line in values.split("\n"))]


def lifecycle_facts(
    obj: Mapping[str, Any], versioned: bool | None = None
) -> tuple[bool, int | None, int | None]:
    """(revoked, valid_until µs, confidence) as exports filter on them; wrong types
    (which validation rejects anyway) read as absent. Only indicators expire, and only
    versioned objects are revoked or have a confidence: an SCO's custom properties of
    those names mean nothing (:func:`~commonwatch.domain.stix.is_versioned`, passed as
    ``versioned`` when known)."""
    if not (is_versioned(obj) if versioned is None else versioned):
        return False, None, None
    valid_until = obj.get("valid_until") if obj.get("type") == "indicator" else None
    try:
        until = parse_timestamp(valid_until) if isinstance(valid_until, str) else None
    except ValueError:
        until = None
    confidence = obj.get("confidence")
    if type(confidence) is not int or not 0 <= confidence <= 100:
        confidence = None
    return obj.get("revoked") is True, until, confidence
