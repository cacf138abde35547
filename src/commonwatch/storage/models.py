"""Tables of CommonWatch (SQLAlchemy 2 declarative, ``Mapped[...]`` columns).

Times are integers: microseconds since the Unix epoch, UTC. That keeps STIX
timestamps exact (STIX allows sub-millisecond precision), makes comparisons cheap
and behaves the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: 64-bit ids that are still SQLite's fast ROWID alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of every CommonWatch table."""


class Organisation(Base):
    """A member: CERT, operator, vendor, end user... owns a STIX identity."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    sector: Mapped[str] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(2))
    identity_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_us: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    """A person or machine account of one organisation."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_us: Mapped[int] = mapped_column(BigInteger)


class ApiToken(Base):
    """An API token, stored as its SHA-256 only; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_us: Mapped[int] = mapped_column(BigInteger)
    expires_us: Mapped[int | None] = mapped_column(BigInteger)
    revoked_us: Mapped[int | None] = mapped_column(BigInteger)


class Community(Base):
    """A sharing circle; exposed over TAXII as one collection."""

    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    collection_id: Mapped[str] = mapped_column(String(36), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    default_tlp: Mapped[int] = mapped_column(SmallInteger)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    #: date_added of the newest object; the next one is strictly later (TAXII paging).
    last_added_us: Mapped[int] = mapped_column(BigInteger, default=0)
    created_us: Mapped[int] = mapped_column(BigInteger)


class Membership(Base):
    """What one organisation may do in one community, and the highest TLP it receives."""

    __tablename__ = "memberships"

    org_id: Mapped[int] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True
    )
    can_read: Mapped[bool] = mapped_column(Boolean)
    can_write: Mapped[bool] = mapped_column(Boolean)
    max_tlp: Mapped[int] = mapped_column(SmallInteger)


class StixObject(Base):
    """One version of one STIX object in one community, with the raw JSON as posted.

    ``version_us`` is the TAXII version (TAXII 2.1 §3.4.1): ``modified``, else
    ``created``, else ``date_added``. ``date_added_us`` is strictly increasing per
    community, so it is both the TAXII date_added and the keyset for pagination.
    """

    __tablename__ = "stix_objects"
    __table_args__ = (
        UniqueConstraint("community_id", "date_added_us", name="uq_objects_added"),
        # Several organisations may hold one (id, version), each its own copy (see co_held).
        UniqueConstraint("community_id", "stix_id", "version_us", "producer_org_id",
                         name="uq_objects_version"),
        Index("ix_objects_type", "community_id", "type", "date_added_us"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE")
    )
    stix_id: Mapped[str] = mapped_column(String(300))
    type: Mapped[str] = mapped_column(String(250))
    spec_version: Mapped[str] = mapped_column(String(8))
    version_us: Mapped[int] = mapped_column(BigInteger)
    date_added_us: Mapped[int] = mapped_column(BigInteger)
    producer_org_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="SET NULL")
    )
    tlp: Mapped[int] = mapped_column(SmallInteger)
    #: True on the newest version of the id in the community (whoever may see it).
    #: Lets ``match[version]=last`` skip the per-row "is there a newer visible
    #: version?" probe for the common case; kept up to date by ingest and delete.
    is_latest: Mapped[bool] = mapped_column(Boolean)
    #: True on every row of an (id, version) that more than one organisation holds (set
    #: when the second copy is stored): reads choose one copy per version for the caller,
    #: and only these rows pay for that choice.
    co_held: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    content_hash: Mapped[str] = mapped_column(String(64))
    #: The object's JSON as UTF-8 bytes, served as stored (no re-encoding on reads).
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # Export columns, written by ingest from the JSON (domain.indexing.ExportFacts): an
    # export filters and outputs on them without decoding objects or parsing patterns.
    #: The version's observables, "kind value" per line (the observables rows, in order).
    export_values: Mapped[str | None] = mapped_column(Text)
    #: Why an object states no exportable value (domain.observables.SKIP_REASONS index).
    export_skip: Mapped[int | None] = mapped_column(SmallInteger)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    valid_until_us: Mapped[int | None] = mapped_column(BigInteger)
    confidence: Mapped[int | None] = mapped_column(SmallInteger)
    #: ``name`` and the ``indicator_types`` (a JSON array), as some formats print them.
    export_name: Mapped[str | None] = mapped_column(Text)
    export_labels: Mapped[str | None] = mapped_column(Text)
    #: ``created``, ``modified``, ``valid_until`` as written, one per line (empty when
    #: absent; None for objects with none of them): what CSV and rules print.
    export_times: Mapped[str | None] = mapped_column(Text)
    #: Warninglist verdicts of the values (Warninglists.listed_json; None: no hit), valid
    #: while the lists loaded have the digest of ``listed_stamp`` (WarninglistStamp).
    export_listed: Mapped[str | None] = mapped_column(Text)
    listed_stamp: Mapped[int | None] = mapped_column(Integer)


class ObjectRecipient(Base):
    """A named recipient (organisation identity) of a TLP:RED object version."""

    __tablename__ = "object_recipients"

    object_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("stix_objects.id", ondelete="CASCADE"), primary_key=True
    )
    identity_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class IngestStatus(Base):
    """A TAXII status resource (TAXII 2.1 §4.3.1) for one POST of an envelope."""

    __tablename__ = "ingest_statuses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE")
    )
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    request_us: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    total_count: Mapped[int] = mapped_column(Integer)
    success_count: Mapped[int] = mapped_column(Integer)
    failure_count: Mapped[int] = mapped_column(Integer)
    pending_count: Mapped[int] = mapped_column(Integer)
    #: JSON arrays of TAXII status-details.
    successes: Mapped[str] = mapped_column(Text)
    failures: Mapped[str] = mapped_column(Text)


class Feed(Base):
    """A named pull feed of one organisation: an export format and its filter.

    Always evaluated with the requesting user's own visibility: a feed names *what* to
    export, never *whose* view to use, so sharing a feed name cannot widen anyone's view.
    """

    __tablename__ = "feeds"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_feeds_org_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    format: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text, default="")
    #: The export filter as JSON (see ``services/export_filters.py``: ``filter_to_json``).
    filter_json: Mapped[str] = mapped_column(Text)
    created_us: Mapped[int] = mapped_column(BigInteger)
    updated_us: Mapped[int] = mapped_column(BigInteger)


class FeedState(Base):
    """What the last render of a feed for one user established, for cheap 304s.

    ``base`` digests every cheap input of the content (feed definition, caller,
    memberships, per-community change counters, warninglists); ``anchor_us`` is when
    this content generation began (Last-Modified); ``next_change_us`` is the earliest
    ``valid_until`` among exported indicators, after which the content changes by itself.
    ``reserved_us`` is the newest Last-Modified a render took (strictly increasing: each
    render of a new generation reserves its own in one statement); ``shared`` says that
    the second of ``anchor_us`` was also taken by another render, whose body may differ,
    so that second cannot answer ``If-Modified-Since``.
    """

    __tablename__ = "feed_states"

    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    base: Mapped[str] = mapped_column(String(64))
    anchor_us: Mapped[int] = mapped_column(BigInteger)
    next_change_us: Mapped[int | None] = mapped_column(BigInteger)
    reserved_us: Mapped[int | None] = mapped_column(BigInteger)
    shared: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)


class WarninglistStamp(Base):
    """One state of the warninglists (their digest), as stamped on the verdicts ingest
    stores. An export trusts a row's stored verdicts only when the lists it has loaded
    have the row's stamp; otherwise it checks the values against its lists itself."""

    __tablename__ = "warninglist_stamps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)


class SuricataSid(Base):
    """The stable Suricata ``sid`` of one exported rule, and its current ``rev``.

    ``rule_key`` digests (STIX id, kind, value); the sid is ``SID_BASE + id``, so it
    never changes across exports; ``rev`` is bumped when the rule's text changes.
    """

    __tablename__ = "suricata_sids"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rule_key: Mapped[str] = mapped_column(String(64), unique=True)
    rev: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(32))


class SuricataRowSids(Base):
    """The Suricata rules of one stored version, as last exported (with their sids and
    revs).

    ``rules_check`` digests what the rules' texts depended on then besides the row
    (:class:`~commonwatch.formats.suricata.RuleContext`): while it is unchanged, a new
    export writes the rules remembered here, by row, instead of building them and
    looking each up by key in ``suricata_sids``. Goes with the row.
    """

    __tablename__ = "suricata_row_sids"

    object_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("stix_objects.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    rules_check: Mapped[int] = mapped_column(BigInteger)
    #: The row's rules, each ending in a line break, as the export wrote them.
    rules: Mapped[str] = mapped_column(Text)
