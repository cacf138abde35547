"""Lookup and quick-form sighting semantics, checked against docs/api.md ("Lookup and
correlation") and docs/lifecycle.md ("Sightings"): which spellings of a value are the
same value, and which containing keys (networks, parent domains, URL hosts, e-mail
domains) a value matches.

What the docs promise:

* api.md: values may be defanged (``hxxp://evil[.]example``, ``1.2.3[.]4``,
  ``bob[@]example.org``); each answer has ``kind`` and ``normalised`` ("its canonical
  form"); matches are ``exact``, ``contained-in`` (a stored CIDR contains the address
  or network), ``subdomain-of`` (a stored parent domain), ``host`` (a URL's host),
  ``domain`` (an e-mail address's domain); one match per object, under its closest
  key; a bulk answer is exactly the answer alone.
* lifecycle.md: the quick form reads the value like a lookup value and sights every
  visible, unrevoked indicator stating it "exactly, or as a containing network, or as a
  parent domain, as ``commonwatch lookup`` matches them".
* observables.py (the normalisation the docs' "canonical form" refers to): canonical
  addresses, a CIDR is its network; domains lower-case A-labels without a trailing dot;
  URLs keep path and query as written, scheme and host lower-cased, default port
  dropped; e-mail domain normalised and local part lower-cased; hashes lower-case.

Tests named ``test_note_*`` pin behaviour the docs do not describe (so that a change is
noticed); they assert what happens, not what ought to.
"""

from __future__ import annotations

import pytest

from commonwatch.domain.markings import Tlp
from commonwatch.errors import InputError, NotFound

from support.factories import indicator, make_member

COMMUNITY = "semantics"

#: name -> the STIX pattern of one indicator (values deliberately spelt non-canonically)
PATTERNS = {
    "ip4": "[ipv4-addr:value = '203.0.113.5']",
    "net4": "[ipv4-addr:value = '198.51.100.9/24']",  # stored as its network 198.51.100.0/24
    "ip6": "[ipv6-addr:value = '2001:DB8:0:0::1']",
    "net6": "[ipv6-addr:value = '2001:db8:aaaa::/48']",
    "domain": "[domain-name:value = 'Bad-Example.COM.']",
    "idn_u": "[domain-name:value = 'bücher.example']",  # stored as a U-label
    "idn_a": "[domain-name:value = 'xn--mnchen-3ya.example']",  # münchen.example, as an A-label
    "url": "[url:value = 'HTTP://Evil.Example:80/Login?x=1']",
    "url_host": "[domain-name:value = 'evil.example']",
    "url_root": "[url:value = 'http://root.example']",
    "url_pct": "[url:value = 'http://pct.example/a%7Eb']",
    "email": "[email-addr:value = 'Alice@Mail.Example']",
    "email_domain": "[domain-name:value = 'mail.example']",
    "md5": "[file:hashes.MD5 = 'D41D8CD98F00B204E9800998ECF8427E']",
    "sha256": "[file:hashes.'SHA-256' = "
              "'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']",
}


def _world(exchange):
    """One member (read, write, RED) of one community holding every indicator above."""
    member = make_member(exchange, "Semantics CERT", "government")
    exchange.admin.create_community(COMMUNITY)
    exchange.admin.set_membership(member.org, COMMUNITY, True, True, Tlp.RED)
    cid = exchange.admin.get_community(COMMUNITY).collection_id
    objects = {name: indicator(pattern=pattern, tlp=Tlp.GREEN, created_by=member.identity)
               for name, pattern in PATTERNS.items()}
    report = exchange.ingest.add_objects(member.principal, cid, list(objects.values()))
    assert not report.failures, report.failures
    names = {obj["id"]: name for name, obj in objects.items()}
    return member, names


def _answers(exchange, member, names, values):
    """value -> (kind, normalised, {indicator name: relation}) or ("error", message)."""
    out = {}
    for value, answer in zip(values, exchange.lookup.lookup_json(member.principal, values), strict=True):
        if "error" in answer:
            out[value] = ("error", answer["error"])
        else:
            assert answer["found"] == bool(answer["matches"])
            out[value] = (answer["kind"], answer["normalised"],
                          {names[m["id"]]: m["matched"]["relation"] for m in answer["matches"]})
    return out


