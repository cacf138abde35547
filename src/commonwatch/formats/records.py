"""What every reader yields: one STIX object, or one rejected input record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Record:
    """One unit of input: ``obj`` to store, or ``reason`` it was refused.

    ``source`` names the input (a path, ``<stdin>``, an upload name) and ``position``
    the place in it (``line 12``, ``object 7``, ``attribute <uuid>``) so that a summary
    can point a person at the exact record. ``hits`` holds the warninglists a value
    that the importer itself turned into an indicator or observable hit; None when the
    reader did not screen the object (a STIX object received as it is: the import
    screens an indicator's pattern for its summary).
    """

    source: str
    position: str
    obj: dict[str, Any] | None = None
    reason: str | None = None
    hits: tuple[str, ...] | None = None
    #: Importer-made objects with derived ids (CSV, text): if the id is already stored,
    #: leave it as it is instead of adding a version.
    keep_existing: bool = False

    @property
    def where(self) -> str:
        return f"{self.source}: {self.position}" if self.position else self.source


def rejected(source: str, position: str, reason: str) -> Record:
    """A record that cannot be imported, and why."""
    return Record(source, position, None, reason)
