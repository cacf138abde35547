"""The base of every JSON request body of the API (admin, feeds, sightings, lookup)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictBody(BaseModel):
    """A request body read as its JSON says: a boolean is ``true`` or ``false`` (not
    ``"no"`` or ``0``), a number is not a string; and a property the operation does not
    know is refused (400), so that a misspelt option never answers 201 while doing
    something else than asked."""

    model_config = ConfigDict(extra="forbid", strict=True)