def _check(exchange, member, names, expected):
    """Look every value up in one bulk call; compare with ``expected``, report all misses."""
    got = _answers(exchange, member, names, list(expected))
    wrong = {v: (got[v], want) for v, want in expected.items() if got[v] != want}
    assert not wrong, "\n".join(f"{v!r}: got {g}, expected {w}" for v, (g, w) in wrong.items())


def _sight(exchange, member, names, value):
    """{indicator name: relation} the quick form sighted for ``value``; None if NotFound."""
    try:
        made = exchange.sightings.sight(member.principal, COMMUNITY, value)
    except NotFound:
        return None
    return {names[s.indicator_id]: s.matched for s in made}


# --- addresses --------------------------------------------------------------------------


def test_ipv4_spellings_and_containing_networks(exchange):
    member, names = _world(exchange)
    v4 = "ipv4-addr"
    _check(exchange, member, names, {
        "203.0.113.5": (v4, "203.0.113.5", {"ip4": "exact"}),
        " 203.0.113.5\t": (v4, "203.0.113.5", {"ip4": "exact"}),
        "203.0.113.5/32": (v4, "203.0.113.5", {"ip4": "exact"}),  # full-length prefix
        "203.0.113[.]5": (v4, "203.0.113.5", {"ip4": "exact"}),  # defanged, as api.md shows
        "203[.]0[.]113[.]5": (v4, "203.0.113.5", {"ip4": "exact"}),
        "198.51.100.77": (v4, "198.51.100.77", {"net4": "contained-in"}),
        "198.51.100.128/25": (v4, "198.51.100.128/25", {"net4": "contained-in"}),
        "198.51.100.200/24": (v4, "198.51.100.0/24", {"net4": "exact"}),  # a CIDR is its network
        "198.51.101.1": (v4, "198.51.101.1", {}),
        "203.0.113.6": (v4, "203.0.113.6", {}),
    })


def test_ipv6_spellings_and_containing_networks(exchange):
    member, names = _world(exchange)
    v6 = "ipv6-addr"
    _check(exchange, member, names, {
        "2001:db8::1": (v6, "2001:db8::1", {"ip6": "exact"}),
        "2001:DB8::1": (v6, "2001:db8::1", {"ip6": "exact"}),
        "2001:0db8:0000:0000:0000:0000:0000:0001": (v6, "2001:db8::1", {"ip6": "exact"}),
        "2001:0DB8:0:0:0:0:0:1": (v6, "2001:db8::1", {"ip6": "exact"}),
        "2001:db8::1/128": (v6, "2001:db8::1", {"ip6": "exact"}),
        "2001:DB8:AAAA:1::5": (v6, "2001:db8:aaaa:1::5", {"net6": "contained-in"}),
        "2001:0db8:aaaa:0000::/64": (v6, "2001:db8:aaaa::/64", {"net6": "contained-in"}),
        "2001:db8::2": (v6, "2001:db8::2", {}),
    })


def test_cidr_lookup_finds_containing_networks_only(exchange):
    """api.md promises ``contained-in`` (a stored CIDR contains the looked-up address or
    network); it promises nothing for the converse. Observed: a CIDR lookup does NOT
    find the indicators of addresses (or narrower networks) inside it."""
    member, names = _world(exchange)
    _check(exchange, member, names, {
        "203.0.113.0/24": ("ipv4-addr", "203.0.113.0/24", {}),  # ip4 203.0.113.5 is inside
        "198.51.0.0/16": ("ipv4-addr", "198.51.0.0/16", {}),  # net4 /24 is inside
        "2001:db8::/32": ("ipv6-addr", "2001:db8::/32", {}),  # ip6 and net6 are inside
    })


def test_note_ipv4_mapped_ipv6_is_not_the_ipv4_address(exchange):
    """Docs silent. Observed: ``::ffff:a.b.c.d`` is an ipv6-addr (written in hex) and
    matches neither the IPv4 indicator nor a containing IPv4 network."""
    member, names = _world(exchange)
    _check(exchange, member, names, {
        "::ffff:203.0.113.5": ("ipv6-addr", "::ffff:cb00:7105", {}),
        "::FFFF:CB00:7105": ("ipv6-addr", "::ffff:cb00:7105", {}),
        "::ffff:198.51.100.77": ("ipv6-addr", "::ffff:c633:644d", {}),
    })
    assert _sight(exchange, member, names, "::ffff:203.0.113.5") is None


