"""Indicators from free text (threat reports, e-mails, chat): refang, extract, filter.

Text is read line by line (constant memory), as UTF-8, UTF-16 or Windows-1252 (see
:func:`~commonwatch.formats.streams.open_text`); a line over :data:`MAX_LINE_CHARS` is
rejected, never searched in pieces. Each line is refanged first: ``hxxp``,
``hxxps``, ``fxp``, ``[.]``, ``(.)``, ``{.}``, ``[dot]``, ``(dot)``, ``[@]``,
``(at)``, ``[at]``, ``[:]``, ``[://]``, ``[/]`` and ``\\.`` take their plain form.
Then URLs, e-mail addresses, IPv6 and IPv4 addresses (with CIDR), domain names,
MD5/SHA-1/SHA-256/SHA-512 hashes and CVE ids are extracted; a value inside a URL or an
e-mail address is not extracted again on its own.

The false positives of free-text extraction are handled:

* a "domain" whose last label is a file extension (``invoice.pdf``, ``setup.exe``,
  ``run.sh``, ``readme.md``) is a file name unless it was defanged in the text (a
  defanged value was marked as an indicator by the author); other last labels must be
  two letters (a country code) or a known generic TLD;
* a dotted quad preceded by ``v``/``version``/``build``/``release``..., or that is part
  of a longer dotted number (``1.3.6.1.4.1``), is a version or OID, not an address;
* hex runs are hashes only at exactly 32/40/64/128 digits with no hex or word
  character glued on either side;
* a name or e-mail address is never cut out of a longer word that non-ASCII letters,
  marks or U+FFFD make (``cher.de`` out of ``b\\ufffdcher.de``): such a match is dropped.

Every distinct value becomes an SCO and an indicator whose id is derived from the
importing organisation and the value, so importing the same text again is a no-op.
CVE ids become vulnerabilities.
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
from collections.abc import Iterator
from typing import IO, NamedTuple

from commonwatch.domain.defang import refang
from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import normalise_domain
from commonwatch.errors import InputError
from commonwatch.formats import observables as ob
from commonwatch.formats.records import Record, rejected
from commonwatch.formats.streams import Lines, open_text

MAX_LINE_CHARS = 1024 * 1024

_DEFANG_MARK = re.compile(r"hxxp|fxp|\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\[@\]|\(at\)|\[at\]|\[:\]|\\\.",
                          re.IGNORECASE)

# A URL's host may be an IPv6 literal in brackets (``http://[2001:db8::1]:8443/``, RFC 3986
# §3.2.2); brackets anywhere else end the URL.
_URL = re.compile(r"\b(?:https?|ftp|sftp|tcp|udp)://(?:\[[0-9A-Fa-f:.]{2,45}\])?[^\s<>\"'`\]\[{}|\\^]*",
                  re.IGNORECASE)
# The last label is a letters-only TLD or an IDN one in A-labels (``xn--p1ai``, .рф).
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+"
                    r"(?:[Xx][Nn]--[A-Za-z0-9-]{0,58}[A-Za-z0-9]|[A-Za-z]{2,63})\b(?!-)")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}"
                   r"(?:/(?:3[0-2]|[12]?\d))?(?![\w.]*\d)(?!\.\w)")
# An IPv4-mapped/-compatible tail (``::ffff:198.51.100.23``, RFC 4291 §2.5.5) is part of
# the address; a match may not stop before a ``.digit`` (that would cut such a tail).
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
                   rf"(?:(?:{_OCTET}\.){{3}}{_OCTET}|[0-9A-Fa-f]{{0,4}})(?:/\d{{1,3}})?(?![\w:]|\.\d)")
# Labels of Unicode letters and digits, so that IDNs (``bücher.de``, ``злой.рф``) are found
# too: ``[^\W_]`` is a letter or digit, ``[\w-]`` lets an underscore in, and a match with
# one is dropped (the lookbehind already refuses a name glued to an underscore).
_DOMAIN = re.compile(r"(?<![\w@.-])(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+"
                     r"(?:[Xx][Nn]--[A-Za-z0-9-]{0,58}[A-Za-z0-9]|[^\W\d_]{2,63})\b(?![.-]?\w)")
_HASH = re.compile(r"(?<![0-9A-Za-z_])(?:[0-9A-Fa-f]{128}|[0-9A-Fa-f]{64}|[0-9A-Fa-f]{40}|[0-9A-Fa-f]{32})"
                   r"(?![0-9A-Za-z_])")
_CVE = re.compile(r"\bCVE-\d{4}-\d{4,7}\b", re.IGNORECASE)
# ``version 1.2.3.4``, ``Version: 1.2.3.4``, ``version="10.0.0.1"``, ``build#6.1.0.1``.
_VERSION_BEFORE = re.compile(r"(?:\bv|\bver\.?|\bversion|\bbuild|\brelease|\brev\.?|\bfirmware|\bupdate)"
                             r"\s*[:=#-]?\s*[\"']?$", re.IGNORECASE)
#: How far before a dotted quad :data:`_VERSION_BEFORE` looks (longest word plus padding),
#: so that the check costs the same on a long line as on a short one.
_VERSION_WINDOW = 64
_HASH_BY_LEN = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_LOCAL_PART_CHARS = frozenset(string.ascii_letters + string.digits + "._%+-")
#: Characters outside letters, digits and marks that hold a word together: U+FFFD (a
#: byte no decoder knew), soft hyphen, zero-width non-joiner and joiner, word joiner.
_JOINING = frozenset("\ufffd\u00ad\u200c\u200d\u2060")

#: Last labels that are file extensions far more often than TLDs in reports.
FILE_EXTENSIONS = frozenset({
    "7z", "apk", "asp", "aspx", "avi", "bash", "bat", "bin", "bmp", "bz2", "cab", "cfg", "class", "cmd",
    "conf", "cpl", "css", "csv", "dat", "deb", "dll", "dmg", "doc", "docm", "docx", "dot", "dotm",
    "drv", "dylib", "elf", "eml", "exe", "gif", "gz", "hta", "htm", "html", "ico", "img", "inf", "ini",
    "ipa", "iso", "jar", "jpeg", "jpg", "js", "jse", "json", "jsp", "lnk", "log", "md", "mov", "mp3",
    "mp4", "msg", "msi", "msp", "ocx", "ods", "odt", "pcap", "pcapng", "pdf", "php", "pl", "png", "ppt",
    "pptm", "pptx", "ps1", "psm1", "pst", "py", "pyc", "rar", "rb", "reg", "rpm", "rst", "rtf", "scr",
    "sh", "so", "svg", "sys", "tar", "tgz", "tmp", "txt", "vbe", "vbs", "vhd", "vhdx", "wav", "wsf",
    "wsh", "xls", "xlsb", "xlsm", "xlsx", "xml", "xz", "yaml", "yml", "zip", "zsh"
})
#: Generic TLDs recognised in undefanged text (two-letter labels are country codes).
GENERIC_TLDS = frozenset({
    "aero", "agency", "app", "arpa", "asia", "bar", "beauty", "bid", "biz", "blog", "buzz", "cat", "cc",
    "center", "cf", "click", "cloud", "club", "com", "company", "coop", "cyou", "date", "dev",
    "digital", "download", "edu", "email", "expert", "fun", "ga", "global", "gov", "gq", "group",
    "guru", "hair", "host", "icu", "inc", "info", "int", "io", "jobs", "life", "link", "live", "llc",
    "loan", "lol", "ltd", "media", "men", "mil", "ml", "mobi", "mom", "monster", "museum", "name",
    "net", "network", "news", "ninja", "one", "online", "org", "page", "party", "press", "pro", "pw",
    "quest", "racing", "rest", "review", "run", "sbs", "services", "shop", "site", "solutions", "space",
    "store", "stream", "support", "systems", "tech", "tel", "tk", "today", "tools", "top", "trade",
    "travel", "vip", "website", "win", "work", "world", "xyz", "zone"
})


class Found(NamedTuple):
    kind: str
    value: str
    defanged: bool


def _plausible_domain(value: str, defanged: bool) -> bool:
    tld = value.rsplit(".", 1)[-1].lower()
    if defanged:
        return True
    if tld in FILE_EXTENSIONS:
        return False
    return len(tld) == 2 or tld in GENERIC_TLDS or tld.startswith("xn--")


def extract(line: str) -> list[Found]:
    """Every indicator value in one line of text, in order of appearance, with its kind.

    A value is never cut out of a longer word: a name or address that a non-ASCII letter,
    mark or U+FFFD touches is not taken (see :func:`_inside_word`), and text in
    decomposed form (``bu\\u0308cher.de``, as macOS writes) is composed first (NFC).
    """
    if not line.isascii():
        line = unicodedata.normalize("NFC", line)
    defanged_tokens = [refang(tok) for tok in line.split() if _DEFANG_MARK.search(tok)]
    text = refang(line) if defanged_tokens else line
    found: list[tuple[int, Found]] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return not any(s < end and start < e for s, e in taken)

    def add(kind: str, m: re.Match[str], value: str | None = None) -> None:
        taken.append(m.span())
        found.append((m.start(), Found(kind, value if value is not None else m.group(0),
                                       was_defanged(m.group(0)))))

    def was_defanged(value: str) -> bool:
        return any(value in token for token in defanged_tokens)

    for m in _URL.finditer(text):
        url = _url_end(m.group(0))
        if "://" in url and not url.endswith("://"):
            add("url", m, url)
    for m in _EMAIL.finditer(text):
        if free(*m.span()) and not _inside_word(text, _local_part_start(text, m.start()), m.end()):
            add("email-addr", m)
    for m in _HASH.finditer(text):
        if free(*m.span()):
            add(_HASH_BY_LEN[len(m.group(0))], m, m.group(0).lower())
    for m in _IPV6.finditer(text):
        if free(*m.span()) and m.group(0).count(":") >= 2 and _is_ip(m.group(0), 6):
            add("ipv6-addr", m, ob.clean_value("ipv6-addr", m.group(0)))
    for m in _IPV4.finditer(text):
        start = m.start()
        if free(*m.span()) and not _VERSION_BEFORE.search(text, max(0, start - _VERSION_WINDOW), start):
            add("ipv4-addr", m)
    for m in _CVE.finditer(text):
        if free(*m.span()):
            add("cve", m, m.group(0).upper())
    for m in _DOMAIN.finditer(text):
        if free(*m.span()) and not _inside_word(text, *m.span()) \
                and _plausible_domain(m.group(0), was_defanged(m.group(0))) and _valid_domain(m.group(0)):
            add("domain-name", m, m.group(0).lower())
    return [f for _, f in sorted(found, key=lambda pair: pair[0])]


def _inside_word(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` is part of a longer word, not a value of its own.

    The patterns' ``\\b`` and ``\\w`` see a combining mark, a joiner or soft hyphen, a
    C1 control (an unassigned byte of a legacy code page) or U+FFFD as a boundary, so
    ``b\\ufffdcher.de`` (a byte no decoder knew) or ``میهن\\u200cسرا.ir`` would give a
    name that is not in the text. Such a character, or a non-ASCII letter or digit, next
    to the match refuses it; spaces, punctuation, symbols and the other format
    characters (bidirectional marks around a name in Arabic text) do not.
    """
    return (start > 0 and _in_word(text[start - 1])) or (end < len(text) and _in_word(text[end]))


