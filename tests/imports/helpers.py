"""Constants and helpers shared by the import tests (imported as ``imports.helpers``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from commonwatch.formats.records import Record

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"
OWN_IDENTITY = "identity--d9b0c3a0-5a1b-4c2d-8e3f-000000000001"
FROZEN_TIME = "2024-05-01T12:00:00.000Z"
#: Set CW_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change.
UPDATE = os.environ.get("CW_UPDATE_GOLDEN") == "1"


def as_golden(records: Iterable[Record]) -> list[dict[str, Any]]:
    """Records in a stable, reviewable form: where, what (object or reason), hits."""
    out = []
    for r in records:
        entry: dict[str, Any] = {"where": r.where.replace(f"{DATA}/", "")}
        if r.obj is not None:
            entry["object"] = r.obj
        else:
            entry["rejected"] = r.reason
        if r.hits:
            entry["hits"] = list(r.hits)
        out.append(entry)
    return out
