"""Per-row work of an export: the lifecycle predicates, warninglist screening, the item.

Kept apart from :mod:`commonwatch.services.export` (the service and its formats):
this is the hot path every exported object goes through once.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import orjson

from commonwatch.domain.indexing import value_pairs
from commonwatch.domain.lifecycle import DecayPolicy, assess, reaches_us
from commonwatch.domain.observables import ExportItem, Observable
from commonwatch.domain.warninglists import Warninglists
from commonwatch.services.query import ExportFilter

SKIP_WARNINGLISTED = "value on a warninglist (value left out)"
#: Warninglist verdicts remembered per export (then forgotten at once: memory bounded).
SCREEN_CACHE = 4096


class RowFilter:
    """The predicates of an export filter read from the export columns of a row.

    Called with a row's (revoked, valid_until µs, confidence): the reason it is left
    out (revoked, expired, confidence below the minimum), or None.
    """

    __slots__ = ("_revoked", "_expired", "_min_confidence", "_now")

    def __init__(self, flt: ExportFilter, now: int) -> None:
        self._revoked = not flt.include_revoked
        self._expired = not flt.include_expired
        self._min_confidence = flt.min_confidence
        self._now = now

    def __call__(self, revoked: bool, valid_until: int | None, confidence: int | None) -> str | None:
        if revoked and self._revoked:
            return "revoked"
        if self._expired and valid_until is not None and valid_until <= self._now:
            return "expired (valid_until has passed)"
        if self._min_confidence is not None and (confidence is None or confidence < self._min_confidence):
            return "confidence below the minimum"
        return None

    def note_expiry(self, valid_until: int, stats: Any) -> None:
        """Record the earliest ``valid_until`` still ahead in ``stats.next_change_us``
        (an :class:`~commonwatch.services.export.ExportStats`): the content changes then."""
        if valid_until > self._now:
            stats.note_change(valid_until)


SKIP_SCORE = "decay score below the minimum"


class ScoreFilter:
    """The minimum decay score of an export filter (:func:`commonwatch.domain.lifecycle.assess`).

    ``last_seen``: indicator id -> its newest sighting among those the caller can see
    (sightings the caller cannot see never move a score: nothing is inferred from them).
    Objects without a score (no ``valid_from`` nor ``created``) are left out.
    """

    __slots__ = ("_minimum", "_last_seen", "_policy", "_now")

    def __init__(self, minimum: float, last_seen: dict[str, int], policy: DecayPolicy, now: int) -> None:
        self._minimum, self._last_seen, self._policy, self._now = minimum, last_seen, policy, now

    def __call__(self, stix_id: str, obj: dict[str, Any], stats: Any) -> str | None:
        """The reason ``obj`` is left out, or None; notes in ``stats.next_change_us`` when
        its score will fall below the minimum (the content changes then)."""
        found = assess(obj, self._now, self._last_seen.get(stix_id), self._policy)
        crossing = reaches_us(found, self._minimum, self._policy)
        if found.score < self._minimum or crossing is None:
            return SKIP_SCORE
        if crossing > self._now:
            stats.note_change(crossing)
        return None


Screened = tuple[tuple[Observable, ...], tuple[str, ...]]
NOTHING: Screened = ((), ())


class Screen:
    """Warninglist screening of a row's index lines ("kind value", one per line).

    Returns the observables kept and the names of the lists hit (sorted). Each row's
    verdict is remembered, up to :data:`SCREEN_CACHE` rows (then forgotten at once,
    so memory stays bounded): feeds repeat values (an address in many indicators).
    A value that is left out is counted each time a row holds it.
    """

    __slots__ = ("_hits", "_cache", "_drop", "_skipped")

    def __init__(self, lists: Warninglists, *, drop: bool, skipped: Counter[str]) -> None:
        self._hits = lists.canonical_hits  # index lines hold normalised values
        self._cache: dict[str, tuple[tuple[Observable, ...], tuple[str, ...], int]] = {}
        self._drop = drop  # warninglisted values are left out (and counted)
        self._skipped = skipped

    def __call__(self, text: str) -> Screened:
        """(observables kept, names of the lists hit) of one row's index lines."""
        entry = self._cache.get(text)
        if entry is None:
            entry = self._one(text) if "\n" not in text else self._many(value_pairs(text))
            if len(self._cache) >= SCREEN_CACHE:
                self._cache.clear()
            self._cache[text] = entry
        if entry[2]:
            self._skipped[SKIP_WARNINGLISTED] += entry[2]
        return entry[0], entry[1]

    def _one(self, line: str) -> tuple[tuple[Observable, ...], tuple[str, ...], int]:
        kind, _, value = line.partition(" ")
        hits = self._hits(kind, value)
        if not hits:
            return (_new_observable(Observable, (kind, value)),), (), 0
        names = tuple(sorted(set(hits)))
        if self._drop:
            return (), names, 1
        return (_new_observable(Observable, (kind, value)),), names, 0

    def _many(self, pairs: list[tuple[str, str]]) -> tuple[tuple[Observable, ...], tuple[str, ...], int]:
        return self._combine(pairs, [self._hits(kind, value) for kind, value in pairs])

    def stamped(self, text: str, listed: str | None) -> Screened:
        """:meth:`__call__` from the verdicts ingest stored with the values (``listed``,
        :meth:`~commonwatch.domain.warninglists.Warninglists.listed_json`), for rows
        stamped with the lists loaded now: no list is consulted."""
        if listed is None:  # no value hits any list
            if "\n" not in text:
                return (_new_observable(Observable, text.partition(" ")[::2]),), ()
            return tuple([_new_observable(Observable, pair) for pair in value_pairs(text)]), ()
        kept, names, dropped = self._combine(value_pairs(text), orjson.loads(listed))
        if dropped:
            self._skipped[SKIP_WARNINGLISTED] += dropped
        return kept, names

    def _combine(
        self, pairs: list[tuple[str, str]], verdicts: list[Any]
    ) -> tuple[tuple[Observable, ...], tuple[str, ...], int]:
        """Values with their verdicts (names hit per value): (kept, names hit, dropped)."""
        kept: list[Observable] = []
        names: set[str] = set()
        dropped = 0
        for pair, hits in zip(pairs, verdicts, strict=True):
            if hits:
                names.update(hits)
                if self._drop:
                    dropped += 1
                    continue
            kept.append(_new_observable(Observable, pair))
        return tuple(kept), tuple(sorted(names)), dropped


