"""Deterministic SCO ids (STIX 2.1 §2.9): frozen values, and agreement with the stix2 library."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commonwatch.domain.sco_ids import deterministic_id, sco

# Ids computed with the OASIS reference library (stix2 3.0.2), frozen here so the check
# runs where stix2 is not installed.
FROZEN = [
    ("ipv4-addr", {"value": "198.51.100.3"}, "ipv4-addr--28bb3599-77cd-5a82-a950-b5bc3caf07c4"),
    ("ipv6-addr", {"value": "2001:db8::1"}, "ipv6-addr--6469e3a9-b053-5e34-a025-9396ae051d26"),
    ("domain-name", {"value": "pivy.example.com"}, "domain-name--e327c444-b89e-54ef-9688-53a786608a9f"),
    ("url", {"value": "https://login-telecom-portal.com/owa/auth.php?id=1"},
     "url--39d60d58-b0c2-5296-9689-543149fa04a2"),
    ("email-addr", {"value": "billing@telecom-invoices.net"},
     "email-addr--0d560889-86d5-54f6-9d07-4f13f2dab148"),
    ("file", {"hashes": {"SHA-256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                         "MD5": "5d41402abc4b2a76b9719d911017c592"}, "name": "pivy.exe"},
     "file--77f48de7-cdfc-5ca3-8c28-737ab1c711b9"),
    ("file", {"hashes": {"SHA-256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}},
     "file--d853b6a8-ff74-5fff-9a3f-69101c9562b7"),
    ("mutex", {"name": "Global\\x"}, "mutex--ae17633a-a726-56e8-8a6a-b5b8e67c9d26"),
    ("autonomous-system", {"number": 64500}, "autonomous-system--0a5f7072-df00-5729-9f0a-4eb18631a446"),
    ("software", {"name": "Word", "vendor": "Microsoft", "version": "16"},
     "software--aac470d9-c9cf-5a0d-ba8a-16ebcc868ad4"),
    ("user-account", {"user_id": "1001", "account_login": "root"},
     "user-account--9f7e6d9c-343e-54c8-84eb-f665e0e95c2f"),
    ("windows-registry-key", {"key": "HKEY_LOCAL_MACHINE\\Software\\Run"},
     "windows-registry-key--24f36866-8ff5-5ab0-b34a-dd64f23f023b"),
]


@pytest.mark.parametrize(("stype", "props", "expected"), FROZEN)
def test_frozen_ids(stype: str, props: dict[str, Any], expected: str) -> None:
    assert sco(stype, **props)["id"] == expected
    # properties that do not contribute leave the id alone
    assert sco(stype, **props, object_marking_refs=["marking-definition--x"])["id"] == expected


def test_types_without_contributing_properties_get_random_ids() -> None:
    a, b = sco("process", pid=1), sco("process", pid=1)
    assert a["id"] != b["id"] and a["id"].startswith("process--")


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["domain-name", "url", "email-addr", "mutex"]), _TEXT)
def test_agrees_with_stix2(stype: str, value: str) -> None:
    stix2 = pytest.importorskip("stix2")
    cls = {"domain-name": stix2.DomainName, "url": stix2.URL, "email-addr": stix2.EmailAddress,
           "mutex": stix2.Mutex}[stype]
    prop = "name" if stype == "mutex" else "value"
    assert deterministic_id({"type": stype, prop: value}) == cls(**{prop: value}).id


@pytest.mark.parametrize("value", [
    'a"b.example', "a\\b", "tab\there", "line\u2028sep", "\x7f", "b\u00fccher.de"])
def test_values_json_escapes_agree_with_stix2(value: str) -> None:
    """The written-out {"value": ...} form and the general canonical JSON agree, also
    where JSON escapes a character or Python calls one unprintable."""
    test_agrees_with_stix2.hypothesis.inner_test("domain-name", value)  # type: ignore[attr-defined]
    test_agrees_with_stix2.hypothesis.inner_test("url", value)  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None)
@given(st.sets(st.sampled_from(["MD5", "SHA-1", "SHA-256", "SHA-512"]), min_size=1),
       st.text("0123456789abcdef", min_size=128, max_size=128), st.one_of(st.none(), _TEXT))
def test_file_ids_agree_with_stix2(algorithms: set[str], digest: str, name: str | None) -> None:
    stix2 = pytest.importorskip("stix2")
    sizes = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-512": 128}
    hashes = {a: digest[:sizes[a]] for a in algorithms}
    props: dict[str, Any] = {"hashes": hashes, **({"name": name} if name else {})}
    assert deterministic_id({"type": "file", **props}) == stix2.File(**props).id
