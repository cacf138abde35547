"""Malformed input of any shape never raises: every reader turns it into records or rejections."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commonwatch.formats.freetext import read_text
from commonwatch.formats.misp import read_misp
from commonwatch.formats.stix_bundle import read_stix
from commonwatch.formats.tabular import Mapping, read_csv

_WORDS = ["0", "1", "4", "5", "1700000000", "ip-dst", "file", "md5", "domain|ip", "tlp:red", "2.0", "bundle"]
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**40), st.floats(allow_nan=False),
                     st.text(max_size=12), st.sampled_from(_WORDS))
_KEYS = st.sampled_from(["Event", "Attribute", "Object", "Tag", "Galaxy", "GalaxyCluster", "Sighting", "Orgc",
                         "ObjectReference", "uuid", "type", "value", "to_ids", "distribution", "timestamp",
                         "name", "info", "date", "object_relation", "referenced_uuid", "meta", "spec_version",
                         "created", "modified", "objects", "labels", "hashes", "id", "pattern", "response",
                         "attribute_uuid", "Organisation", "date_sighting", "first_seen"])
_JSON = st.recursive(
    _SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=6)),
    max_leaves=30)
_FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _drain(records: Any) -> None:
    for r in records:
        assert (r.obj is None) != (r.reason is None)


@_FAST
@given(_JSON)
def test_misp_reader_never_raises(ctx, doc: Any) -> None:
    _drain(read_misp(io.BytesIO(json.dumps(doc).encode()), "fuzz.json", ctx))
    _drain(read_misp(io.BytesIO(json.dumps({"Event": doc}).encode()), "fuzz.json", ctx))


@_FAST
@given(_JSON)
def test_stix_reader_never_raises(doc: Any) -> None:
    _drain(read_stix(io.BytesIO(json.dumps(doc).encode()), "fuzz.json"))
    _drain(read_stix(io.BytesIO(json.dumps({"type": "bundle", "objects": [doc]}).encode()), "fuzz.json"))


@_FAST
@given(st.text(max_size=300))
def test_text_and_csv_readers_never_raise(ctx, text: str) -> None:
    _drain(read_text(io.BytesIO(text.encode()), "fuzz.txt", ctx))
    csv_text = ("value,type,first_seen,confidence\n" + text).encode()
    _drain(read_csv(io.BytesIO(csv_text), "f.csv", ctx, Mapping()))