def column_item(
    stix_id: str, tlp: int, community: str, producer: str, confidence: int | None,
    observables: tuple[Observable, ...], hits: tuple[str, ...], version_us: int, raw: bytes = b"",
    name: str | None = None, labels: str | None = None, times: str | None = None, row_id: int = 0,
    added_us: int = 0,
) -> ExportItem:
    """The :class:`ExportItem` of one exported object, from its export columns (written
    by ingest, :class:`~commonwatch.domain.indexing.ExportFacts`): ``name``, ``labels``
    (a JSON array) and ``times`` as stored there; ``raw`` the stored JSON when the
    format writes it as it is. The item's ``type`` is left empty (no format prints it)."""
    created, modified, until = _times(times) if times else _NO_TIMES
    # tuple.__new__ builds the named tuple without the generated __new__'s Python frame
    # (an export builds one per object).
    return _new_item(ExportItem, (stix_id, "", name or "", tlp, community, producer, confidence,
                                  created, modified, until, _labels(labels) if labels else (),
                                  observables, raw, hits, version_us, row_id, added_us))


_NO_TIMES = ("", "", None)


def _times(text: str) -> tuple[str, str, str | None]:
    """(created, modified, valid_until or None) of a stored times column."""
    created, modified, until = text.split("\n")
    return created, modified, until or None


@functools.lru_cache(maxsize=4096)
def _labels(text: str) -> tuple[str, ...]:
    """A stored labels column (a JSON array): a few distinct values across a whole export."""
    return tuple(orjson.loads(text))


_new_item = _new_observable = tuple.__new__

