"""Scanning events against a compiled indicator set: the pure core of detection.

:func:`scan` is a pure function of (indicator set, events): no I/O, no clock; the
distributed workers run the same function. An adapter whose line loop is the hot path
feeds a :class:`Scan` directly (see ``formats.telemetry.source.LineParser``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from commonwatch.detect.engine import Event, EventKind, Hits, IndicatorSet
from commonwatch.detect.evaluate import Observed
from commonwatch.detect.events import Record, build_observation
from commonwatch.detect.probe import Probe


@dataclass(frozen=True, slots=True)
class Match:
    """An indicator matched: its key, the positions and the events that matched it."""

    key: str
    positions: tuple[int, ...]
    events: tuple[Event, ...]
    meta: Any


class Sink(Protocol):
    """What an event loop feeds: a :class:`Scan`, or a stand-in that lists the events."""

    def probe(self, kind: EventKind) -> Callable[[Record], Any]: ...

    def hit(self, hits: Any, i: int, event: Event) -> None: ...

    def read_paths(self, kinds: Iterable[EventKind]) -> frozenset[tuple[str, ...]] | None: ...


class Scan:
    """The matches of one batch of events, fed event by event (a :class:`Sink`).

    ``probe`` per event kind, ``hit`` for an event whose probe gave candidates,
    ``finish`` at the end. Only events that are candidates of a multi-event pattern
    are kept until :meth:`finish`, so a batch streams through in constant memory.
    """

    __slots__ = ("iset", "matches", "_built", "_pending", "_kept")

    def __init__(self, iset: IndicatorSet) -> None:
        self.iset = iset
        self.matches: list[Match] = []
        self._built: dict[tuple[int, frozenset[str] | None], Observed] = {}
        self._pending: dict[str, list[int]] = {}
        self._kept: dict[int, Event] = {}

    def probe(self, kind: EventKind) -> Probe:
        """The candidate lookup for events of ``kind`` (record -> entries or None)."""
        return self.iset.plan(kind).probe

    def read_paths(self, kinds: Iterable[EventKind]) -> frozenset[tuple[str, ...]] | None:
        """What the probes of ``kinds`` read (IndicatorSet.read_paths)."""
        return self.iset.read_paths(kinds)

    def hit(self, hits: Hits, i: int, event: Event) -> None:
        """Event number ``i`` of the batch has candidates ``hits``: matches, or pending work."""
        seen: set[str] = set()
        for entry in hits:
            if entry.key in seen:
                continue
            seen.add(entry.key)
            if entry.simple or entry.scanned is not None:
                self.matches.append(Match(entry.key, (i,), (event,), entry.meta))
            elif entry.single_event:
                if entry.compiled().matches((self._observed(i, event, entry.mentions),)):
                    self.matches.append(Match(entry.key, (i,), (event,), entry.meta))
            else:
                waiting = self._pending.setdefault(entry.key, [])
                if not waiting or waiting[-1] != i:
                    waiting.append(i)
                    self._kept[i] = event

    def finish(self) -> list[Match]:
        """The matches, multi-event patterns evaluated over the batch's candidates."""
        kept = self._kept
        for key, positions in self._pending.items():
            entry = self.iset.entries[key]
            observations = [self._observed(i, kept[i], entry.mentions) for i in positions]
            witness = entry.compiled().witness(observations)
            if witness is not None:
                chosen = tuple(sorted({positions[j] for j in witness}))
                self.matches.append(Match(key, chosen, tuple(kept[i] for i in chosen), entry.meta))
        self._pending = {}
        return self.matches

    def _observed(self, i: int, event: Event, types: frozenset[str] | None) -> Observed:
        """Event ``i`` as a STIX observation holding the object types ``types`` (built once)."""
        obs = self._built.get((i, types))
        if obs is None:
            obs = self._built[(i, types)] = build_observation(*event, types=types)
        return obs


def feed(sink: Sink, events: Iterable[Event]) -> int:
    """Each event to ``sink``'s probe for its kind, candidates to ``sink.hit``; the event count."""
    probes: dict[str, Callable[[Record], Any]] = {}
    count = 0
    for event in events:
        probe = probes.get(event[0].name)
        if probe is None:
            probe = probes[event[0].name] = sink.probe(event[0])
        hits = probe(event[1])
        if hits:
            sink.hit(hits, count, event)
        count += 1
    return count


def scan(iset: IndicatorSet, events: Iterable[Event]) -> list[Match]:
    """Every match of the indicator set in ``events`` (STIX 2.1 §9 semantics).

    ``events`` may be a generator: it is read once, in constant memory.
    """
    found = Scan(iset)
    feed(found, events)
    return found.finish()