def _in_word(char: str) -> bool:
    if char.isascii():
        return False
    category = unicodedata.category(char)
    return category[0] in "LMN" or (category[0] == "C" and category != "Cf") or char in _JOINING


def _local_part_start(text: str, start: int) -> int:
    """Where the run of e-mail local-part characters that ``start`` is in begins: ``\\b``
    lets a match start after a non-ASCII letter plus ``.``/``+`` (``jür.gen@`` gives
    ``.gen@``), and that word must be judged whole."""
    while start > 0 and text[start - 1] in _LOCAL_PART_CHARS:
        start -= 1
    return start


def _url_end(url: str) -> str:
    """``url`` without the punctuation that ends the sentence around it; a closing
    parenthesis stays when the URL opened it (``.../Loader_(x64)``)."""
    while url and url[-1] in ".,;:!?)":
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def _valid_domain(name: str) -> bool:
    """False for a match with an underscore, or an IDN that IDNA 2008/UTS 46 refuses."""
    if name.isascii():
        return "_" not in name
    return "_" not in name and normalise_domain(name) is not None


def _is_ip(value: str, version: int) -> bool:
    try:
        return ipaddress.ip_network(value, strict=False).version == version
    except ValueError:
        return False


def records_for(kind: str, value: str, ctx: ob.ImportContext, source: str, position: str,
                *, created: str | None = None, valid_until: str | None = None,
                confidence: int | None = None, labels: tuple[str, ...] = (),
                tlp: Tlp | None) -> Iterator[Record]:
    """The SCO and indicator (or vulnerability) for one extracted value, ids derived from it.

    An IDN is stored as A-labels (punycode), the form the rest of the exchange compares.
    ``tlp``: the marking (None: unmarked, the community's default).
    """
    if kind == "domain-name" and not value.isascii():
        value = normalise_domain(value) or value  # not an IDN: clean_value says why
    value = ob.clean_value(kind, value)
    when = created or ctx.timestamp
    labels = tuple(ctx.labels) + labels
    if kind == "cve":
        oid = f"vulnerability--{ob.stable_uuid(ctx.own_identity, kind, value)}"
        yield Record(source, position, ob.vulnerability(value, oid=oid, created=when, modified=when,
                                                         created_by=ctx.own_identity, tlp=tlp),
                     keep_existing=True)
        return
    sco = ob.observable(kind, value, **ob.marking_refs(tlp))
    assert sco is not None
    hits = ctx.hits(kind, value)
    yield Record(source, position, sco)
    indicator = ob.indicator(
        oid=f"indicator--{ob.stable_uuid(ctx.own_identity, kind, value)}", pattern=ob.pattern_of([sco]),
        created=when, modified=when, created_by=ctx.own_identity, tlp=tlp, name=value,
        valid_until=valid_until, confidence=confidence, labels=labels)
    yield Record(source, position, indicator, hits=hits, keep_existing=True)


def read_text(stream: IO[bytes], source: str, ctx: ob.ImportContext) -> Iterator[Record]:
    """Records for every distinct indicator value in a text (UTF-8, UTF-16 or Windows-1252).

    A line over :data:`MAX_LINE_CHARS` is rejected whole: searched in pieces, it would
    give values cut at the piece boundaries.
    """
    lines = Lines(open_text(stream), MAX_LINE_CHARS)
    seen: set[tuple[str, str]] = set()
    for number, line in enumerate(lines, 1):
        if lines.too_long:
            lines.too_long.clear()
            yield rejected(source, f"line {number}", f"the line is longer than {MAX_LINE_CHARS} characters "
                                                     "and was not read; break it into shorter lines")
            continue
        for item in extract(line):
            key = (item.kind, item.value)
            if key in seen:
                continue
            seen.add(key)
            try:
                yield from records_for(item.kind, item.value, ctx, source, f"line {number}", tlp=ctx.tlp)
            except InputError as exc:
                yield rejected(source, f"line {number}", exc.message)
