"""Fixtures of the import tests: a frozen import context and golden files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from commonwatch.domain.markings import Tlp
from commonwatch.domain.warninglists import load_warninglists
from commonwatch.formats.observables import ImportContext
from imports.helpers import FROZEN_TIME, GOLDEN, OWN_IDENTITY, UPDATE


@pytest.fixture(scope="session")
def ctx() -> ImportContext:
    return ImportContext(own_identity=OWN_IDENTITY, default_tlp=Tlp.AMBER,
                         warninglists=load_warninglists(), timestamp=FROZEN_TIME)


@pytest.fixture
def golden() -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        path = GOLDEN / f"{name}.json"
        text = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        if UPDATE or not path.exists():
            if not UPDATE and os.environ.get("CI") == "true":
                pytest.fail(f"golden file {path.name} is missing")
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert json.loads(text) == json.loads(path.read_text(encoding="utf-8")), (
            f"output differs from {path}; if the change is intended, rerun with CW_UPDATE_GOLDEN=1 "
            "and review the diff")

    return check
