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


def refang(text: str) -> str:
    """``text`` with the usual defanging undone."""
    for pattern, plain in _REFANG:
        text = pattern.sub(plain, text)
    return text