def test_ipv4_with_leading_zeros_is_not_a_domain_name(exchange):
    member, names = _world(exchange)
    got = _answers(exchange, member, names, ["203.000.113.005", "127.1", "2130706433"])
    assert all(g[0] in ("ipv4-addr", "error") for g in got.values()), got


def test_note_ipv4_leading_zeros_are_refused(exchange):
    """Docs silent. Observed: the zero-padded spelling is ambiguous (octal to some tools)
    and refused, like the other spellings strict parsers refuse; it is not a domain."""
    member, names = _world(exchange)
    got = _answers(exchange, member, names, ["203.000.113.005"])
    assert got["203.000.113.005"][0] == "error", got
    with pytest.raises(InputError):
        _sight(exchange, member, names, "203.000.113.005")


def test_note_address_spellings_refused(exchange):
    """Docs silent. Observed: a bracketed IPv6 address and an address with a port are
    errors (not addresses); both are common in logs."""
    member, names = _world(exchange)
    got = _answers(exchange, member, names, ["[2001:db8::1]", "203.0.113.5:443"])
    assert all(g[0] == "error" for g in got.values()), got


# --- domains ----------------------------------------------------------------------------


def test_domain_spellings_and_parent_domains(exchange):
    member, names = _world(exchange)
    d = "domain-name"
    _check(exchange, member, names, {
        "bad-example.com": (d, "bad-example.com", {"domain": "exact"}),
        "BAD-Example.Com": (d, "bad-example.com", {"domain": "exact"}),
        "bad-example.com.": (d, "bad-example.com", {"domain": "exact"}),
        "bad-example[.]com": (d, "bad-example.com", {"domain": "exact"}),
        "bad-example(dot)com": (d, "bad-example.com", {"domain": "exact"}),
        "WWW.bad-example.com.": (d, "www.bad-example.com", {"domain": "subdomain-of"}),
        "a.b.c.bad-example.com": (d, "a.b.c.bad-example.com", {"domain": "subdomain-of"}),
        # label boundaries: neither a suffix string nor a prefix is a parent domain
        "notbad-example.com": (d, "notbad-example.com", {}),
        "bad-example.com.evil.test": (d, "bad-example.com.evil.test", {}),
        # a parent domain does not find its stored subdomains (docs promise only upward)
        "example": (d, "example", {}),
    })


def test_idn_u_label_and_punycode_are_one_domain(exchange):
    member, names = _world(exchange)
    d = "domain-name"
    _check(exchange, member, names, {
        "bücher.example": (d, "xn--bcher-kva.example", {"idn_u": "exact"}),
        "BÜCHER.example": (d, "xn--bcher-kva.example", {"idn_u": "exact"}),
        "xn--bcher-kva.example": (d, "xn--bcher-kva.example", {"idn_u": "exact"}),
        "XN--BCHER-KVA.EXAMPLE.": (d, "xn--bcher-kva.example", {"idn_u": "exact"}),
        "shop.bücher.example": (d, "shop.xn--bcher-kva.example", {"idn_u": "subdomain-of"}),
        "münchen.example": (d, "xn--mnchen-3ya.example", {"idn_a": "exact"}),
        "MÜNCHEN.example": (d, "xn--mnchen-3ya.example", {"idn_a": "exact"}),
        "xn--mnchen-3ya.example": (d, "xn--mnchen-3ya.example", {"idn_a": "exact"}),
    })


# --- URLs -------------------------------------------------------------------------------


