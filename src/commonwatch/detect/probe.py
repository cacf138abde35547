"""The hot loop of the index engine, generated per event kind.

For one event kind and one state of the indexes, the lookups an event needs are fixed:
which record keys to read, which hash index each value goes to, whether a value is
typed as an address by ``':'`` (``events.address_type``). Rather than interpreting that
plan for every event (a loop over tuples, about 100 ns per step), the plan is turned
into straight-line Python once, with every key and index bound as a constant — one
``dict.get`` per record key and one per index, nothing else. The source is built only
from generated names; keys and indexes are passed in as values, never as code text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Hits = list[Any] | None
Probe = Callable[[dict[str, Any]], Hits]


def _lookup(names: list[str], value: str, indent: str) -> list[str]:
    lines = []
    for name in names:
        lines += [f"{indent}f = {name}.get({value})",
                  f"{indent}if f:",
                  f"{indent}    hits = f if hits is None else hits + f"]
    return lines or [f"{indent}pass"]


def _getter(i: int, key1: Any, key2: Any, fld: Any, space: dict[str, Any]) -> list[str]:
    if fld is not None:
        space[f"G{i}"] = fld.value
        return [f"    v = G{i}(record)"]
    space[f"K{i}"] = key1
    if key2 is None:
        return [f"    v = get(K{i})"]
    space[f"L{i}"] = key2
    return [f"    s = get(K{i})", f"    v = s.get(L{i}) if type(s) is dict else None"]


def compile_probe(
    exact: list[tuple[Any, ...]], memoised: list[tuple[Any, ...]],
) -> Probe:
    """A function record -> hit entries (or None) for the plan's fields.

    ``exact`` holds ``(key1, key2 | None, field | None, plain indexes, colon indexes)``
    (``field`` set when the value is computed); ``memoised`` holds ``(key1, key2, field,
    memo, miss, items)`` for CIDR and value-tested lookups: ``memo`` maps a string value
    to its hits, ``miss(value)`` computes (and remembers) them, ``items(values, hits)``
    handles list and non-string values.
    """
    space: dict[str, Any] = {"_items": _items}
    body = ["def probe(record):", "    hits = None", "    get = record.get"]
    for i, (key1, key2, fld, plain, colon) in enumerate(exact):
        body += _getter(i, key1, key2, fld, space)
        plain_names = [f"P{i}_{j}" for j in range(len(plain))]
        colon_names = [f"C{i}_{j}" for j in range(len(colon))]
        space.update(zip(plain_names, plain, strict=True))
        space.update(zip(colon_names, colon, strict=True))
        space[f"PT{i}"], space[f"CT{i}"] = plain, colon
        body += ["    if v is not None:", "        t = type(v)", "        if t is str:"]
        if plain is colon:
            body += _lookup(plain_names, "v", " " * 12)
        else:
            body += ["            if ':' in v:", *_lookup(colon_names, "v", " " * 16),
                     "            else:", *_lookup(plain_names, "v", " " * 16)]
        body += ["        elif t is list:",
                 f"            hits = _items(v, PT{i}, CT{i}, hits)",
                 "        elif t is not dict:", *_lookup(plain_names, "v", " " * 12)]
    for n, (key1, key2, fld, memo, miss, items) in enumerate(memoised):
        i = len(exact) + n
        body += _getter(i, key1, key2, fld, space)
        space[f"M{i}"], space[f"MISS{i}"], space[f"IT{i}"] = memo, miss, items
        body += ["    if type(v) is str:",
                 "        if v:",
                 f"            f = M{i}.get(v)",
                 "            if f is None:",
                 f"                f = MISS{i}(v)",
                 "            if f:",
                 "                hits = f if hits is None else hits + f",
                 "    elif v is not None:",
                 f"        hits = IT{i}(v, hits)"]
    body.append("    return hits")
    exec(compile("\n".join(body), "<commonwatch.detect.probe>", "exec"), space)  # noqa: S102
    probe: Probe = space["probe"]
    return probe


def _items(values: list[Any], plain: tuple[dict[Any, Any], ...], colon: tuple[dict[Any, Any], ...],
           hits: Hits) -> Hits:
    """Lookups for a list-valued field (one object or list element per item)."""
    for item in values:
        kind = type(item)
        if kind is dict or kind is list:
            continue
        for index in colon if plain is not colon and kind is str and ":" in item else plain:
            found = index.get(item)
            if found:
                hits = found if hits is None else hits + found
    return hits
