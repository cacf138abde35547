"""What one STIX object contributes to the observable and reference indexes (pure).

* observables: the (kind, normalised value) pairs an SCO or an indicator with a
  single-value pattern states (:func:`commonwatch.domain.observables.from_object`);
* references: which indicator (or other object) a sighting sights, which objects an
  opinion is about. Sightings totals and opinion consensus are counted through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commonwatch.domain.observables import from_object

SIGHTING_OF = "sighting-of"
OPINION_OF = "opinion-of"

Pairs = tuple[tuple[str, str], ...]
_NONE: Pairs = ()
#: Types whose observables are indexed: indicators (by pattern) and SCOs with a value or hashes.
_OBSERVABLE_TYPES = frozenset(
    ("indicator", "ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr", "file", "artifact")
)


def index_entries(obj: Mapping[str, Any]) -> tuple[Pairs, Pairs]:
    """(observables, references) of ``obj``; both empty for most object types."""
    kind = obj.get("type")
    if kind in _OBSERVABLE_TYPES:
        return tuple((o.kind, o.value) for o in from_object(obj).observables), _NONE
    if kind == "sighting":
        target = obj.get("sighting_of_ref")
        return _NONE, ((SIGHTING_OF, target),) if isinstance(target, str) else _NONE
    if kind == "opinion":
        refs = obj.get("object_refs")
        if isinstance(refs, list):
            return _NONE, tuple((OPINION_OF, r) for r in dict.fromkeys(refs) if isinstance(r, str))
    return _NONE, _NONE