def test_url_spellings(exchange):
    """Stored: HTTP://Evil.Example:80/Login?x=1 -> http://evil.example/Login?x=1; plus the
    domain evil.example, which every URL on that host matches as ``host``."""
    member, names = _world(exchange)
    u, canon = "url", "http://evil.example/Login?x=1"
    both = {"url": "exact", "url_host": "host"}
    host = {"url_host": "host"}
    _check(exchange, member, names, {
        canon: (u, canon, both),
        "HTTP://EVIL.EXAMPLE/Login?x=1": (u, canon, both),  # scheme and host case
        "http://evil.example:80/Login?x=1": (u, canon, both),  # default port
        "http://evil.example./Login?x=1": (u, canon, both),  # host trailing dot
        "hxxp://evil[.]example/Login?x=1": (u, canon, both),  # defanged, as api.md shows
        "hXXp[:]//evil[.]example/Login?x=1": (u, canon, both),
        # path and query are kept as written (observables.py): these are other URLs
        "http://evil.example/login?x=1": (u, "http://evil.example/login?x=1", host),
        "http://evil.example/Login/?x=1": (u, "http://evil.example/Login/?x=1", host),
        "http://evil.example/Login?x=2": (u, "http://evil.example/Login?x=2", host),
        "https://evil.example/Login?x=1": (u, "https://evil.example/Login?x=1", host),
        "http://evil.example:8080/Login?x=1": (u, "http://evil.example:8080/Login?x=1", host),
        "http://sub.evil.example/": (u, "http://sub.evil.example/", {"url_host": "subdomain-of"}),
    })


def test_url_trailing_slash_of_an_empty_path(exchange):
    member, names = _world(exchange)
    u, canon = "url", "http://root.example/"
    _check(exchange, member, names, {
        "http://root.example": (u, canon, {"url_root": "exact"}),
        "http://root.example/": (u, canon, {"url_root": "exact"}),
        "HTTP://ROOT.EXAMPLE:80": (u, canon, {"url_root": "exact"}),
        "hxxp://root[.]example": (u, canon, {"url_root": "exact"}),
    })


def test_note_url_fragment_userinfo_and_scheme_less(exchange):
    """Docs silent (observables.py: "path and query as written"). Observed: a fragment
    and user-info are dropped, and a value with a path but no scheme is read as
    ``http://``; all three then match the stored URL exactly."""
    member, names = _world(exchange)
    u, canon = "url", "http://evil.example/Login?x=1"
    both = {"url": "exact", "url_host": "host"}
    _check(exchange, member, names, {
        "http://evil.example/Login?x=1#top": (u, canon, both),
        "http://user:secret@evil.example/Login?x=1": (u, canon, both),
        "evil.example/Login?x=1": (u, canon, both),
    })


def test_note_url_percent_encoding_is_kept_as_written(exchange):
    """Stored: http://pct.example/a%7Eb. Docs (api.md) silent; observables.py keeps the
    path as written. Observed: neither the decoded ``~`` nor lower-case hex ``%7e``
    matches (no host indicator exists, so nothing at all matches)."""
    member, names = _world(exchange)
    u = "url"
    _check(exchange, member, names, {
        "http://pct.example/a%7Eb": (u, "http://pct.example/a%7Eb", {"url_pct": "exact"}),
        "HTTP://PCT.EXAMPLE/a%7Eb": (u, "http://pct.example/a%7Eb", {"url_pct": "exact"}),
        "http://pct.example/a~b": (u, "http://pct.example/a~b", {}),
        "http://pct.example/a%7eb": (u, "http://pct.example/a%7eb", {}),
    })


def test_url_hosts_that_are_addresses(exchange):
    """api.md: ``host`` (a URL's host), and its containing networks."""
    member, names = _world(exchange)
    u = "url"
    _check(exchange, member, names, {
        "http://203.0.113.5/x": (u, "http://203.0.113.5/x", {"ip4": "host"}),
        "hxxp://203.0.113[.]5:8080/x": (u, "http://203.0.113.5:8080/x", {"ip4": "host"}),
        "http://198.51.100.77/x": (u, "http://198.51.100.77/x", {"net4": "contained-in"}),
        "http://[2001:DB8:0::1]/x": (u, "http://[2001:db8::1]/x", {"ip6": "host"}),
        "http://[2001:db8:aaaa::9]:80/": (u, "http://[2001:db8:aaaa::9]/", {"net6": "contained-in"}),
    })


# --- e-mail addresses -------------------------------------------------------------------


def test_email_spellings_and_domain(exchange):
    """Stored: Alice@Mail.Example -> alice@mail.example (local part lower-cased, as
    observables.py says), and the domain mail.example."""
    member, names = _world(exchange)
    e, canon = "email-addr", "alice@mail.example"
    both = {"email": "exact", "email_domain": "domain"}
    _check(exchange, member, names, {
        canon: (e, canon, both),
        "ALICE@MAIL.EXAMPLE": (e, canon, both),
        "Alice@mail.example.": (e, canon, both),
        "alice[@]mail[.]example": (e, canon, both),  # defanged, as api.md shows
        "alice[at]mail[dot]example": (e, canon, both),
        "bob@mail.example": (e, "bob@mail.example", {"email_domain": "domain"}),
        # the e-mail domain's own parent matches as a parent domain
        "x@smtp.mail.example": (e, "x@smtp.mail.example", {"email_domain": "subdomain-of"}),
        "x@Bad-Example.com": (e, "x@bad-example.com", {"domain": "domain"}),
    })


