"""STIX 2.1 bundle export (STIX 2.1 §8): the stored objects, unchanged, in one bundle.

Objects are written as stored (their JSON bytes as the producer posted them), so
signatures, extensions and custom properties survive; only the bundle envelope is
new. Written as a stream: header, objects joined by commas, footer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from commonwatch.domain.observables import ExportItem

BATCH = 1000


def render(items: Iterable[ExportItem], bundle_id: str) -> Iterator[str]:
    yield f'{{"type":"bundle","id":"{bundle_id}","objects":['
    first = True
    chunk: list[str] = []
    for item in items:
        chunk.append(item.raw.decode("utf-8"))
        if len(chunk) >= BATCH:
            yield ("" if first else ",") + ",".join(chunk)
            first = False
            chunk = []
    if chunk:
        yield ("" if first else ",") + ",".join(chunk)
    yield "]}\n"
