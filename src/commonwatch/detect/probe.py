"""The hot loop of the index engine, generated per event kind.

For one event kind and one state of the indexes, the lookups an event needs are fixed:
which record keys to read, which hash index each value goes to, whether a value is
typed as an address by ``':'`` (``events.address_type``). Rather than interpreting that
plan for every event (a loop over tuples, about 100 ns per step), the plan is turned
into straight-line Python once, with every key and index bound as a constant — one
``dict.get`` per record key, one read of the value filter per value, and one
``dict.get`` per index only when the filter lets the value through. The source is
built only from generated names; keys and indexes are passed in as values, never as
code text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Hits = tuple[Any, ...] | None
Probe = Callable[[dict[str, Any]], Hits]


def _lookup(names: list[str], value: str, indent: str) -> list[str]:
    lines = []
    for name in names:
        lines += [f"{indent}f = {name}.get({value})",
                  f"{indent}if f:",
                  f"{indent}    hits = f if hits is None else hits + f"]
    return lines or [f"{indent}pass"]


def _getter(i: int, key1: Any, key2: Any, fld: Any, space: dict[str, Any]) -> list[str]:
    if fld is not None:  # a computed field: its function directly, not through Field.value
        space[f"G{i}"] = fld.get if fld.get is not None else fld.value
        return [f"    v = G{i}(record)"]
    space[f"K{i}"] = key1
    if key2 is None:
        return [f"    v = get(K{i})"]
    space[f"L{i}"] = key2
    return [f"    s = get(K{i})", f"    v = s.get(L{i}) if type(s) is dict else None"]


def _memo_lookups(names: list[tuple[str, str]], screened: set[str], indent: str) -> list[str]:
    """Lookups of a non-empty string ``v``; ``acc`` gathers their hits."""
    lines = []
    for memo, acc in names:
        if acc == "ch" and memo in screened:  # CIDR: a function of the value, screened
            lines += [f"{indent}f = M{memo}(v) if v[:6] in PF{memo} else None"]
        elif acc == "ch":
            lines.append(f"{indent}f = M{memo}(v)")
        else:
            lines += [f"{indent}f = M{memo}.get(v)",
                      f"{indent}if f is None:",
                      f"{indent}    f = MISS{memo}(v)"]
        lines += [f"{indent}if f:",
                  f"{indent}    {acc} = f if {acc} is None else {acc} + f"]
    return lines


def compile_probe(
    fields: list[tuple[Any, ...]], unindexed: tuple[Any, ...], value_filter: bytearray,
) -> Probe:
    """A function record -> candidate entries (or None) for one event kind.

    ``fields`` holds, per record field with something to look up, ``(key1, key2 | None,
    field | None, exact, cidr, scanned)``: ``field`` is set when the value is computed;
    ``exact`` is None or ``(plain indexes, colon indexes)`` (hash indexes for values
    without and with ``':'``); ``scanned`` lists ``(memo, miss, items)`` memoised
    lookups: ``memo`` maps a string value to its hits, ``miss(value)`` computes (and
    remembers) them, ``items(values, hits)`` handles list and non-string values;
    ``cidr`` lists ``(lookup, prefixes, miss, items)``, ``lookup(value)`` giving a string's
    hits, only asked when the first six characters are in ``prefixes`` (unless that is
    None).
    ``value_filter`` has a set byte at ``hash(v) & (len - 1)`` for every value of the
    exact indexes: a clear byte skips their lookups. Hits come out in the order
    unindexed, exact (field order), CIDR, value-tested. Each field is read once.
    """
    space: dict[str, Any] = {"_items": _items, "F": value_filter, "FM": len(value_filter) - 1,
                             "U": unindexed}
    body = ["def probe(record):", "    hits = U" if unindexed else "    hits = None",
            "    ch = sh = None", "    get = record.get"]
    memo_n = 0
    screened: set[str] = set()
    for i, (key1, key2, fld, exact, cidr, scanned) in enumerate(fields):
        body += _getter(i, key1, key2, fld, space)
        memos: list[tuple[str, str]] = []
        for lookup, prefixes, _miss, items in cidr:
            space[f"M{memo_n}"], space[f"PF{memo_n}"], space[f"IT{memo_n}"] = lookup, prefixes, items
            if prefixes is not None:
                screened.add(str(memo_n))
            memos.append((str(memo_n), "ch"))
            memo_n += 1
        for memo, miss, items in scanned:
            space[f"M{memo_n}"], space[f"MISS{memo_n}"], space[f"IT{memo_n}"] = memo, miss, items
            memos.append((str(memo_n), "sh"))
            memo_n += 1
        body += ["    if v is not None:", "        t = type(v)", "        if t is str:"]
        if exact is not None:
            plain, colon = exact
            plain_names = [f"P{i}_{j}" for j in range(len(plain))]
            colon_names = [f"C{i}_{j}" for j in range(len(colon))]
            space.update(zip(plain_names, plain, strict=True))
            space.update(zip(colon_names, colon, strict=True))
            space[f"PT{i}"], space[f"CT{i}"] = plain, colon
            body.append("            if F[hash(v) & FM]:")
            if plain is colon:
                body += _lookup(plain_names, "v", " " * 16)
            elif not colon or not plain:  # addresses of one version only
                body += [f"                if ':' {'not in' if plain else 'in'} v:",
                         *_lookup(plain_names or colon_names, "v", " " * 20)]
            else:
                body += ["                if ':' in v:", *_lookup(colon_names, "v", " " * 20),
                         "                else:", *_lookup(plain_names, "v", " " * 20)]
        if memos:
            body += ["            if v:", *_memo_lookups(memos, screened, " " * 16)]
        elif exact is None:
            body.append("            pass")
        body.append("        elif t is list:")
        if exact is not None:
            body.append(f"            hits = _items(v, PT{i}, CT{i}, hits, F, FM)")
        body += [f"            {acc} = IT{memo}(v, {acc})" for memo, acc in memos]
        body.append("        elif t is not dict:")
        if exact is not None:
            body += ["            if F[hash(v) & FM]:", *_lookup(plain_names, "v", " " * 16)]
        body += [f"            {acc} = IT{memo}(v, {acc})" for memo, acc in memos]
        if exact is None and not memos:
            body.append("            pass")
    body += ["    if ch is not None:", "        hits = ch if hits is None else hits + ch",
             "    if sh is not None:", "        hits = sh if hits is None else hits + sh",
             "    return hits"]
    exec(compile("\n".join(body), "<commonwatch.detect.probe>", "exec"), space)  # noqa: S102
    probe: Probe = space["probe"]
    return probe


def _items(values: list[Any], plain: tuple[dict[Any, Any], ...], colon: tuple[dict[Any, Any], ...],
           hits: Hits, value_filter: bytearray, mask: int) -> Hits:
    """Lookups for a list-valued field (one object or list element per item)."""
    for item in values:
        kind = type(item)
        if kind is dict or kind is list or not value_filter[hash(item) & mask]:
            continue
        for index in colon if plain is not colon and kind is str and ":" in item else plain:
            found = index.get(item)
            if found:
                hits = found if hits is None else hits + found
    return hits
