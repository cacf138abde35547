"""The value types of the query service: the query objects it reads with, the rows it returns.

Every read path builds one of these query objects — :class:`ObjectFilter` (TAXII, the
JSON API, the UI, lookups) or :class:`ExportFilter` (exports and pull feeds) — and
passes it to :class:`~commonwatch.services.query.QueryService`, which alone applies the
visibility rule. They are kept apart from that service so the query objects, pages and
rows read as the plain data they are, without the SQL around them; nothing here does
I/O or decides visibility. :mod:`commonwatch.services.query` re-exports every name, so
callers import them from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from commonwatch.domain.markings import Tlp


@dataclass(frozen=True, slots=True)
class CommunityRef:
    """What the read and write paths need to know of a community."""

    id: int
    name: str
    collection_id: str
    title: str
    description: str
    default_tlp: int
    public: bool


@dataclass(frozen=True, slots=True)
class VersionSelector:
    """TAXII ``match[version]``: any of first/last/all and explicit timestamps."""

    first: bool = False
    last: bool = True
    all: bool = False
    timestamps: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ObjectFilter:
    """One query over a community's objects; shared by every read path."""

    added_after_us: int | None = None
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    spec_versions: tuple[str, ...] = ()
    versions: VersionSelector = field(default_factory=VersionSelector)
    limit: int = 1000
    next: str | None = None


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """The query of an export or pull feed: which latest visible versions to send.

    The SQL part (communities, types, TLP ceiling, since, producer sector) narrows the
    visibility-filtered read; the export service applies the rest on each streamed row,
    from the export columns ingest writes (confidence, ``revoked``, ``valid_until``,
    the values it screens against the warninglists), so it can count what each
    predicate left out.
    """

    #: Community names or collection ids; empty: every community the caller can read.
    communities: tuple[str, ...] = ()
    types: tuple[str, ...] = ("indicator",)
    #: Highest TLP exported. AMBER by default; RED only when asked for explicitly.
    tlp_ceiling: Tlp = Tlp.AMBER
    #: Only versions added to the exchange at or after this time (µs since the epoch).
    since_us: int | None = None
    producer_sectors: tuple[str, ...] = ()
    min_confidence: int | None = None
    #: Minimum decay score (domain.lifecycle.score), from the sightings the caller sees.
    min_score: float | None = None
    include_warninglisted: bool = False
    include_revoked: bool = False
    include_expired: bool = False


class ExportRow(NamedTuple):
    """The newest visible version of one object, for exports."""

    stix_id: str
    version_us: int
    date_added_us: int
    tlp: int
    producer_org_id: int | None
    raw: bytes
    community: str
    #: The version's observables from the index, one "kind value" per line (None: none).
    observables: str | None = None


#: (community name, rows) of an export read: each row a plain tuple of (stix_id,
#: version_us, date_added_us, tlp, producer_org_id, raw, export_values, export_skip,
#: revoked, valid_until_us, confidence, export_listed, listed_stamp, export_name,
#: export_labels, export_times).
RowBatch = tuple[str, Sequence[tuple[Any, ...]]]


class ObjectRow(NamedTuple):
    """What is known of one stored object version (manifest, versions, deletes).

    Rows are plain tuples, converted once: attribute access on a driver row costs
    about a microsecond, and a page touches thousands of them.
    """

    stix_id: str
    spec_version: str
    version_us: int
    date_added_us: int


class RawRow(NamedTuple):
    """One object version's stored JSON, for envelopes: only what they need is read."""

    date_added_us: int
    raw: bytes


class Tombstone(NamedTuple):
    """A deleted object version: which, and when it was deleted."""

    stix_id: str
    version_us: int
    deleted_us: int


RowT = TypeVar("RowT", ObjectRow, RawRow)
ItemT = TypeVar("ItemT")


@dataclass(frozen=True, slots=True)
class Page(Generic[ItemT]):
    """One page of rows, oldest first, with the opaque cursor to the next one."""

    rows: Sequence[ItemT]
    more: bool
    next: str | None


@dataclass(frozen=True, slots=True)
class Envelope:
    """One page of stored JSON for a TAXII envelope, with what its headers need."""

    objects: list[bytes]
    first_added_us: int | None
    last_added_us: int | None
    more: bool
    next: str | None
