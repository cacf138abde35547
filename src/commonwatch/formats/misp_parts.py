"""What every step of the MISP event converter shares.

:class:`~commonwatch.formats.misp.EventConverter` converts one MISP event in steps: its
attributes (formats/misp.py), its MISP objects (misp_objects.py), galaxies
(misp_galaxies.py) and sightings (misp_sightings.py). The steps are mixins (traits) over
:class:`ConverterParts`, which declares the event's state they read and the core
operations they call; the converter itself sets that state and defines those operations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from commonwatch.domain.markings import Tlp
from commonwatch.formats import observables as ob
from commonwatch.formats.records import Record

_T = TypeVar("_T")


try:  # with mypy installed: the steps compile (tools/native.py) as mypyc traits
    from mypy_extensions import trait
except ImportError:  # pragma: no cover - a plain class decorator does nothing else
    def trait(cls: _T) -> _T:
        return cls


@trait
class ConverterParts:
    """The state and core operations of :class:`~commonwatch.formats.misp.EventConverter`
    that its steps use (defined there). It and the steps are traits (mypyc's name for
    classes several bases of one class may be): compiled, the converter inherits them
    all."""

    ev: dict[str, Any]
    uuid: str
    source: str
    position: str
    ctx: ob.ImportContext
    creator: str
    tags: list[str]
    report_tlp: Tlp | None
    main: dict[str, str]
    tlp_of: dict[str, Tlp | None]
    galaxy_holders: list[tuple[list[Any], list[str], Tlp | None]]

    def effective(self, tlp: Tlp | None) -> Tlp:
        raise NotImplementedError

    def effective_distribution(self, *levels: int | None) -> int | None:
        raise NotImplementedError

    def tlp(self, tags: list[str], dist: int | None) -> Tlp | None:
        raise NotImplementedError

    def emit(self, obj: dict[str, Any], position: str, hits: tuple[str, ...] | None = None,
             ref: bool = True, level: Tlp | None = None) -> Iterator[Record]:
        raise NotImplementedError

    def attribute(self, attr: Any, parent_dist: int | None, parent_tags: list[str],
                  relation: str = "") -> Iterator[Record]:
        raise NotImplementedError
