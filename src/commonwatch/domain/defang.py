"""Undoing the defanging of indicators in reports and chats (pure).

``hxxp://evil[.]example(dot)com``, ``bob[@]example.org``, ``10.0.0[.]1``, ``fxp[:]//``...
Used by the free-text importer and by lookups, so both read a defanged value alike.
"""

from __future__ import annotations

import re

__all__ = ["refang"]

_REFANG = [
    (re.compile(r"\bhxxp(s?)(?=\[?:)", re.IGNORECASE), r"http\1"),
    (re.compile(r"\bh\*\*p(s?)(?=:)", re.IGNORECASE), r"http\1"),
    (re.compile(r"\bfxp(?=\[?:)", re.IGNORECASE), "ftp"),
    (re.compile(r"\[:\]//|\[://\]"), "://"),
    (re.compile(r"\[:\]"), ":"),
    (re.compile(r"\[/\]"), "/"),
    (re.compile(r"\s?[\[({]\s?(?:\.|dot)\s?[\])}]\s?", re.IGNORECASE), "."),
    (re.compile(r"\\\."), "."),
    (re.compile(r"\s?[\[({]\s?(?:@|at)\s?[\])}]\s?", re.IGNORECASE), "@"),
]


#: Characters without which no rule above applies (the ``hxxp``/``fxp``/``h**p`` scheme
#: rules also need a ``:``, checked separately).
_MARKS = frozenset("[({\\")


def _may_be_defanged(text: str) -> bool:
    """False when no rule can change ``text`` (most values): the rules need a bracket,
    parenthesis, brace or backslash, or a ``:`` after a defanged scheme."""
    if not _MARKS.isdisjoint(text):
        return True
    return ":" in text and (not text.isascii() or "xp" in text.lower() or "*" in text)


def refang(text: str) -> str:
    """``text`` with the usual defanging undone."""
    if not _may_be_defanged(text):
        return text  # nine regular expressions would find nothing to replace
    for pattern, plain in _REFANG:
        text = pattern.sub(plain, text)
    return text