def test_note_mailto_prefix_is_part_of_the_local_part(exchange):
    """Docs silent. Observed: ``mailto:alice@mail.example`` is an e-mail address whose
    local part is ``mailto:alice``: it does not match alice@mail.example, only the
    domain."""
    member, names = _world(exchange)
    _check(exchange, member, names, {
        "mailto:alice@mail.example": ("email-addr", "mailto:alice@mail.example",
                                      {"email_domain": "domain"}),
    })


# --- hashes -----------------------------------------------------------------------------


def test_hash_case(exchange):
    member, names = _world(exchange)
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    _check(exchange, member, names, {
        md5: ("md5", md5, {"md5": "exact"}),
        md5.upper(): ("md5", md5, {"md5": "exact"}),
        f" {md5.upper()} ": ("md5", md5, {"md5": "exact"}),
        sha: ("sha256", sha, {"sha256": "exact"}),
        sha.upper(): ("sha256", sha, {"sha256": "exact"}),
        md5[:-1] + "0": ("md5", md5[:-1] + "0", {}),
    })


# --- bulk and the quick form ------------------------------------------------------------

SPELLINGS = [
    "203.0.113[.]5", "198.51.100.77", "2001:0DB8::0001", "2001:db8:aaaa::7",
    "BAD-EXAMPLE.COM.", "www.bad-example[.]com", "BÜCHER.example", "münchen.example",
    "HTTP://Evil.Example:80/Login?x=1", "hxxp://root[.]example", "ALICE@MAIL.EXAMPLE",
    "D41D8CD98F00B204E9800998ECF8427E", "::ffff:203.0.113.5", "203.000.113.005",
]


def test_bulk_answer_equals_single_answer_for_every_spelling(exchange):
    member, names = _world(exchange)
    bulk = exchange.lookup.lookup_json(member.principal, SPELLINGS + ["203.0.113.5", "bad-example.com"])
    for value, answer in zip(SPELLINGS, bulk, strict=False):
        assert answer == exchange.lookup.lookup_json(member.principal, [value])[0], value


def test_quick_form_sights_what_lookup_matches(exchange):
    """lifecycle.md: the quick form reads the value like a lookup value and sights each
    visible, unrevoked indicator stating it (exactly, containing network, parent
    domain), "as commonwatch lookup matches them"."""
    member, names = _world(exchange)
    expected = {
        "203.0.113[.]5": {"ip4": "exact"},
        "198.51.100.77": {"net4": "contained-in"},
        "2001:0DB8::0001": {"ip6": "exact"},
        "2001:db8:aaaa::7": {"net6": "contained-in"},
        "BAD-EXAMPLE.COM.": {"domain": "exact"},
        "www.bad-example[.]com": {"domain": "subdomain-of"},
        "BÜCHER.example": {"idn_u": "exact"},
        "münchen.example": {"idn_a": "exact"},
        "HTTP://Evil.Example:80/Login?x=1#frag": {"url": "exact", "url_host": "host"},
        "hxxp://root[.]example": {"url_root": "exact"},
        "ALICE@MAIL.EXAMPLE": {"email": "exact", "email_domain": "domain"},
        "D41D8CD98F00B204E9800998ECF8427E": {"md5": "exact"},
        "::ffff:203.0.113.5": None,  # not the IPv4 address (see the note above)
        "203.0.113.0/24": None,  # a CIDR does not reach the addresses inside it
    }
    got = {value: _sight(exchange, member, names, value) for value in expected}
    wrong = {v: (got[v], w) for v, w in expected.items() if got[v] != w}
    assert not wrong, wrong
    # and each agrees with lookup (indicators only: lookup also lists SCOs)
    for value, sighted in got.items():
        looked = _answers(exchange, member, names, [value])[value][2]
        assert (sighted or {}) == looked, value
