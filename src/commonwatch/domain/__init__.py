"""Pure domain logic: STIX objects, markings, visibility, patterns. No I/O here."""
