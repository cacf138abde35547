"""What a Suricata sensor may rely on across exports, checked on every rule seen."""

from __future__ import annotations

from typing import Any

import idstools.rule


class Ledger:
    """Every rule exported so far: the text of each (sid, rev), the sid of each match."""

    def __init__(self) -> None:
        self.texts: dict[tuple[int, int], str] = {}
        self.sid_of: dict[tuple[str, str], int] = {}

    def record(self, output: str) -> dict[tuple[str, str], Any]:
        """The rules of one output by (STIX id, match), checked against every earlier one."""
        out: dict[tuple[str, str], Any] = {}
        for line in output.splitlines():
            rule = idstools.rule.parse(line)
            assert rule is not None, line
            body = line[:line.rindex("sid:")]
            contents = "".join(o["value"] or "" for o in rule.options if o["name"] == "content")
            match = (dict(m.split(" ", 1) for m in rule.metadata)["cw_id"], f"{rule.header}|{contents}")
            assert match not in out, f"one match twice in one output: {match}"
            assert rule.sid not in {r.sid for r in out.values()}, f"duplicate sid {rule.sid} in one output"
            seen = self.texts.setdefault((rule.sid, rule.rev), body)
            assert seen == body, f"(sid, rev) {(rule.sid, rule.rev)} names two texts:\n{seen}\n{body}"
            assert self.sid_of.setdefault(match, rule.sid) == rule.sid, f"{match} changed its sid"
            out[match] = rule
        return out
