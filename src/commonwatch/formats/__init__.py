"""Readers and writers of the formats CommonWatch exchanges: STIX bundles, MISP, CSV, text.

Readers turn an input stream into :class:`~commonwatch.formats.records.Record` values:
a STIX 2.1 object ready for ``IngestService.add_objects``, or a rejection saying which
record of which input was refused and why. They do no I/O beyond the stream they are
given and know nothing of the database.
"""
